package localstack_test

import (
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"minipush/internal/dev/localstack"
	"minipush/internal/dev/testenv"
)

func s(v string) ddbtypes.AttributeValue { return &ddbtypes.AttributeValueMemberS{Value: v} }
func n(v string) ddbtypes.AttributeValue { return &ddbtypes.AttributeValueMemberN{Value: v} }

// mustReader returns a reader of the grants table's stream in env.
func mustReader(t *testing.T, env *testenv.Env, patterns ...string) *localstack.StreamReader {
	t.Helper()
	r, err := localstack.NewStreamReader(env.Streams, env.StreamARNs["GrantsTable"], patterns)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustNext(t *testing.T, r *localstack.StreamReader) []events.DynamoDBEventRecord {
	t.Helper()
	recs, err := r.Next(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func summary(recs []events.DynamoDBEventRecord) string {
	var parts []string
	for _, r := range recs {
		parts = append(parts, r.EventName+":"+r.Change.Keys["pk"].String())
	}
	return strings.Join(parts, " ")
}

func TestStreamReader(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx := t.Context()
	table := env.Table("GrantsTable")
	put := func(pk string, uses string) {
		t.Helper()
		_, err := env.DynamoDB.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: map[string]ddbtypes.AttributeValue{
			"pk": s(pk), "sk": s("g#1"), "ek": s("t#1"), "uses": n(uses), "expiresAt": n("1700000000"),
			"tags": &ddbtypes.AttributeValueMemberSS{Value: []string{"x", "y"}},
			"m":    &ddbtypes.AttributeValueMemberM{Value: map[string]ddbtypes.AttributeValue{"l": &ddbtypes.AttributeValueMemberL{Value: []ddbtypes.AttributeValue{s("a"), &ddbtypes.AttributeValueMemberBOOL{Value: true}}}}},
		}})
		if err != nil {
			t.Fatal(err)
		}
	}
	del := func(pk string) {
		t.Helper()
		_, err := env.DynamoDB.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String(table), Key: map[string]ddbtypes.AttributeValue{"pk": s(pk), "sk": s("g#1")}})
		if err != nil {
			t.Fatal(err)
		}
	}

	all := mustReader(t, env)
	removes := mustReader(t, env, `{"eventName":["REMOVE"]}`)
	ofA := mustReader(t, env, `{"dynamodb":{"Keys":{"pk":{"S":["a"]}}}}`)
	twoPatterns := mustReader(t, env, `{"eventName":["INSERT"],"dynamodb":{"Keys":{"pk":{"S":["b"]}}}}`, `{"eventName":["REMOVE"],"dynamodb":{"OldImage":{"uses":{"N":["2"]}}}}`)

	t.Run("EmptyStream", func(t *testing.T) {
		if got := mustNext(t, all); len(got) != 0 || got == nil {
			t.Fatalf("Next on an empty stream = %#v, want an empty non-nil slice", got)
		}
	})

	put("a", "1")
	put("b", "1")
	put("a", "2") // MODIFY
	del("a")
	del("b")

	t.Run("AllInOrder", func(t *testing.T) {
		got := mustNext(t, all)
		if want := "INSERT:a INSERT:b MODIFY:a REMOVE:a REMOVE:b"; summary(got) != want {
			t.Fatalf("records = %s, want %s", summary(got), want)
		}
		rm := got[3]
		if rm.EventSource != "aws:dynamodb" || rm.EventSourceArn != env.StreamARNs["GrantsTable"] || rm.EventID == "" || rm.AWSRegion == "" {
			t.Errorf("envelope = %+v", rm)
		}
		if rm.Change.StreamViewType != "NEW_AND_OLD_IMAGES" || rm.Change.SequenceNumber == "" || rm.Change.ApproximateCreationDateTime.IsZero() {
			t.Errorf("change = %+v", rm.Change)
		}
		if rm.Change.NewImage != nil {
			t.Errorf("REMOVE has a new image: %v", rm.Change.NewImage)
		}
		old := rm.Change.OldImage
		if old["uses"].Number() != "2" || old["expiresAt"].Number() != "1700000000" || old["sk"].String() != "g#1" {
			t.Errorf("old image = %v", old)
		}
		if tags := old["tags"].StringSet(); len(tags) != 2 {
			t.Errorf("string set = %v", tags)
		}
		if l := old["m"].Map()["l"].List(); len(l) != 2 || l[0].String() != "a" || !l[1].Boolean() {
			t.Errorf("nested map/list = %v", old["m"])
		}
		if got[2].Change.NewImage["uses"].Number() != "2" || got[2].Change.OldImage["uses"].Number() != "1" {
			t.Errorf("MODIFY images = %v / %v", got[2].Change.NewImage, got[2].Change.OldImage)
		}
		for i := 1; i < len(got); i++ {
			if got[i].Change.SequenceNumber == got[i-1].Change.SequenceNumber {
				t.Errorf("records %d and %d share a sequence number", i-1, i)
			}
		}
	})
	t.Run("FilterEventName", func(t *testing.T) {
		if got, want := summary(mustNext(t, removes)), "REMOVE:a REMOVE:b"; got != want {
			t.Fatalf("records = %s, want %s", got, want)
		}
	})
	t.Run("FilterNestedKey", func(t *testing.T) {
		if got, want := summary(mustNext(t, ofA)), "INSERT:a MODIFY:a REMOVE:a"; got != want {
			t.Fatalf("records = %s, want %s", got, want)
		}
	})
	t.Run("AnyPatternMatches", func(t *testing.T) {
		if got, want := summary(mustNext(t, twoPatterns)), "INSERT:b REMOVE:a"; got != want {
			t.Fatalf("records = %s, want %s", got, want)
		}
	})
	t.Run("OnlyNewRecords", func(t *testing.T) {
		if got := mustNext(t, all); len(got) != 0 {
			t.Fatalf("second Next = %s, want nothing", summary(got))
		}
		put("c", "1")
		if got, want := summary(mustNext(t, all)), "INSERT:c"; got != want {
			t.Fatalf("after another write = %s, want %s", got, want)
		}
		if got := mustNext(t, removes); len(got) != 0 {
			t.Fatalf("filtered reader after an INSERT = %s, want nothing", summary(got))
		}
	})
}

func TestNewStreamReaderRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, pattern string }{
		{"ErrNotJSON", `{"eventName":`},
		{"ErrNotObject", `["REMOVE"]`},
		{"ErrEmptyObject", `{}`},
		{"ErrScalarValue", `{"eventName":"REMOVE"}`},
		{"ErrEmptyList", `{"eventName":[]}`},
		{"ErrPrefix", `{"eventName":[{"prefix":"REM"}]}`},
		{"ErrNumeric", `{"dynamodb":{"SizeBytes":[{"numeric":[">",0]}]}}`},
		{"ErrExists", `{"dynamodb":{"OldImage":{"x":[{"exists":true}]}}}`},
		{"ErrTrailing", `{"eventName":["REMOVE"]} {}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, err := localstack.NewStreamReader(nil, "arn", []string{tc.pattern})
			if err == nil {
				t.Fatalf("NewStreamReader(%s) = %v, want an error", tc.pattern, r)
			}
		})
	}
}
