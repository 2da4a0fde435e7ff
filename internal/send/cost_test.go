package send_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"minipush"
	"minipush/internal/dynamo"
	"minipush/internal/send"
)

// writeCounter counts DynamoDB write requests by table, and the write units of single
// item writes as DynamoDB reports them with their index entries (asked for with
// ReturnConsumedCapacity INDEXES): the headline cost of the send path (DynamoDB bills
// per write request unit; every item here is under 1 KB, so a write with no index entry
// to rewrite is one unit).
type writeCounter struct {
	dynamo.API
	mu     sync.Mutex
	writes map[string]int
	units  map[string]float64 // by table, its indexes' units included
	index  map[string]float64 // by index name
	reads  int
}

func (c *writeCounter) add(table string, n int) {
	c.mu.Lock()
	c.writes[table] += n
	c.mu.Unlock()
}

func (c *writeCounter) consumed(cc *types.ConsumedCapacity) {
	if cc == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.units == nil {
		c.units, c.index = map[string]float64{}, map[string]float64{}
	}
	c.units[aws.ToString(cc.TableName)] += aws.ToFloat64(cc.CapacityUnits)
	for name, u := range cc.GlobalSecondaryIndexes {
		c.index[name] += aws.ToFloat64(u.CapacityUnits)
	}
}

func (c *writeCounter) read() { c.mu.Lock(); c.reads++; c.mu.Unlock() }

func (c *writeCounter) PutItem(ctx context.Context, in *dynamodb.PutItemInput, o ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	c.add(aws.ToString(in.TableName), 1)
	cp := *in
	cp.ReturnConsumedCapacity = types.ReturnConsumedCapacityIndexes
	out, err := c.API.PutItem(ctx, &cp, o...)
	if err == nil {
		c.consumed(out.ConsumedCapacity)
	}
	return out, err
}

func (c *writeCounter) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, o ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	c.add(aws.ToString(in.TableName), 1)
	cp := *in
	cp.ReturnConsumedCapacity = types.ReturnConsumedCapacityIndexes
	out, err := c.API.UpdateItem(ctx, &cp, o...)
	if err == nil {
		c.consumed(out.ConsumedCapacity)
	}
	return out, err
}

func (c *writeCounter) DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, o ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error) {
	c.add(aws.ToString(in.TableName), 1)
	cp := *in
	cp.ReturnConsumedCapacity = types.ReturnConsumedCapacityIndexes
	out, err := c.API.DeleteItem(ctx, &cp, o...)
	if err == nil {
		c.consumed(out.ConsumedCapacity)
	}
	return out, err
}

func (c *writeCounter) BatchWriteItem(ctx context.Context, in *dynamodb.BatchWriteItemInput, o ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error) {
	for table, reqs := range in.RequestItems {
		c.add(table, len(reqs))
	}
	cp := *in
	cp.ReturnConsumedCapacity = types.ReturnConsumedCapacityIndexes
	out, err := c.API.BatchWriteItem(ctx, &cp, o...)
	if err == nil {
		for i := range out.ConsumedCapacity {
			c.consumed(&out.ConsumedCapacity[i])
		}
	}
	return out, err
}

func (c *writeCounter) TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, o ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error) {
	c.add("transaction", 2*len(in.TransactItems)) // transactions bill double
	return c.API.TransactWriteItems(ctx, in, o...)
}

func (c *writeCounter) GetItem(ctx context.Context, in *dynamodb.GetItemInput, o ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	c.read()
	return c.API.GetItem(ctx, in, o...)
}

func (c *writeCounter) Query(ctx context.Context, in *dynamodb.QueryInput, o ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error) {
	c.read()
	return c.API.Query(ctx, in, o...)
}

func (c *writeCounter) BatchGetItem(ctx context.Context, in *dynamodb.BatchGetItemInput, o ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error) {
	c.read()
	return c.API.BatchGetItem(ctx, in, o...)
}

func (c *writeCounter) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, w := range c.writes {
		n += w
	}
	return n
}

