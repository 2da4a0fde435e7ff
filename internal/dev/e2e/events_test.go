package e2e_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"minipush/internal/dev/localrun"
	"minipush/internal/dev/localstack"
	"minipush/internal/dev/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// receiveOne sends body to the queue and receives it back as Lambda's SQS event source
// would hand it to the function.
func receiveOne(t *testing.T, w *world, url, arn, body string) events.SQSEvent {
	t.Helper()
	ctx := t.Context()
	if _, err := w.env.SQS.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String(body)}); err != nil {
		t.Fatal(err)
	}
	out, err := w.env.SQS.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl: aws.String(url), WaitTimeSeconds: 5, MaxNumberOfMessages: 1,
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll},
	})
	if err != nil || len(out.Messages) != 1 {
		t.Fatalf("receive: %v (%d messages)", err, len(out.Messages))
	}
	return localrun.SQSEventOf(out.Messages, arn)
}

// removalEvent removes a grant and reads the REMOVE back from the table's real stream,
// filtered as the template's event source mapping filters it.
func removalEvent(t *testing.T, w *world) events.DynamoDBEvent {
	t.Helper()
	ctx := t.Context()
	table := w.env.Table("GrantsTable")
	expired := time.Now().Add(-time.Hour).Unix()
	item := map[string]ddbtypes.AttributeValue{
		"pk": &ddbtypes.AttributeValueMemberS{Value: localrun.DemoApp().AppID + "#rie-user"}, "sk": &ddbtypes.AttributeValueMemberS{Value: "g#rie"},
		"ek": &ddbtypes.AttributeValueMemberS{Value: "t#0000000001#rie"}, "appId": &ddbtypes.AttributeValueMemberS{Value: localrun.DemoApp().AppID},
		"openId": &ddbtypes.AttributeValueMemberS{Value: "rie-user"}, "kind": &ddbtypes.AttributeValueMemberS{Value: "form"},
		"id": &ddbtypes.AttributeValueMemberS{Value: "rie"}, "uses": &ddbtypes.AttributeValueMemberN{Value: "1"},
		"collectedAt": &ddbtypes.AttributeValueMemberN{Value: "1"}, "leaseUntil": &ddbtypes.AttributeValueMemberN{Value: "0"},
		"expiresAt": &ddbtypes.AttributeValueMemberN{Value: strconv.FormatInt(expired, 10)},
	}
	if _, err := w.env.DynamoDB.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: item}); err != nil {
		t.Fatal(err)
	}
	key := map[string]ddbtypes.AttributeValue{"pk": item["pk"], "sk": item["sk"]}
	if _, err := w.env.DynamoDB.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String(table), Key: key}); err != nil {
		t.Fatal(err)
	}
	ev := w.env.Template.Functions["ExpireFunction"].Events["Removals"].DynamoDB
	var patterns []string
	for _, f := range ev.FilterCriteria.Filters {
		patterns = append(patterns, f.Pattern)
	}
	r, err := localstack.NewStreamReader(w.env.Clients.Streams, w.env.StreamARNs["GrantsTable"], patterns)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		recs, err := r.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) > 0 {
			return events.DynamoDBEvent{Records: recs}
		}
		if time.Now().After(deadline) {
			t.Fatal("no REMOVE record on the stream")
		}
		time.Sleep(50 * time.Millisecond) // polling the stream with a deadline
	}
}
