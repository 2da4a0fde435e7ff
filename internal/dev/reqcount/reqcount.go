// Package reqcount counts the AWS requests a piece of code makes, by service and
// operation, with the numbers AWS bills them by: DynamoDB's consumed capacity (asked
// for on every request, ReturnConsumedCapacity INDEXES, and summed from the answers)
// and SQS's 64 KiB payload chunks. It is an SDK middleware, so the code measured runs
// unchanged on ordinary clients: add Counter.Middleware to a client's APIOptions.
//
// It counts calls as the caller makes them (the initialize step), so retries inside
// the SDK are one call; the local stand-ins never throttle, so there are none there.
package reqcount

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go/middleware"
)

// SQSChunk is the payload size SQS bills as one request: a 256 KiB message is 4.
// https://aws.amazon.com/sqs/pricing/
const SQSChunk = 64 << 10

// Op names one operation of one service, e.g. {"DynamoDB", "UpdateItem"}.
type Op struct {
	Service   string
	Operation string
}

func (o Op) String() string { return o.Service + " " + o.Operation }

// Stats are the counts of one operation.
type Stats struct {
	Calls  int // requests made
	Errors int // of which answered with an error (a failed condition, say)
	// Billed is what AWS bills the calls as: SQS counts one per started 64 KiB of
	// payload (sent or received); for DynamoDB it equals Calls (capacity is billed,
	// not calls; see the units).
	Billed int
	// Messages: SQS messages sent, received or deleted.
	Messages int
	// ReadUnits and WriteUnits are DynamoDB's consumed capacity as the answers report
	// it, tables and indexes together (IndexUnits is the index part of them).
	ReadUnits, WriteUnits, IndexUnits float64
	// Unreported counts successful DynamoDB calls whose answer carried no consumed
	// capacity, so their units are missing from the sums.
	Unreported int
	// Empty counts SQS receives that returned no message (idle polling).
	Empty int
}

func (s *Stats) add(o Stats) {
	s.Calls += o.Calls
	s.Errors += o.Errors
	s.Billed += o.Billed
	s.Messages += o.Messages
	s.ReadUnits += o.ReadUnits
	s.WriteUnits += o.WriteUnits
	s.IndexUnits += o.IndexUnits
	s.Unreported += o.Unreported
	s.Empty += o.Empty
}

// Counter counts requests. The zero value is ready; it is safe for concurrent use.
type Counter struct {
	// TransactScale multiplies the write units reported for TransactWriteItems; zero
	// means 1. AWS bills 2 WRU per 1 KB item written in a transaction; a stand-in that
	// reports otherwise is corrected with it (see TransactScaleOf).
	TransactScale float64

	mu  sync.Mutex
	ops map[Op]*Stats
}

// Middleware adds the counter to a client's middleware stack; use it as an APIOptions
// entry: o.APIOptions = append(o.APIOptions, c.Middleware).
func (c *Counter) Middleware(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("reqcount", c.handle), middleware.After)
}

func (c *Counter) handle(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
	op := Op{Service: awsmiddleware.GetServiceID(ctx), Operation: awsmiddleware.GetOperationName(ctx)}
	in.Parameters = askCapacity(in.Parameters)
	out, md, err := next.HandleInitialize(ctx, in)
	s := Stats{Calls: 1, Billed: 1}
	if err != nil {
		s.Errors = 1
	}
	switch op.Service {
	case "DynamoDB":
		if err == nil {
			s.ReadUnits, s.WriteUnits, s.IndexUnits, s.Unreported = capacity(op.Operation, out.Result)
			s.ReadUnits += missingReads(in.Parameters, out.Result)
			if s.ReadUnits == 0 {
				s.ReadUnits = minimumRead(in.Parameters)
			}
			if op.Operation == "TransactWriteItems" && c.TransactScale != 0 {
				s.WriteUnits *= c.TransactScale
				s.IndexUnits *= c.TransactScale
			}
		}
	case "SQS":
		s.Billed, s.Messages = sqsBilled(in.Parameters, out.Result)
		if r, ok := out.Result.(*sqs.ReceiveMessageOutput); ok && len(r.Messages) == 0 {
			s.Empty = 1
		}
	}
	c.mu.Lock()
	if c.ops == nil {
		c.ops = map[Op]*Stats{}
	}
	if c.ops[op] == nil {
		c.ops[op] = &Stats{}
	}
	c.ops[op].add(s)
	c.mu.Unlock()
	return out, md, err
}

