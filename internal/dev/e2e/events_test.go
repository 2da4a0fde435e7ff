package e2e_test

import (
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"minipush"
	"minipush/internal/dev/localrun"
	"minipush/internal/dev/localstack"
	"minipush/internal/dev/testenv"
	"minipush/internal/dynamo"
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
	// Stored and deleted through the adapter, so the image is the grants table's layout.
	db := dynamo.New(w.env.DynamoDB, dynamo.Tables{Grants: w.env.Table("GrantsTable")})
	app := localrun.DemoApp().AppID
	g := minipush.Grant{AppID: app, OpenID: "rie-user", Kind: minipush.GrantForm, ID: "rie", Uses: 1,
		CollectedAt: time.Unix(1, 0), ExpiresAt: time.Now().Add(-time.Hour).Truncate(time.Second)}
	if err := db.ImportGrants(ctx, []minipush.Grant{g}); err != nil {
		t.Fatal(err)
	}
	if err := db.DropGrant(ctx, g.AppID, g.OpenID, g.ID); err != nil {
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
