package send_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"minipush"
	"minipush/internal/dynamo"
	"minipush/internal/send"
)

// writeCounter counts DynamoDB write requests by table: the headline cost of the
// send path (DynamoDB bills per write request unit; every item here is under 1 KB).
type writeCounter struct {
	dynamo.API
	mu     sync.Mutex
	writes map[string]int
	reads  int
}

func (c *writeCounter) add(table string, n int) {
	c.mu.Lock()
	c.writes[table] += n
	c.mu.Unlock()
}

func (c *writeCounter) read() { c.mu.Lock(); c.reads++; c.mu.Unlock() }

func (c *writeCounter) PutItem(ctx context.Context, in *dynamodb.PutItemInput, o ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	c.add(aws.ToString(in.TableName), 1)
	return c.API.PutItem(ctx, in, o...)
}

func (c *writeCounter) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, o ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	c.add(aws.ToString(in.TableName), 1)
	return c.API.UpdateItem(ctx, in, o...)
}

func (c *writeCounter) DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, o ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error) {
	c.add(aws.ToString(in.TableName), 1)
	return c.API.DeleteItem(ctx, in, o...)
}

func (c *writeCounter) BatchWriteItem(ctx context.Context, in *dynamodb.BatchWriteItemInput, o ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error) {
	for table, reqs := range in.RequestItems {
		c.add(table, len(reqs))
	}
	return c.API.BatchWriteItem(ctx, in, o...)
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
// claim + spend + final = 3 per message (no lease, no index entry), plus one counter
// update per SQS message and the completion (run and campaign marked done).
func TestWritesPerMessage(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	const n, perMessage = 100, 50
	ids := f.grantedUsers(t, n)
	f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{SkipOptedOut: true}, n)
	h, wc := f.counted(16)
	for _, ev := range events10(t, batches("c", ids, perMessage)) {
		handle(t, h, ev)
	}
	f.allSent(t, "c", ids)
	messages := n / perMessage
	grants, deliveries, campaigns := wc.writes[f.db.Tables.Grants], wc.writes[f.db.Tables.Deliveries], wc.writes[f.db.Tables.Campaigns]
	t.Logf("%d sent: %d grant writes, %d delivery writes, %d campaign writes, %d reads (%.2f writes, %.2f reads per message)",
		n, grants, deliveries, campaigns, wc.reads, float64(wc.total())/n, float64(wc.reads)/n)
	if grants != n || deliveries != 2*n {
		t.Errorf("grant writes %d, delivery writes %d; want %d (spend) and %d (claim+final)", grants, deliveries, n, 2*n)
	}
	// One counter update per SQS message; completion adds the run and the campaign.
	if campaigns > messages+2 {
		t.Errorf("campaign table writes %d for %d messages, want at most %d", campaigns, messages, messages+2)
	}
	if other := wc.total() - grants - deliveries - campaigns; other != 0 {
		t.Errorf("%d writes elsewhere (%v), want none", other, wc.writes)
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
		if r := wc.reads - reads; r > 3*messages+1 {
			t.Errorf("a redelivered run made %d reads, want at most %d", r, 3*messages+1)
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
