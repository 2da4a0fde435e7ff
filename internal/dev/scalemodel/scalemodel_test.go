package scalemodel_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"

	"minipush/internal/dev/localstack"
	"minipush/internal/dev/scalemodel"
	"minipush/internal/dev/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func s(v string) ddbtypes.AttributeValue { return &ddbtypes.AttributeValueMemberS{Value: v} }

// clock is a settable clock: tests that check a refusal's shape move time by hand, so
// no bucket refills behind their back.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// fixture is a model in front of the shared DynamoDB Local, with one table of its own
// (pk/sk; an LSI ByOutcome on outcome and a GSI ByStatus on status when asked), a
// client through the model and one straight to DynamoDB Local.
type fixture struct {
	model  *scalemodel.Server
	db     *dynamodb.Client // through the model
	direct *dynamodb.Client // DynamoDB Local itself
	table  string
	clock  *clock
}

type tableShape struct{ lsi, gsi bool }

func newFixture(t *testing.T, shape tableShape, opts scalemodel.Options, attempts int) *fixture {
	t.Helper()
	ctx := t.Context()
	ep := testenv.Endpoints(t)
	cfg := localstack.Config()
	f := &fixture{direct: dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(ep.DynamoDB) })}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	f.table = "scalemodel-" + hex.EncodeToString(b)
	in := &dynamodb.CreateTableInput{
		TableName:   aws.String(f.table),
		BillingMode: ddbtypes.BillingModePayPerRequest,
		AttributeDefinitions: []ddbtypes.AttributeDefinition{
			{AttributeName: aws.String("pk"), AttributeType: ddbtypes.ScalarAttributeTypeS},
			{AttributeName: aws.String("sk"), AttributeType: ddbtypes.ScalarAttributeTypeS},
		},
		KeySchema: []ddbtypes.KeySchemaElement{
			{AttributeName: aws.String("pk"), KeyType: ddbtypes.KeyTypeHash},
			{AttributeName: aws.String("sk"), KeyType: ddbtypes.KeyTypeRange},
		},
	}
	all := &ddbtypes.Projection{ProjectionType: ddbtypes.ProjectionTypeAll}
	if shape.lsi {
		in.AttributeDefinitions = append(in.AttributeDefinitions, ddbtypes.AttributeDefinition{AttributeName: aws.String("outcome"), AttributeType: ddbtypes.ScalarAttributeTypeS})
		in.LocalSecondaryIndexes = []ddbtypes.LocalSecondaryIndex{{IndexName: aws.String("ByOutcome"), Projection: all, KeySchema: []ddbtypes.KeySchemaElement{
			{AttributeName: aws.String("pk"), KeyType: ddbtypes.KeyTypeHash}, {AttributeName: aws.String("outcome"), KeyType: ddbtypes.KeyTypeRange}}}}
	}
	if shape.gsi {
		in.AttributeDefinitions = append(in.AttributeDefinitions, ddbtypes.AttributeDefinition{AttributeName: aws.String("status"), AttributeType: ddbtypes.ScalarAttributeTypeS})
		in.GlobalSecondaryIndexes = []ddbtypes.GlobalSecondaryIndex{{IndexName: aws.String("ByStatus"), Projection: all, KeySchema: []ddbtypes.KeySchemaElement{
			{AttributeName: aws.String("status"), KeyType: ddbtypes.KeyTypeHash}}}}
	}
	if _, err := f.direct.CreateTable(ctx, in); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = f.direct.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: aws.String(f.table)})
	})
	if opts.Now == nil {
		f.clock = &clock{now: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
		opts.Now = f.clock.Now
	}
	model, err := scalemodel.Start(ctx, ep.DynamoDB, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = model.Close() })
	f.model = model
	f.db = dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) {
		o.BaseEndpoint = aws.String(model.URL)
		o.RetryMaxAttempts = attempts
	})
	return f
}

func (f *fixture) put(ctx context.Context, attrs map[string]string) (*dynamodb.PutItemOutput, error) {
	it := map[string]ddbtypes.AttributeValue{}
	for k, v := range attrs {
		it[k] = s(v)
	}
	return f.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(f.table), Item: it})
}

func (f *fixture) exists(t *testing.T, pk, sk string) bool {
	t.Helper()
	out, err := f.direct.GetItem(t.Context(), &dynamodb.GetItemInput{TableName: aws.String(f.table), ConsistentRead: aws.Bool(true),
		Key: map[string]ddbtypes.AttributeValue{"pk": s(pk), "sk": s(sk)}})
	if err != nil {
		t.Fatal(err)
	}
	return out.Item != nil
}

