package localstack_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	streamtypes "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"

	"minipush/internal/dev/localstack"
)

// fakeStreams is a DynamoDB Streams API over in-memory shards, for the shard handling
// DynamoDB Local cannot be made to show: split shards, paged DescribeStream, iterators
// that expire. Iterators are "shard:position"; pages hold at most two records.
type fakeStreams struct {
	mu     sync.Mutex
	order  []string // shard ids in DescribeStream order
	shards map[string]*fakeShard
	stale  map[string]error // iterator -> error GetRecords answers for it
	always error            // when set, GetRecords answers every iterator with it
	issued []string
	seq    int
}

// iterator hands out a fresh iterator at pos; callers hold f.mu.
func (f *fakeStreams) iterator(id string, pos int) *string {
	it := fmt.Sprintf("%s:%d:%d", id, pos, len(f.issued))
	f.issued = append(f.issued, it)
	return &it
}

type fakeShard struct {
	parent  string
	records []streamtypes.Record
	closed  bool
}

func newFakeStreams() *fakeStreams {
	return &fakeStreams{shards: map[string]*fakeShard{}, stale: map[string]error{}}
}

func (f *fakeStreams) addShard(id, parent string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.order = append(f.order, id)
	f.shards[id] = &fakeShard{parent: parent}
}

func (f *fakeStreams) put(shard, event, pk string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	f.shards[shard].records = append(f.shards[shard].records, streamtypes.Record{
		EventID: aws.String("e" + strconv.Itoa(f.seq)), EventName: streamtypes.OperationType(event),
		Dynamodb: &streamtypes.StreamRecord{
			SequenceNumber: aws.String(fmt.Sprintf("%06d", f.seq)),
			Keys:           map[string]streamtypes.AttributeValue{"pk": &streamtypes.AttributeValueMemberS{Value: pk}},
		},
	})
}

func (f *fakeStreams) DescribeStream(_ context.Context, in *dynamodbstreams.DescribeStreamInput, _ ...func(*dynamodbstreams.Options)) (*dynamodbstreams.DescribeStreamOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	start := 0
	if in.ExclusiveStartShardId != nil {
		for i, id := range f.order {
			if id == *in.ExclusiveStartShardId {
				start = i + 1
			}
		}
	}
	d := &streamtypes.StreamDescription{}
	if start < len(f.order) { // one shard per page, to exercise paging
		id := f.order[start]
		d.Shards = []streamtypes.Shard{{ShardId: aws.String(id), ParentShardId: nilIfEmpty(f.shards[id].parent)}}
		if start+1 < len(f.order) {
			d.LastEvaluatedShardId = aws.String(id)
		}
	}
	return &dynamodbstreams.DescribeStreamOutput{StreamDescription: d}, nil
}

func nilIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (f *fakeStreams) GetShardIterator(_ context.Context, in *dynamodbstreams.GetShardIteratorInput, _ ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetShardIteratorOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := aws.ToString(in.ShardId)
	pos := 0
	if in.ShardIteratorType == streamtypes.ShardIteratorTypeAfterSequenceNumber {
		for i, r := range f.shards[id].records {
			if *r.Dynamodb.SequenceNumber == aws.ToString(in.SequenceNumber) {
				pos = i + 1
			}
		}
	}
	return &dynamodbstreams.GetShardIteratorOutput{ShardIterator: f.iterator(id, pos)}, nil
}

func (f *fakeStreams) GetRecords(_ context.Context, in *dynamodbstreams.GetRecordsInput, _ ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetRecordsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	it := aws.ToString(in.ShardIterator)
	if f.always != nil {
		return nil, f.always
	}
	if err, ok := f.stale[it]; ok {
		return nil, err
	}
	parts := strings.Split(it, ":")
	id := parts[0]
	pos, _ := strconv.Atoi(parts[1])
	s := f.shards[id]
	end := min(pos+2, len(s.records))
	out := &dynamodbstreams.GetRecordsOutput{Records: s.records[pos:end]}
	if !s.closed || end < len(s.records) {
		out.NextShardIterator = f.iterator(id, end)
	}
	return out, nil
}

// expireIterators makes every iterator handed out so far fail with err.
func (f *fakeStreams) expireIterators(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, it := range f.issued {
		f.stale[it] = err
	}
}

func keysOf(t *testing.T, r *localstack.StreamReader) string {
	t.Helper()
	recs, err := r.Next(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var ks []string
	for _, rec := range recs {
		ks = append(ks, rec.Change.Keys["pk"].String())
	}
	return strings.Join(ks, " ")
}

func TestStreamReaderShards(t *testing.T) {
	t.Parallel()

	t.Run("ParentBeforeChildAcrossPages", func(t *testing.T) {
		t.Parallel()
		f := newFakeStreams()
		f.addShard("child", "parent") // listed first, read second
		f.addShard("parent", "")
		for i := range 3 {
			f.put("parent", "INSERT", "p"+strconv.Itoa(i))
			f.put("child", "INSERT", "c"+strconv.Itoa(i))
		}
		f.shards["parent"].closed = true
		r, err := localstack.NewStreamReader(f, "arn:fake", nil)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := keysOf(t, r), "p0 p1 p2 c0 c1 c2"; got != want {
			t.Fatalf("records = %q, want %q", got, want)
		}
		if got := keysOf(t, r); got != "" {
			t.Fatalf("second Next = %q, want nothing", got)
		}
	})

	t.Run("OpenParentHoldsChild", func(t *testing.T) {
		t.Parallel()
		f := newFakeStreams()
		f.addShard("parent", "")
		f.addShard("child", "parent")
		f.put("parent", "INSERT", "p0")
		f.put("child", "INSERT", "c0")
		r, err := localstack.NewStreamReader(f, "arn:fake", nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := keysOf(t, r); got != "p0" {
			t.Fatalf("records while the parent is open = %q, want p0", got)
		}
		f.put("parent", "INSERT", "p1")
		f.mu.Lock()
		f.shards["parent"].closed = true
		f.mu.Unlock()
		if got := keysOf(t, r); got != "p1 c0" {
			t.Fatalf("records after the parent closed = %q, want p1 c0", got)
		}
	})

	for _, tc := range []struct {
		name string
		err  error
	}{
		{"ExpiredIterator", &streamtypes.ExpiredIteratorException{Message: aws.String("expired")}},
		{"TrimmedIterator", &streamtypes.TrimmedDataAccessException{Message: aws.String("read past the oldest stream record")}},
	} {
		t.Run("Resume"+tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeStreams()
			f.addShard("s", "")
			r, err := localstack.NewStreamReader(f, "arn:fake", nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := keysOf(t, r); got != "" {
				t.Fatalf("empty shard = %q", got)
			}
			f.put("s", "INSERT", "a")
			f.put("s", "INSERT", "b")
			f.put("s", "INSERT", "c")
			if got := keysOf(t, r); got != "a b c" {
				t.Fatalf("records = %q, want a b c", got)
			}
			f.expireIterators(tc.err)
			f.put("s", "INSERT", "d")
			if got := keysOf(t, r); got != "d" {
				t.Fatalf("after the iterator went stale = %q, want d only", got)
			}
		})
	}

	t.Run("ErrPersistentlyStale", func(t *testing.T) {
		t.Parallel()
		f := newFakeStreams()
		f.addShard("s", "")
		f.put("s", "INSERT", "a")
		f.always = &streamtypes.ExpiredIteratorException{Message: aws.String("expired")}
		r, err := localstack.NewStreamReader(f, "arn:fake", nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Next(t.Context()); err == nil {
			t.Fatal("Next on a shard whose iterators always fail returned no error")
		}
	})
}
