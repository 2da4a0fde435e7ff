package reqcount_test

import (
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"minipush/internal/dev/localstack"
	"minipush/internal/dev/reqcount"
	"minipush/internal/dev/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func s(v string) ddbtypes.AttributeValue { return &ddbtypes.AttributeValueMemberS{Value: v} }

// TestCounts checks the counts and units of each kind of call against what AWS bills
// for it (items here are far under 1 KB): DynamoDB Local's answers, corrected where it
// is known to differ.
func TestCounts(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	var c reqcount.Counter
	cfg := localstack.Config()
	plain := dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(env.Endpoints.DynamoDB) })
	ddb := dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) {
		o.BaseEndpoint = aws.String(env.Endpoints.DynamoDB)
		o.APIOptions = append(o.APIOptions, c.Middleware)
	})
	q := sqs.NewFromConfig(cfg, func(o *sqs.Options) {
		o.BaseEndpoint = aws.String(env.Endpoints.SQS)
		o.APIOptions = append(o.APIOptions, c.Middleware)
	})
	ctx := t.Context()
	users, state := aws.String(env.Table("UsersTable")), env.Table("StateTable")
	scale, err := reqcount.TransactScaleOf(ctx, plain, state, map[string]ddbtypes.AttributeValue{"pk": s("probe"), "sk": s("probe")})
	if err != nil {
		t.Fatal(err)
	}
	c.TransactScale = scale
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// The campaigns table's ByStatus GSI (ProjectionType ALL) is the index whose writes
	// are counted: a campaign item that carries status and createdAt is in it.
	campaigns := aws.String(env.Table("CampaignsTable"))
	ckey := map[string]ddbtypes.AttributeValue{"pk": s("c#1"), "sk": s("meta")}
	must(ddb.PutItem(ctx, &dynamodb.PutItemInput{TableName: campaigns, Item: map[string]ddbtypes.AttributeValue{
		"pk": s("c#1"), "sk": s("meta"), "status": s("draft"), "createdAt": &ddbtypes.AttributeValueMemberN{Value: "1"}}}))
	must(ddb.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: campaigns, Key: ckey, UpdateExpression: aws.String("SET w = :w"),
		ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{":w": s("w")}}))
	must(ddb.Query(ctx, &dynamodb.QueryInput{TableName: campaigns, IndexName: aws.String("ByStatus"), KeyConditionExpression: aws.String("#s = :s"),
		ExpressionAttributeNames: map[string]string{"#s": "status"}, ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{":s": s("draft")}}))
	must(ddb.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: campaigns, Key: ckey}))
	must(ddb.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []ddbtypes.TransactWriteItem{
		{Put: &ddbtypes.Put{TableName: users, Item: map[string]ddbtypes.AttributeValue{"pk": s("u")}}},
	}}))
	must(ddb.GetItem(ctx, &dynamodb.GetItemInput{TableName: users, Key: map[string]ddbtypes.AttributeValue{"pk": s("u")}}))
	must(ddb.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: map[string]ddbtypes.KeysAndAttributes{*users: {
		Keys: []map[string]ddbtypes.AttributeValue{{"pk": s("u")}, {"pk": s("nobody")}, {"pk": s("noone")}}, ConsistentRead: aws.Bool(true)}}}))
	// Nothing found: AWS still bills the least read (Local reports 0).
	must(ddb.Scan(ctx, &dynamodb.ScanInput{TableName: aws.String(env.Table("AudienceTable"))}))
	url := aws.String(env.Queue("SendQueue").URL)
	must(q.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: url, MessageBody: aws.String(strings.Repeat("b", 70<<10))}))
	must(q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: url, MaxNumberOfMessages: 10}))
	must(q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(env.Queue("SendDeadLetterQueue").URL)}))

	snap := c.Snapshot()
	t.Log("\n" + reqcount.String(snap))
	op := func(service, name string) reqcount.Stats { return snap[reqcount.Op{Service: service, Operation: name}] }
	for _, tc := range []struct {
		name            string
		got             reqcount.Stats
		read, write, ix float64
	}{
		// Each write of the campaign also writes its global index (ProjectionType ALL); a
		// Query of a GSI is eventually consistent, half a unit, all of it on the index.
		{"PutItem", op("DynamoDB", "PutItem"), 0, 2, 1},
		{"UpdateItem", op("DynamoDB", "UpdateItem"), 0, 2, 1},
		{"DeleteItem", op("DynamoDB", "DeleteItem"), 0, 2, 1},
		{"Query", op("DynamoDB", "Query"), 0.5, 0, 0.5},
		{"TransactWriteItems", op("DynamoDB", "TransactWriteItems"), 0, 2, 0},
		{"GetItem", op("DynamoDB", "GetItem"), 0.5, 0, 0},
		// One item found, two keys that find none: 1 RRU each, strongly consistent.
		{"BatchGetItem", op("DynamoDB", "BatchGetItem"), 3, 0, 0},
		{"Scan", op("DynamoDB", "Scan"), 0.5, 0, 0},
	} {
		if tc.got.Calls != 1 || tc.got.ReadUnits != tc.read || tc.got.WriteUnits != tc.write || tc.got.IndexUnits != tc.ix || tc.got.Unreported != 0 {
			t.Errorf("%s: %+v, want 1 call, %v RRU, %v WRU, %v of them on indexes", tc.name, tc.got, tc.read, tc.write, tc.ix)
		}
	}
	if sm := op("SQS", "SendMessage"); sm.Calls != 1 || sm.Billed != 2 || sm.Messages != 1 {
		t.Errorf("SendMessage of 70 KiB: %+v, want 1 call billed as 2 (64 KiB chunks)", sm)
	}
	if rm := op("SQS", "ReceiveMessage"); rm.Calls != 2 || rm.Billed != 3 || rm.Messages != 1 || rm.Empty != 1 {
		t.Errorf("ReceiveMessage: %+v, want 2 calls, billed 2+1, 1 message, 1 empty", rm)
	}
}