func (f *fixture) count(t *testing.T, pk string) int {
	t.Helper()
	out, err := f.direct.Query(t.Context(), &dynamodb.QueryInput{TableName: aws.String(f.table), ConsistentRead: aws.Bool(true),
		KeyConditionExpression: aws.String("pk = :pk"), ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{":pk": s(pk)},
		Select: ddbtypes.SelectCount})
	if err != nil {
		t.Fatal(err)
	}
	return int(out.Count)
}

// throttled returns the KeyRangeThroughputExceeded reason of a refusal, failing the
// test on any other error.
func throttled(t *testing.T, err error) ddbtypes.ThrottlingReason {
	t.Helper()
	var pte *ddbtypes.ProvisionedThroughputExceededException
	if !errors.As(err, &pte) {
		t.Fatalf("got %v, want ProvisionedThroughputExceededException", err)
	}
	if len(pte.ThrottlingReasons) != 1 {
		t.Fatalf("ThrottlingReasons %+v, want one", pte.ThrottlingReasons)
	}
	if !strings.HasPrefix(pte.ErrorMessage(), "Throughput exceeds the current capacity") {
		t.Errorf("message %q, want AWS's on-demand throttle message", pte.ErrorMessage())
	}
	return pte.ThrottlingReasons[0]
}

// TestHotKeyVersusSpread offers the same write rate — four times one key's scaled
// limit — to one partition key and to twenty, through the SDK's retries (one retry
// here, so the test takes the offered 1.5 s rather than as long as the hot key needs
// to take it all): the hot key is held to its limit (refusals, retries, and no refused
// write applied), the spread keys are never refused, and the statistics name the hot
// key as the hottest.
func TestHotKeyVersusSpread(t *testing.T) {
	t.Parallel()
	const (
		k       = 100 // 10 WCU/s per key
		limit   = 1000 / k
		rate    = 4 * limit // writes per second offered
		offered = 60        // 1.5 s of it
		workers = 8
	)
	for _, tc := range []struct {
		name string
		keys int
	}{{"hot", 1}, {"spread", 20}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, tableShape{}, scalemodel.Options{K: k, Now: time.Now}, 2)
			ctx := t.Context()
			jobs := make(chan int)
			var ok, failed, retried atomic.Int64
			var wg sync.WaitGroup
			for range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range jobs {
						out, err := f.put(ctx, map[string]string{"pk": fmt.Sprintf("key%d", i%tc.keys), "sk": fmt.Sprint(i)})
						if err != nil {
							var pte *ddbtypes.ProvisionedThroughputExceededException
							if !errors.As(err, &pte) {
								t.Errorf("write failed with %v, want only throttles", err)
							}
							failed.Add(1)
							continue
						}
						ok.Add(1)
						if r, _ := retry.GetAttemptResults(out.ResultMetadata); len(r.Results) > 1 {
							retried.Add(1)
						}
					}
				}()
			}
			start := time.Now()
			tick := time.NewTicker(time.Second / rate)
			for i := range offered {
				<-tick.C // pacing the offered load, not waiting for a result
				jobs <- i
			}
			tick.Stop()
			close(jobs)
			wg.Wait()
			elapsed := time.Since(start).Seconds()
			st := f.model.Stats()
			written := 0
			for i := range tc.keys {
				written += f.count(t, fmt.Sprintf("key%d", i))
			}
			t.Logf("%s: %d written, %d failed after retries, %d retried, %d refusals in %.2fs; hottest %+v",
				tc.name, ok.Load(), failed.Load(), retried.Load(), st.Throttled(), elapsed, st.Hottest(1))
			if written != int(ok.Load()) {
				t.Errorf("%d items stored, %d writes succeeded: a refused write was applied", written, ok.Load())
			}
			hot := st.Hottest(1)[0]
			if tc.keys == 1 {
				// One second's burst, the refill, and what the writers in flight had
				// reserved when the bucket emptied. (So a key's first second can hold up
				// to twice its limit; sustained, it gets its limit.)
				if most := limit + limit*elapsed + workers; float64(ok.Load()) > most {
					t.Errorf("hot key took %d writes in %.2fs, want at most %.0f (limit %d/s)", ok.Load(), elapsed, most, limit)
				}
				if st.Throttled() == 0 || retried.Load() == 0 {
					t.Errorf("hot key: %d refusals, %d calls retried by the SDK; want both", st.Throttled(), retried.Load())
				}
				if hot.Key != "S:key0" || hot.PeakWriteShare < 0.9 || hot.Throttled == 0 {
					t.Errorf("hottest %+v, want S:key0 at about its whole limit, throttled", hot)
				}
				return
			}
			if st.Throttled() != 0 || ok.Load() != offered {
				t.Errorf("spread keys: %d refusals, %d of %d written; want none refused", st.Throttled(), ok.Load(), offered)
			}
			if hot.PeakWriteShare > 0.5 {
				t.Errorf("spread keys: hottest at %.2f of its limit, want at most half", hot.PeakWriteShare)
			}
		})
	}
}

