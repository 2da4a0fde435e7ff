package localstack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	streamtypes "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"

	"minipush/internal/expire"
)

// StreamsClient is the part of the DynamoDB Streams client a StreamReader uses.
type StreamsClient interface {
	DescribeStream(ctx context.Context, in *dynamodbstreams.DescribeStreamInput, optFns ...func(*dynamodbstreams.Options)) (*dynamodbstreams.DescribeStreamOutput, error)
	GetShardIterator(ctx context.Context, in *dynamodbstreams.GetShardIteratorInput, optFns ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetShardIteratorOutput, error)
	GetRecords(ctx context.Context, in *dynamodbstreams.GetRecordsInput, optFns ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetRecordsOutput, error)
}

// StreamReader reads a DynamoDB stream of the local stack the way Lambda's event source
// mapping does for a function: every shard (parents before children), from the trim
// horizon, each record once, converted to the aws-lambda-go event a stream-triggered
// function receives and filtered by the mapping's FilterCriteria patterns. It remembers
// its position in each shard, so successive Next calls return only new records.
// A StreamReader is safe for concurrent use; calls are serialised.
type StreamReader struct {
	client  StreamsClient
	arn     string
	filters []recordFilter

	// Now, when set, restamps every record's ApproximateCreationDateTime with the local
	// clock at the moment the record is read. DynamoDB Local stamps records with the wall
	// clock; a local stack driven by a test clock sets Now so records carry the time the
	// rest of that world sees (read promptly, the time of the change).
	Now func() time.Time

	mu     sync.Mutex
	shards map[string]*shardCursor
}

type shardCursor struct {
	parent   string
	iterator *string
	lastSeq  string
	done     bool // closed and read to its end
}

// NewStreamReader returns a reader of the stream with the given ARN. patterns are
// FilterCriteria patterns (JSON); a record passes when it matches any of them, and with
// none every record passes. Only equality patterns are understood (see
// parseFilterPattern); anything else is an error rather than a filter silently dropped.
func NewStreamReader(client StreamsClient, streamARN string, patterns []string) (*StreamReader, error) {
	r := &StreamReader{client: client, arn: streamARN, shards: map[string]*shardCursor{}}
	for _, p := range patterns {
		f, err := parseFilterPattern(p)
		if err != nil {
			return nil, err
		}
		r.filters = append(r.filters, f)
	}
	return r, nil
}

// ShardRecord is a stream record and the shard it was read from: Lambda batches a
// stream shard by shard, and its failure records name the shard.
type ShardRecord struct {
	ShardID string
	Record  events.DynamoDBEventRecord
}

// Next returns the records written since the previous call (all of them on the first),
// in order within each shard, filtered; an empty result means nothing new yet.
func (r *StreamReader) Next(ctx context.Context) ([]events.DynamoDBEventRecord, error) {
	recs, err := r.NextInShards(ctx)
	out := make([]events.DynamoDBEventRecord, 0, len(recs))
	for _, sr := range recs {
		out = append(out, sr.Record)
	}
	return out, err
}

// NextInShards is Next with the shard of each record; records of one shard are
// contiguous and in order.
func (r *StreamReader) NextInShards(ctx context.Context) ([]ShardRecord, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.discoverShards(ctx); err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(r.shards))
	for id := range r.shards {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := []ShardRecord{}
	// Reading a parent to its end can unblock its children: loop until no shard moves.
	for progressed := true; progressed; {
		progressed = false
		for _, id := range ids {
			c := r.shards[id]
			if c.done {
				continue
			}
			if p, ok := r.shards[c.parent]; ok && !p.done {
				continue
			}
			recs, err := r.readShard(ctx, id, c)
			if err != nil {
				return out, err
			}
			out = append(out, recs...)
			if c.done {
				progressed = true
			}
		}
	}
	return out, nil
}

// discoverShards adds the shards the reader has not seen yet.
func (r *StreamReader) discoverShards(ctx context.Context) error {
	var start *string
	for {
		out, err := r.client.DescribeStream(ctx, &dynamodbstreams.DescribeStreamInput{
			StreamArn: aws.String(r.arn), ExclusiveStartShardId: start,
		})
		if err != nil {
			return fmt.Errorf("localstack: describe stream %s: %w", r.arn, err)
		}
		d := out.StreamDescription
		for _, s := range d.Shards {
			id := aws.ToString(s.ShardId)
			if _, ok := r.shards[id]; !ok {
				r.shards[id] = &shardCursor{parent: aws.ToString(s.ParentShardId)}
			}
		}
		if d.LastEvaluatedShardId == nil {
			return nil
		}
		start = d.LastEvaluatedShardId
	}
}

