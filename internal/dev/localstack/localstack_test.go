package localstack_test

import (
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	streamtypes "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"minipush/internal/dev/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestGrantsTableFromTemplate checks that the grants table made from template.yaml has
// the key, index, TTL and stream settings the template declares, and really stores items.
func TestGrantsTableFromTemplate(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx := t.Context()
	table := env.Table("GrantsTable")

	desc, err := env.DynamoDB.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)})
	if err != nil {
		t.Fatal(err)
	}
	td := desc.Table
	if td.StreamSpecification == nil || !aws.ToBool(td.StreamSpecification.StreamEnabled) ||
		td.StreamSpecification.StreamViewType != ddbtypes.StreamViewTypeNewAndOldImages {
		t.Errorf("stream spec = %+v, want NEW_AND_OLD_IMAGES enabled", td.StreamSpecification)
	}
	// Grants are ordered by the table's own sort key (g#<channel>#<expiry>#<id>): no index
	// is written with every grant (issue #12).
	if len(td.LocalSecondaryIndexes) != 0 || len(td.GlobalSecondaryIndexes) != 0 {
		t.Errorf("indexes = %+v %+v, want none", td.LocalSecondaryIndexes, td.GlobalSecondaryIndexes)
	}
	ttl, err := env.DynamoDB.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(table)})
	if err != nil {
		t.Fatal(err)
	}
	// Locally the Reaper is the TTL service; DynamoDB Local's own would delete items of
	// test clocks by the wall clock (see provision.go).
	if d := ttl.TimeToLiveDescription; d != nil && d.TimeToLiveStatus == ddbtypes.TimeToLiveStatusEnabled {
		t.Errorf("ttl = %+v, want DynamoDB Local's own TTL off", ttl.TimeToLiveDescription)
	}

	type item struct {
		PK        string `dynamodbav:"pk"`
		SK        string `dynamodbav:"sk"`
		ExpiresAt int64  `dynamodbav:"expiresAt"`
	}
	want := item{PK: "wxapp#openid1", SK: "g#t#0000000100#1", ExpiresAt: 100}
	av, err := attributevalue.MarshalMap(want)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.DynamoDB.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: av}); err != nil {
		t.Fatal(err)
	}
	out, err := env.DynamoDB.Query(ctx, &dynamodb.QueryInput{
		TableName:                 aws.String(table),
		KeyConditionExpression:    aws.String("pk = :pk AND sk > :from"),
		ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{":pk": &ddbtypes.AttributeValueMemberS{Value: want.PK}, ":from": &ddbtypes.AttributeValueMemberS{Value: "g#t#0000000050"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []item
	if err := attributevalue.UnmarshalListOfMaps(out.Items, &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != want {
		t.Fatalf("read back %+v, want %+v", got, want)
	}

	// The stream carries the insert, as the expire function's event source will see it.
	streamArn := env.StreamARNs["GrantsTable"]
	if streamArn == "" {
		t.Fatal("no stream ARN for GrantsTable")
	}
	sd, err := env.Clients.Streams.DescribeStream(ctx, &dynamodbstreams.DescribeStreamInput{StreamArn: aws.String(streamArn)})
	if err != nil {
		t.Fatal(err)
	}
	if len(sd.StreamDescription.Shards) == 0 {
		t.Fatal("stream has no shards")
	}
	it, err := env.Clients.Streams.GetShardIterator(ctx, &dynamodbstreams.GetShardIteratorInput{
		StreamArn: aws.String(streamArn), ShardId: sd.StreamDescription.Shards[0].ShardId,
		ShardIteratorType: streamtypes.ShardIteratorTypeTrimHorizon,
	})
	if err != nil {
		t.Fatal(err)
	}
	recs, err := env.Clients.Streams.GetRecords(ctx, &dynamodbstreams.GetRecordsInput{ShardIterator: it.ShardIterator})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs.Records) != 1 || recs.Records[0].EventName != streamtypes.OperationTypeInsert {
		t.Fatalf("stream records = %+v, want one INSERT", recs.Records)
	}
}

// TestSendQueueRedrive checks that a message received maxReceiveCount times without
// being deleted moves to the dead-letter queue, as template.yaml declares.
func TestSendQueueRedrive(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx := t.Context()
	q, dlq := env.Queue("SendQueue"), env.Queue("SendDeadLetterQueue")

	attrs, err := env.SQS.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(q.URL), AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := attrs.Attributes["VisibilityTimeout"]; got != "360" {
		t.Errorf("VisibilityTimeout = %s, want 360 from the template", got)
	}
	maxReceives := env.Template.Queues["SendQueue"].RedrivePolicy.MaxReceiveCount

	if _, err := env.SQS.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(q.URL), MessageBody: aws.String("poison")}); err != nil {
		t.Fatal(err)
	}
	receives := 0
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		out, err := env.SQS.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(q.URL), VisibilityTimeout: 1, WaitTimeSeconds: 2, MaxNumberOfMessages: 1,
		})
		if err != nil {
			t.Fatal(err)
		}
		receives += len(out.Messages)
		dl, err := env.SQS.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(dlq.URL), MaxNumberOfMessages: 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(dl.Messages) == 1 {
			if aws.ToString(dl.Messages[0].Body) != "poison" {
				t.Fatalf("dead letter body %q", aws.ToString(dl.Messages[0].Body))
			}
			if receives != maxReceives {
				t.Fatalf("moved to DLQ after %d receives, want %d", receives, maxReceives)
			}
			return
		}
		if receives > maxReceives {
			t.Fatalf("received %d times without a redrive (maxReceiveCount %d)", receives, maxReceives)
		}
	}
	t.Fatalf("message never reached the DLQ (%d receives)", receives)
}