// TestThrottleAnswer checks a refusal's shape as AWS sends it: HTTP 400
// ProvisionedThroughputExceededException with a TableWriteKeyRangeThroughputExceeded
// reason naming the table's ARN; TableRead... for reads; and the key admits again once
// its bucket refilled.
func TestThrottleAnswer(t *testing.T) {
	t.Parallel()
	f := newFixture(t, tableShape{}, scalemodel.Options{K: 100}, 1)
	ctx := t.Context()
	for i := range 10 { // one second's worth of 1 KB writes at 10 WCU/s
		if _, err := f.put(ctx, map[string]string{"pk": "hot", "sk": fmt.Sprint(i)}); err != nil {
			t.Fatalf("write %d within the limit: %v", i, err)
		}
	}
	_, err := f.put(ctx, map[string]string{"pk": "hot", "sk": "over"})
	r := throttled(t, err)
	if aws.ToString(r.Reason) != "TableWriteKeyRangeThroughputExceeded" || !strings.HasSuffix(aws.ToString(r.Resource), ":table/"+f.table) {
		t.Errorf("reason %s on %s, want TableWriteKeyRangeThroughputExceeded on the table's ARN", aws.ToString(r.Reason), aws.ToString(r.Resource))
	}
	if f.exists(t, "hot", "over") {
		t.Error("the refused write was applied")
	}
	if _, err := f.put(ctx, map[string]string{"pk": "cold", "sk": "1"}); err != nil {
		t.Errorf("another key: %v", err)
	}

	key := map[string]ddbtypes.AttributeValue{"pk": s("reads"), "sk": s("1")}
	for i := range 30 { // 30 RCU/s: one second of strongly consistent reads
		if _, err := f.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(f.table), Key: key, ConsistentRead: aws.Bool(true)}); err != nil {
			t.Fatalf("read %d within the limit: %v", i, err)
		}
	}
	_, err = f.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(f.table), Key: key, ConsistentRead: aws.Bool(true)})
	if r := throttled(t, err); aws.ToString(r.Reason) != "TableReadKeyRangeThroughputExceeded" {
		t.Errorf("read refused for %s, want TableReadKeyRangeThroughputExceeded", aws.ToString(r.Reason))
	}

	f.clock.Add(time.Second)
	if _, err := f.put(ctx, map[string]string{"pk": "hot", "sk": "later"}); err != nil {
		t.Errorf("a second later: %v", err)
	}
}