// askCapacity returns a copy of a DynamoDB input asking for the consumed capacity per
// table and index (a copy: callers may reuse their input, paginators do).
func askCapacity(p any) any {
	const idx = ddbtypes.ReturnConsumedCapacityIndexes
	switch in := p.(type) {
	case *dynamodb.GetItemInput:
		cp := *in
		cp.ReturnConsumedCapacity = idx
		return &cp
	case *dynamodb.PutItemInput:
		cp := *in
		cp.ReturnConsumedCapacity = idx
		return &cp
	case *dynamodb.UpdateItemInput:
		cp := *in
		cp.ReturnConsumedCapacity = idx
		return &cp
	case *dynamodb.DeleteItemInput:
		cp := *in
		cp.ReturnConsumedCapacity = idx
		return &cp
	case *dynamodb.QueryInput:
		cp := *in
		cp.ReturnConsumedCapacity = idx
		return &cp
	case *dynamodb.ScanInput:
		cp := *in
		cp.ReturnConsumedCapacity = idx
		return &cp
	case *dynamodb.BatchGetItemInput:
		cp := *in
		cp.ReturnConsumedCapacity = idx
		return &cp
	case *dynamodb.BatchWriteItemInput:
		cp := *in
		cp.ReturnConsumedCapacity = idx
		return &cp
	case *dynamodb.TransactWriteItemsInput:
		cp := *in
		cp.ReturnConsumedCapacity = idx
		return &cp
	case *dynamodb.TransactGetItemsInput:
		cp := *in
		cp.ReturnConsumedCapacity = idx
		return &cp
	}
	return p
}

// capacity sums the consumed capacity of a DynamoDB answer into read and write units
// by the operation's kind, with the part spent on indexes.
func capacity(operation string, result any) (read, write, index float64, unreported int) {
	var ccs []ddbtypes.ConsumedCapacity
	switch out := result.(type) {
	case *dynamodb.GetItemOutput:
		ccs = one(out.ConsumedCapacity)
	case *dynamodb.PutItemOutput:
		ccs = one(out.ConsumedCapacity)
	case *dynamodb.UpdateItemOutput:
		ccs = one(out.ConsumedCapacity)
	case *dynamodb.DeleteItemOutput:
		ccs = one(out.ConsumedCapacity)
	case *dynamodb.QueryOutput:
		ccs = one(out.ConsumedCapacity)
	case *dynamodb.ScanOutput:
		ccs = one(out.ConsumedCapacity)
	case *dynamodb.BatchGetItemOutput:
		ccs = out.ConsumedCapacity
	case *dynamodb.BatchWriteItemOutput:
		ccs = out.ConsumedCapacity
	case *dynamodb.TransactWriteItemsOutput:
		ccs = out.ConsumedCapacity
	case *dynamodb.TransactGetItemsOutput:
		ccs = out.ConsumedCapacity
	default:
		return 0, 0, 0, 0 // DescribeTable and the like: no capacity
	}
	if len(ccs) == 0 {
		return 0, 0, 0, 1
	}
	var total, idx float64
	for _, cc := range ccs {
		total += f64(cc.CapacityUnits)
		for _, c := range cc.LocalSecondaryIndexes {
			idx += f64(c.CapacityUnits)
		}
		for _, c := range cc.GlobalSecondaryIndexes {
			idx += f64(c.CapacityUnits)
		}
	}
	switch operation {
	case "GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems":
		return total, 0, idx, 0
	}
	return 0, total, idx, 0
}

// missingReads is what AWS bills for the keys of a BatchGetItem that found no item: the
// minimum read per key (1 RRU strongly consistent, 0.5 eventually), which DynamoDB
// Local leaves out of its answer (awslabs/amazon-dynamodb-local-samples#7).
// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html
func missingReads(params, result any) float64 {
	in, ok := params.(*dynamodb.BatchGetItemInput)
	out, ok2 := result.(*dynamodb.BatchGetItemOutput)
	if !ok || !ok2 {
		return 0
	}
	units := 0.0
	for table, ka := range in.RequestItems {
		units += MissingReads(len(ka.Keys), len(out.Responses[table]), len(out.UnprocessedKeys[table].Keys), aws.ToBool(ka.ConsistentRead))
	}
	return units
}

// MissingReads is the read units DynamoDB Local leaves out of a BatchGetItem answer for
// one table: AWS bills each key that found no item (of keys asked, found answered and
// unprocessed returned) its minimum read, which Local reports as nothing.
func MissingReads(keys, found, unprocessed int, consistent bool) float64 {
	return float64(max(keys-found-unprocessed, 0)) * MinimumRead(consistent)
}