// readShard reads a shard from its cursor until a page comes back empty.
func (r *StreamReader) readShard(ctx context.Context, id string, c *shardCursor) ([]ShardRecord, error) {
	var out []ShardRecord
	reacquired := false
	for {
		if c.iterator == nil {
			in := &dynamodbstreams.GetShardIteratorInput{
				StreamArn: aws.String(r.arn), ShardId: aws.String(id),
				ShardIteratorType: streamtypes.ShardIteratorTypeTrimHorizon,
			}
			if c.lastSeq != "" {
				in.ShardIteratorType = streamtypes.ShardIteratorTypeAfterSequenceNumber
				in.SequenceNumber = aws.String(c.lastSeq)
			}
			it, err := r.client.GetShardIterator(ctx, in)
			if err != nil {
				return out, fmt.Errorf("localstack: shard iterator %s: %w", id, err)
			}
			if it.ShardIterator == nil {
				c.done = true
				return out, nil
			}
			c.iterator = it.ShardIterator
		}
		page, err := r.client.GetRecords(ctx, &dynamodbstreams.GetRecordsInput{ShardIterator: c.iterator})
		if staleIterator(err) && !reacquired {
			// Iterators live 15 minutes, and DynamoDB Local refuses one taken while the shard
			// was empty once records arrive (TrimmedDataAccessException): resume after the
			// last record read, or from the trim horizon. Once per call, so a shard that
			// keeps refusing surfaces as an error instead of a loop.
			c.iterator = nil
			reacquired = true
			continue
		}
		if err != nil {
			return out, fmt.Errorf("localstack: get records of %s: %w", id, err)
		}
		for _, rec := range page.Records {
			ev, err := r.convert(rec)
			if err != nil {
				return out, err
			}
			c.lastSeq = ev.Change.SequenceNumber
			if r.match(ev) {
				out = append(out, ShardRecord{ShardID: id, Record: ev})
			}
		}
		c.iterator = page.NextShardIterator
		if c.iterator == nil {
			c.done = true
			return out, nil
		}
		if len(page.Records) == 0 {
			return out, nil
		}
	}
}

func staleIterator(err error) bool {
	var expired *streamtypes.ExpiredIteratorException
	var trimmed *streamtypes.TrimmedDataAccessException
	return errors.As(err, &expired) || errors.As(err, &trimmed)
}

func (r *StreamReader) match(ev events.DynamoDBEventRecord) bool {
	if len(r.filters) == 0 {
		return true
	}
	for _, f := range r.filters {
		if f.match(ev) {
			return true
		}
	}
	return false
}

// convert turns an SDK stream record into the record Lambda hands a function: the
// product's own conversion (expire replays stream records with it), with the fields
// DynamoDB Local leaves empty filled in as AWS fills them, and the reader's clock as the
// creation time when it has one (the expire handler compares it with the grant's expiry).
func (r *StreamReader) convert(rec streamtypes.Record) (events.DynamoDBEventRecord, error) {
	ev, err := expire.EventRecord(r.arn, rec)
	if err != nil {
		return ev, fmt.Errorf("localstack: %w", err)
	}
	if ev.AWSRegion == "" {
		ev.AWSRegion = Region
	}
	if ev.EventSource == "" {
		ev.EventSource = "aws:dynamodb"
	}
	if r.Now != nil {
		ev.Change.ApproximateCreationDateTime = events.SecondsEpochTime{Time: r.Now()}
	}
	return ev, nil
}

// recordFilter is one parsed FilterCriteria pattern: a JSON object whose keys name fields
// of the event record as a function receives it and whose leaves are lists of values.
type recordFilter map[string]any

// parseFilterPattern understands the equality subset of Lambda's filter syntax — nested
// objects down to lists of strings or numbers, e.g. {"eventName":["REMOVE"]} or
// {"dynamodb":{"Keys":{"pk":{"S":["a"]}}}} — and refuses everything else (prefix,
// numeric ranges, exists, anything-but, null), so no filter is silently ignored locally.
// https://docs.aws.amazon.com/lambda/latest/dg/invocation-eventfiltering.html
func parseFilterPattern(p string) (recordFilter, error) {
	dec := json.NewDecoder(strings.NewReader(p))
	dec.UseNumber()
	var f map[string]any
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("localstack: filter pattern %s: not a JSON object: %w", p, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("localstack: filter pattern %s: trailing data", p)
	}
	if err := checkPattern(f); err != nil {
		return nil, fmt.Errorf("localstack: filter pattern %s: %w", p, err)
	}
	return f, nil
}

func checkPattern(obj map[string]any) error {
	if len(obj) == 0 {
		return errors.New("empty object")
	}
	for k, v := range obj {
		switch v := v.(type) {
		case map[string]any:
			if err := checkPattern(v); err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
		case []any:
			if len(v) == 0 {
				return fmt.Errorf("%s: empty list", k)
			}
			for _, e := range v {
				switch e.(type) {
				case string, json.Number:
				default:
					return fmt.Errorf("%s: only lists of strings or numbers (equality) are emulated, not %v", k, e)
				}
			}
		default:
			return fmt.Errorf("%s: want an object or a list, not %v", k, v)
		}
	}
	return nil
}

// match reports whether ev, as the JSON Lambda would deliver, matches the pattern.
func (f recordFilter) match(ev events.DynamoDBEventRecord) bool {
	b, err := json.Marshal(ev)
	if err != nil {
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return false
	}
	return matchObject(f, doc)
}

func matchObject(pattern, doc map[string]any) bool {
	for k, pv := range pattern {
		dv, ok := doc[k]
		if !ok {
			return false
		}
		switch pv := pv.(type) {
		case map[string]any:
			sub, ok := dv.(map[string]any)
			if !ok || !matchObject(pv, sub) {
				return false
			}
		case []any:
			if !matchLeaf(pv, dv) {
				return false
			}
		}
	}
	return true
}

// matchLeaf reports whether an event value (or, for a list, any of its elements) equals
// one of the pattern's values.
func matchLeaf(want []any, got any) bool {
	if l, ok := got.([]any); ok {
		for _, g := range l {
			if matchLeaf(want, g) {
				return true
			}
		}
		return false
	}
	for _, w := range want {
		switch w := w.(type) {
		case string:
			if g, ok := got.(string); ok && g == w {
				return true
			}
		case json.Number:
			g, ok := got.(json.Number)
			if !ok {
				continue
			}
			wf, err1 := w.Float64()
			gf, err2 := g.Float64()
			if err1 == nil && err2 == nil && wf == gf {
				return true
			}
		}
	}
	return false
}