// TestGSIHotKeyThrottlesTableWrite writes items of distinct table keys that share one
// GSI key: once that index key is spent, the table's write is refused with the index's
// reason and ARN, unapplied — by a put carrying the key and by an update setting it.
func TestGSIHotKeyThrottlesTableWrite(t *testing.T) {
	t.Parallel()
	f := newFixture(t, tableShape{gsi: true}, scalemodel.Options{K: 100}, 1)
	ctx := t.Context()
	for i := range 10 {
		if _, err := f.put(ctx, map[string]string{"pk": fmt.Sprint("c", i), "sk": "meta", "status": "sending"}); err != nil {
			t.Fatalf("write %d within the index key's limit: %v", i, err)
		}
	}
	_, err := f.put(ctx, map[string]string{"pk": "c-over", "sk": "meta", "status": "sending"})
	r := throttled(t, err)
	if aws.ToString(r.Reason) != "IndexWriteKeyRangeThroughputExceeded" || !strings.HasSuffix(aws.ToString(r.Resource), ":table/"+f.table+"/index/ByStatus") {
		t.Errorf("reason %s on %s, want IndexWriteKeyRangeThroughputExceeded on ByStatus's ARN", aws.ToString(r.Reason), aws.ToString(r.Resource))
	}
	if f.exists(t, "c-over", "meta") {
		t.Error("the refused write was applied to the table")
	}
	// An item elsewhere in the index moves into the hot key by an update.
	if _, err := f.put(ctx, map[string]string{"pk": "c-moving", "sk": "meta", "status": "draft"}); err != nil {
		t.Fatal(err)
	}
	_, err = f.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: aws.String(f.table),
		Key:                      map[string]ddbtypes.AttributeValue{"pk": s("c-moving"), "sk": s("meta")},
		UpdateExpression:         aws.String("SET #st = :st"),
		ExpressionAttributeNames: map[string]string{"#st": "status"}, ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{":st": s("sending")}})
	if r := throttled(t, err); aws.ToString(r.Reason) != "IndexWriteKeyRangeThroughputExceeded" {
		t.Errorf("update refused for %s, want IndexWriteKeyRangeThroughputExceeded", aws.ToString(r.Reason))
	}
	got, err := f.direct.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(f.table), ConsistentRead: aws.Bool(true),
		Key: map[string]ddbtypes.AttributeValue{"pk": s("c-moving"), "sk": s("meta")}})
	if err != nil {
		t.Fatal(err)
	}
	if st := got.Item["status"].(*ddbtypes.AttributeValueMemberS).Value; st != "draft" {
		t.Errorf("status %q after the refused update, want draft", st)
	}
	st := f.model.Stats()
	if ix, _ := st.Resource(f.table, "ByStatus"); ix.Throttled != 2 || ix.WriteUnits < 10 {
		t.Errorf("ByStatus stats %+v, want 2 refusals and the 10 index writes", ix)
	}
}

// TestBatchWriteUnprocessed sends a BatchWriteItem over a spent key and fresh ones: the
// spent key's requests come back in UnprocessedItems unapplied and the rest is written;
// a batch of spent keys only is throttled whole, as AWS answers.
func TestBatchWriteUnprocessed(t *testing.T) {
	t.Parallel()
	f := newFixture(t, tableShape{}, scalemodel.Options{K: 100}, 1)
	ctx := t.Context()
	for i := range 10 {
		if _, err := f.put(ctx, map[string]string{"pk": "hot", "sk": fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	req := func(pk, sk string) ddbtypes.WriteRequest {
		return ddbtypes.WriteRequest{PutRequest: &ddbtypes.PutRequest{Item: map[string]ddbtypes.AttributeValue{"pk": s(pk), "sk": s(sk)}}}
	}
	out, err := f.db.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: map[string][]ddbtypes.WriteRequest{f.table: {
		req("hot", "b1"), req("cold1", "b"), req("hot", "b2"), req("cold2", "b"),
	}}})
	if err != nil {
		t.Fatal(err)
	}
	left := out.UnprocessedItems[f.table]
	if len(left) != 2 || left[0].PutRequest.Item["sk"].(*ddbtypes.AttributeValueMemberS).Value != "b1" ||
		left[1].PutRequest.Item["sk"].(*ddbtypes.AttributeValueMemberS).Value != "b2" {
		t.Errorf("UnprocessedItems %+v, want the two writes of the hot key", left)
	}
	if f.exists(t, "hot", "b1") || f.exists(t, "hot", "b2") || !f.exists(t, "cold1", "b") || !f.exists(t, "cold2", "b") {
		t.Error("want the cold keys written and the hot key's writes not")
	}
	_, err = f.db.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: map[string][]ddbtypes.WriteRequest{f.table: {req("hot", "b3")}}})
	if r := throttled(t, err); aws.ToString(r.Reason) != "TableWriteKeyRangeThroughputExceeded" {
		t.Errorf("reason %s", aws.ToString(r.Reason))
	}

	// BatchGetItem likewise leaves a spent key unprocessed: read a fresh key and the hot
	// one (30 RCU/s) until the hot key's reads run out; then it alone is throttled whole.
	hotKey := map[string]ddbtypes.AttributeValue{"pk": s("hot"), "sk": s("1")}
	for i := range 100 {
		keys := []map[string]ddbtypes.AttributeValue{{"pk": s(fmt.Sprint("fresh", i)), "sk": s("b")}, hotKey}
		got, err := f.db.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: map[string]ddbtypes.KeysAndAttributes{f.table: {Keys: keys}}})
		if err != nil {
			t.Fatal(err)
		}
		if u := got.UnprocessedKeys[f.table].Keys; len(u) > 0 {
			if len(u) != 1 || u[0]["pk"].(*ddbtypes.AttributeValueMemberS).Value != "hot" {
				t.Errorf("UnprocessedKeys %v, want the hot key alone", u)
			}
			_, err := f.db.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: map[string]ddbtypes.KeysAndAttributes{f.table: {Keys: u}}})
			if r := throttled(t, err); aws.ToString(r.Reason) != "TableReadKeyRangeThroughputExceeded" {
				t.Errorf("reason %s", aws.ToString(r.Reason))
			}
			return
		}
	}
	t.Error("BatchGetItem never left the spent key unprocessed")
}