// counted returns a handler whose store counts its DynamoDB requests. Only the
// sender's own requests are counted: the token cache keeps its own client.
func (f *fixture) counted(parallelism int) (*send.Handler, *writeCounter) {
	wc := &writeCounter{API: f.db.Client, writes: map[string]int{}}
	db := *f.db
	db.Client = wc
	h := f.handler(parallelism)
	h.Store = &db
	return h, wc
}

// TestWritesPerMessage measures the DynamoDB writes of a run where everyone is sent:
// claim + spend + a share of a sent log item (one per delivery shard per counter
// flush, sentlog.go) per message, where it was claim + spend + final = 3; plus one counter
// update per run per invocation, of one write unit (the run item carries no index key:
// its ByDue entry is a separate watch item), and the completion (run marked done, its
// watch item deleted, the campaign marked done). 100 recipients in 2 SQS messages of
// one invocation: about 2.6 write units a message here (100 claims, 100 spends, ~53
// log items: the recipients' distinct shards); make bench's 1000 measure 2.27; a timed
// counter flush (CounterFlush, every second an invocation runs) adds one unit and a
// log item per shard it touches. An app with receipts on (minipush.App.Receipts) keeps
// a final write per sent message, with its ByRecipient entry: 4n + 7.
func TestWritesPerMessage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		receipts bool
	}{{"ReceiptsOff", false}, {"ReceiptsOn", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testWritesPerMessage(t, tc.receipts)
		})
	}
}