// minimumRead is the read a Query or Scan that DynamoDB Local answered with 0 units
// (it found nothing) is counted as: the least read AWS bills. An upper bound: erring
// high is the safe side of a cost.
func minimumRead(params any) float64 {
	switch in := params.(type) {
	case *dynamodb.QueryInput:
		return MinimumRead(aws.ToBool(in.ConsistentRead))
	case *dynamodb.ScanInput:
		return MinimumRead(aws.ToBool(in.ConsistentRead))
	}
	return 0
}

// MinimumRead is the least AWS bills for a read, or for each key of a batch read, even
// when it finds nothing: 1 RRU strongly consistent, 0.5 eventually consistent.
// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html
func MinimumRead(consistent bool) float64 {
	if consistent {
		return 1
	}
	return 0.5
}

func one(cc *ddbtypes.ConsumedCapacity) []ddbtypes.ConsumedCapacity {
	if cc == nil {
		return nil
	}
	return []ddbtypes.ConsumedCapacity{*cc}
}

func f64(p *float64) float64 {
	if p == nil {
		return 0
	}
	return *p
}

// sqsBilled returns the requests SQS bills a call as (one per started 64 KiB of the
// payload it carries, at least one) and the messages it moved.
func sqsBilled(params, result any) (billed, messages int) {
	bytes := 0
	switch in := params.(type) {
	case *sqs.SendMessageInput:
		bytes, messages = len(deref(in.MessageBody)), 1
	case *sqs.SendMessageBatchInput:
		for _, e := range in.Entries {
			bytes += len(deref(e.MessageBody))
		}
		messages = len(in.Entries)
	case *sqs.DeleteMessageBatchInput:
		messages = len(in.Entries)
	case *sqs.DeleteMessageInput:
		messages = 1
	}
	if out, ok := result.(*sqs.ReceiveMessageOutput); ok {
		for _, m := range out.Messages {
			bytes += len(deref(m.Body))
		}
		messages = len(out.Messages)
	}
	return max(1, (bytes+SQSChunk-1)/SQSChunk), messages
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// Snapshot returns the counts so far by operation.
func (c *Counter) Snapshot() map[Op]Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[Op]Stats, len(c.ops))
	for op, s := range c.ops {
		out[op] = *s
	}
	return out
}

// Total sums the counts of every operation of service ("" for all services).
func Total(snap map[Op]Stats, service string) Stats {
	var t Stats
	for op, s := range snap {
		if service == "" || op.Service == service {
			t.add(s)
		}
	}
	return t
}

// Ops returns the operations of a snapshot in a stable order (service, operation).
func Ops(snap map[Op]Stats) []Op {
	return slices.SortedFunc(maps.Keys(snap), func(a, b Op) int {
		return cmp.Or(cmp.Compare(a.Service, b.Service), cmp.Compare(a.Operation, b.Operation))
	})
}

// String formats a snapshot, one operation a line (for logs).
func String(snap map[Op]Stats) string {
	s := ""
	for _, op := range Ops(snap) {
		st := snap[op]
		s += fmt.Sprintf("%-30s calls %6d errors %4d billed %6d msgs %6d empty %4d RU %8.1f WU %8.1f idx %8.1f unreported %d\n",
			op, st.Calls, st.Errors, st.Billed, st.Messages, st.Empty, st.ReadUnits, st.WriteUnits, st.IndexUnits, st.Unreported)
	}
	return s
}

// TransactScaleOf calibrates Counter.TransactScale against the DynamoDB behind client:
// it writes one small item (key, in table, which must have no index) in a transaction,
// compares the write units reported with the 2 WRU AWS bills for it, and deletes it.
// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html#transaction-capacity-handling
func TransactScaleOf(ctx context.Context, client *dynamodb.Client, table string, key map[string]ddbtypes.AttributeValue) (float64, error) {
	out, err := client.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{
		TransactItems:          []ddbtypes.TransactWriteItem{{Put: &ddbtypes.Put{TableName: &table, Item: key}}},
		ReturnConsumedCapacity: ddbtypes.ReturnConsumedCapacityTotal,
	})
	if err != nil {
		return 0, fmt.Errorf("reqcount: calibrate transactions: %w", err)
	}
	if _, err := client.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: &table, Key: key}); err != nil {
		return 0, fmt.Errorf("reqcount: calibrate transactions: %w", err)
	}
	reported := 0.0
	for _, cc := range out.ConsumedCapacity {
		reported += f64(cc.CapacityUnits)
	}
	if reported == 0 {
		return 0, fmt.Errorf("reqcount: calibrate transactions: no consumed capacity reported")
	}
	return 2 / reported, nil
}