// TestTransactWriteThrottled: a transaction with one item on a spent key is cancelled
// whole with the ThrottlingError reason at that item, and none of it is applied.
func TestTransactWriteThrottled(t *testing.T) {
	t.Parallel()
	f := newFixture(t, tableShape{}, scalemodel.Options{K: 200}, 1) // 5 WCU/s, a transaction costs 2
	ctx := t.Context()
	put := func(pk, sk string) ddbtypes.TransactWriteItem {
		return ddbtypes.TransactWriteItem{Put: &ddbtypes.Put{TableName: aws.String(f.table), Item: map[string]ddbtypes.AttributeValue{"pk": s(pk), "sk": s(sk)}}}
	}
	var err error
	i := 0
	for ; i < 10; i++ {
		if _, err = f.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []ddbtypes.TransactWriteItem{
			put(fmt.Sprint("cold", i), "x"), put("hot", fmt.Sprint(i))}}); err != nil {
			break
		}
	}
	var tce *ddbtypes.TransactionCanceledException
	if !errors.As(err, &tce) {
		t.Fatalf("got %v, want TransactionCanceledException once the hot key is spent", err)
	}
	if len(tce.CancellationReasons) != 2 || aws.ToString(tce.CancellationReasons[0].Code) != "None" || aws.ToString(tce.CancellationReasons[1].Code) != "ThrottlingError" {
		t.Errorf("cancellation reasons %+v, want [None ThrottlingError]", tce.CancellationReasons)
	}
	if i < 2 || f.exists(t, fmt.Sprint("cold", i), "x") || f.exists(t, "hot", fmt.Sprint(i)) || !f.exists(t, "cold0", "x") {
		t.Errorf("cancelled at transaction %d: want earlier ones applied, the cancelled one not at all", i)
	}
}

// TestItemOver400KB: an item over 400 KB is refused with AWS's ValidationException,
// alone or in a batch, and nothing of the request is written.
func TestItemOver400KB(t *testing.T) {
	t.Parallel()
	f := newFixture(t, tableShape{}, scalemodel.Options{K: 1}, 1)
	ctx := t.Context()
	big := map[string]ddbtypes.AttributeValue{"pk": s("big"), "sk": s("1"), "d": s(strings.Repeat("x", 400<<10))}
	_, err := f.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(f.table), Item: big})
	if err == nil || !strings.Contains(err.Error(), "ValidationException") || !strings.Contains(err.Error(), "Item size has exceeded the maximum allowed size") {
		t.Errorf("got %v, want ValidationException: Item size has exceeded the maximum allowed size", err)
	}
	_, err = f.db.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: map[string][]ddbtypes.WriteRequest{f.table: {
		{PutRequest: &ddbtypes.PutRequest{Item: map[string]ddbtypes.AttributeValue{"pk": s("small"), "sk": s("1")}}},
		{PutRequest: &ddbtypes.PutRequest{Item: big}},
	}}})
	if err == nil || !strings.Contains(err.Error(), "Item size has exceeded the maximum allowed size") {
		t.Errorf("batch: got %v, want the 400 KB ValidationException", err)
	}
	if f.exists(t, "big", "1") || f.exists(t, "small", "1") {
		t.Error("a refused request was written")
	}
	// Just under the limit (names count: "pk" "sk" "d" and their values) is accepted.
	under := map[string]ddbtypes.AttributeValue{"pk": s("big"), "sk": s("1"), "d": s(strings.Repeat("x", 400<<10-len("pkbigsk1d")))}
	if _, err := f.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(f.table), Item: under}); err != nil {
		t.Errorf("an item of exactly 400 KB: %v", err)
	}
}