func testWritesPerMessage(t *testing.T, receiptsOn bool) {
	f := newFixture(t)
	const n, perMessage = 100, 50
	ids := f.grantedUsers(t, n)
	f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{SkipOptedOut: true}, n)
	h, wc := f.counted(16)
	h.Apps = map[string]minipush.App{appID: {AppID: appID, Receipts: receiptsOn, QuietHours: &minipush.QuietHours{Off: true}}}
	// A running invocation also flushes its counters every CounterFlush (progress
	// stays fresh): at most one more counter update, of one unit, per second it ran.
	flushes := 0
	for _, ev := range events10(t, batches("c", ids, perMessage)) {
		start := time.Now()
		handle(t, h, ev)
		flushes += int(time.Since(start) / send.DefaultCounterFlush)
	}
	f.allSent(t, "c", ids)
	messages := n / perMessage
	grants, deliveries, campaigns := wc.writes[f.db.Tables.Grants], wc.writes[f.db.Tables.Deliveries], wc.writes[f.db.Tables.Campaigns]
	t.Logf("%d sent: %d grant writes, %d delivery writes, %d campaign writes, %d reads (%.2f writes, %.2f reads per message)",
		n, grants, deliveries, campaigns, wc.reads, float64(wc.total())/n, float64(wc.reads)/n)
	// Without receipts a sent message's outcome goes into the invocation's sent log, one
	// item per delivery shard a flush touches (each timed flush and the last one): n
	// claims plus at most that many log items, not n finals. With receipts, a final
	// write each (its ByRecipient entry needs it).
	shards := map[int]bool{}
	for _, id := range ids {
		shards[minipush.DeliveryShard(id)] = true
	}
	logItems := 0
	if !receiptsOn {
		logItems = min(n, len(shards)*(flushes+1))
	}
	switch {
	case grants != n:
		t.Errorf("grant writes %d, want %d (a spend each)", grants, n)
	case receiptsOn && deliveries != 2*n:
		t.Errorf("delivery writes %d, want %d (a claim and a final each)", deliveries, 2*n)
	case !receiptsOn && (deliveries < n+1 || deliveries > n+logItems):
		t.Errorf("delivery writes %d, want %d claims and 1 to %d log items (%d shards, %d timed flushes)",
			deliveries, n, logItems, len(shards), flushes)
	}
	// One counter update for the invocation's 2 messages (and one per second it ran);
	// completion adds the run, its watch item and the campaign.
	if campaigns > 1+flushes+3 {
		t.Errorf("campaign table writes %d for %d messages in one invocation of %d timed flushes, want at most %d", campaigns, messages, flushes, 1+flushes+3)
	}
	if other := wc.total() - grants - deliveries - campaigns; other != 0 {
		t.Errorf("%d writes elsewhere (%v), want none", other, wc.writes)
	}
	// In write units, index entries included: the counter update and the run marked
	// done 1 each, the watch item's delete 2 (item and ByDue entry), the campaign's
	// status change 3 (item, and its ByStatus entry moved: a delete and a put) = 3n + 7.
	// With the index keys on the run item, each counter update (one per SQS message)
	// was 2 and the run marked done 2: 3n + 9. With receipts on, each sent message's
	// final write adds its ByRecipient entry (issue #14): 4n + 7; with them off, no entry
	// (every send wrote one before receipts were opt-in: 4n + 7 either way).
	units := wc.units[f.db.Tables.Grants] + wc.units[f.db.Tables.Deliveries] + wc.units[f.db.Tables.Campaigns]
	receipts := wc.index[dynamo.DeliveriesByRecipient]
	t.Logf("receipts %v: %.0f write units, %.3f a message, of which the receipts index %.0f, %d timed flushes allowed (by table %v, by index %v)",
		receiptsOn, units, units/n, receipts, flushes, wc.units, wc.index)
	wantIndex := 0.0
	if receiptsOn {
		wantIndex = n
	}
	if receipts != wantIndex {
		t.Errorf("receipts %v: %.0f ByRecipient write units for %d sent, want %.0f", receiptsOn, receipts, n, wantIndex)
	}
	limit := float64(3*n+7+flushes) + wantIndex
	if !receiptsOn {
		limit = float64(2*n + logItems + 7 + flushes) // claim, spend, a share of a log item
	}
	if units > limit {
		t.Errorf("receipts %v: %.0f write units for %d sent (%.3f a message), want at most %.0f (%.3f)",
			receiptsOn, units, n, units/n, limit, limit/n)
	}

	t.Run("RedeliveryWritesNothing", func(t *testing.T) {
		before, reads := wc.total(), wc.reads
		for _, ev := range events10(t, batches("c", ids, perMessage)) {
			handle(t, h, ev)
		}
		if w := wc.total() - before; w != 0 {
			t.Errorf("a redelivered run wrote %d items, want 0", w)
		}
		// Per message one BatchGetItem of its deliveries, one of its users' opt-outs
		// (read next to the deliveries, before knowing they are all final: a round trip
		// less for every first delivery, a read more for a redelivery) and one read of
		// the run (a redelivery may carry a lost counter update; the run is done, so
		// nothing is recounted), plus the campaign read per invocation.
		// A claim its sender's log made final costs a Query of that log: one per delivery
		// shard (and sender) among a message's claims.
		want := 3*messages + 1
		if !receiptsOn {
			for _, b := range batches("c", ids, perMessage) {
				in := map[int]bool{}
				for _, id := range b.OpenIDs {
					in[minipush.DeliveryShard(id)] = true
				}
				want += len(in)
			}
		}
		if r := wc.reads - reads; r > want {
			t.Errorf("a redelivered run made %d reads, want at most %d", r, want)
		}
	})
}

// BenchmarkSend measures recipients/s through the handler against the sandbox and
// DynamoDB Local, every recipient holding a grant (so every one is a WeChat call and
// 3 writes). Setup is excluded. Run it with a fixed count, e.g.
//
//	go test -run '^$' -bench BenchmarkSend -benchtime 2000x ./internal/send
func BenchmarkSend(b *testing.B) {
	f := newFixture(b)
	ids := f.grantedUsers(b, b.N)
	f.putCampaign(b, "c", subscribeMessage(), minipush.Policy{SkipOptedOut: true}, b.N)
	evs := events10(b, batches("c", ids, 100))
	h, wc := f.counted(send.DefaultParallelism)
	b.ResetTimer()
	start := time.Now()
	for _, ev := range evs {
		handle(b, h, ev)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if got := f.sb.Stats().Accepted; got != b.N {
		b.Fatalf("accepted %d of %d", got, b.N)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "recipients/s")
	b.ReportMetric(float64(wc.total())/float64(b.N), "writes/recipient")
}