// TestItemCollectionCap fills one item collection of a table with an LSI up to a cap
// of 8 KB: the write that would pass it gets ItemCollectionSizeLimitExceededException
// and is not applied, another collection is unaffected, and a delete makes room again.
func TestItemCollectionCap(t *testing.T) {
	t.Parallel()
	f := newFixture(t, tableShape{lsi: true}, scalemodel.Options{K: 1, CollectionLimit: 8 << 10}, 1)
	ctx := t.Context()
	row := func(pk, sk string) map[string]string {
		return map[string]string{"pk": pk, "sk": sk, "outcome": "sent", "body": strings.Repeat("b", 1000)}
	}
	// Each item counts about 1 KB in the table and again in ByOutcome (ALL), plus
	// 100 bytes of overhead each: 3 fit in 8 KB, the 4th does not.
	for i := range 3 {
		if _, err := f.put(ctx, row("run1", fmt.Sprint(i))); err != nil {
			t.Fatalf("item %d under the cap: %v", i, err)
		}
	}
	_, err := f.put(ctx, row("run1", "3"))
	var full *ddbtypes.ItemCollectionSizeLimitExceededException
	if !errors.As(err, &full) {
		t.Fatalf("got %v, want ItemCollectionSizeLimitExceededException", err)
	}
	if f.exists(t, "run1", "3") {
		t.Error("the refused write was applied")
	}
	if _, err := f.put(ctx, row("run2", "0")); err != nil {
		t.Errorf("another collection: %v", err)
	}
	if _, err := f.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String(f.table),
		Key: map[string]ddbtypes.AttributeValue{"pk": s("run1"), "sk": s("0")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.put(ctx, row("run1", "3")); err != nil {
		t.Errorf("after a delete made room: %v", err)
	}
}

// TestAnswersAsAsked: the capacity and item images the model asks for on its own do
// not reach a client that did not ask for them, and what a client asked for does.
func TestAnswersAsAsked(t *testing.T) {
	t.Parallel()
	f := newFixture(t, tableShape{lsi: true, gsi: true}, scalemodel.Options{K: 1}, 1)
	ctx := t.Context()
	item := map[string]ddbtypes.AttributeValue{"pk": s("a"), "sk": s("1"), "outcome": s("sent"), "status": s("x")}
	out, err := f.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(f.table), Item: item})
	if err != nil {
		t.Fatal(err)
	}
	if out.ConsumedCapacity != nil || out.Attributes != nil {
		t.Errorf("plain put answered capacity %+v and attributes %v", out.ConsumedCapacity, out.Attributes)
	}
	out, err = f.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(f.table), Item: item,
		ReturnConsumedCapacity: ddbtypes.ReturnConsumedCapacityTotal, ReturnValues: ddbtypes.ReturnValueAllOld})
	if err != nil {
		t.Fatal(err)
	}
	if c := out.ConsumedCapacity; c == nil || aws.ToFloat64(c.CapacityUnits) == 0 || c.Table != nil || c.GlobalSecondaryIndexes != nil || out.Attributes["pk"] == nil {
		t.Errorf("put asking TOTAL and ALL_OLD: capacity %+v, attributes %v", c, out.Attributes)
	}
	up, err := f.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: aws.String(f.table), Key: map[string]ddbtypes.AttributeValue{"pk": s("a"), "sk": s("1")},
		UpdateExpression: aws.String("SET n = :n"), ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{":n": s("v")}})
	if err != nil {
		t.Fatal(err)
	}
	if up.Attributes != nil || up.ConsumedCapacity != nil {
		t.Errorf("plain update answered attributes %v, capacity %+v", up.Attributes, up.ConsumedCapacity)
	}
	// Control plane and streams pass through.
	if _, err := f.db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(f.table)}); err != nil {
		t.Errorf("DescribeTable through the model: %v", err)
	}
	streams := dynamodbstreams.NewFromConfig(localstack.Config(), func(o *dynamodbstreams.Options) { o.BaseEndpoint = aws.String(f.model.URL) })
	if _, err := streams.ListStreams(ctx, &dynamodbstreams.ListStreamsInput{}); err != nil {
		t.Errorf("ListStreams through the model: %v", err)
	}
}

func TestStartRefusesBadOptions(t *testing.T) {
	t.Parallel()
	for _, o := range []scalemodel.Options{{K: 0}, {K: 0.5}, {K: 10, Burst: -1}, {K: 10, CollectionLimit: -1}, {K: 10, Window: -time.Second}} {
		if m, err := scalemodel.Start(t.Context(), "http://127.0.0.1:1", o); err == nil {
			_ = m.Close()
			t.Errorf("Start(%+v) accepted", o)
		}
	}
}
