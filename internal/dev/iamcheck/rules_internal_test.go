package iamcheck

import (
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"minipush/internal/dev/samtemplate"
)

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, s string
		fold, want bool
	}{
		{"dynamodb:*", "dynamodb:Query", true, true},
		{"dynamodb:query", "dynamodb:Query", true, true}, // actions ignore case
		{"table/Grants", "table/grants", false, false},   // resources do not
		{"table/T/index/*", "table/T/index/ByOutcome", false, true},
		{"table/T/index/*", "table/T", false, false},
		{"table/T", "table/T/index/ByOutcome", false, false}, // a table grants none of its indexes
		{"table/T/index/ByOutcome", "table/T/index/ByDue", false, false},
		{"token#*", "token#wx1", false, true},
		{"token#*", "expstats#wx1", false, false},
		{"a?c", "abc", false, true},
		{"a?c", "ac", false, false},
		{"*", "", false, true},
		{"a*b*c", "axxbyyc", false, true},
		{"a*b*c", "axxbyy", false, false},
	} {
		if got := match(tc.pattern, tc.s, tc.fold); got != tc.want {
			t.Errorf("match(%q, %q) = %v, want %v", tc.pattern, tc.s, got, tc.want)
		}
	}
}

// The collect and admin roles' shape: the state table allowed, its token items denied.
var statePolicy = []Statement{
	{Index: 0, Effect: "Allow", Actions: []string{"dynamodb:GetItem", "dynamodb:Query"}, Resources: []string{"table/State"}},
	{Index: 1, Effect: "Deny", Actions: []string{"dynamodb:*"}, Resources: []string{"table/State"},
		Condition: map[string]map[string][]string{"ForAnyValue:StringLike": {"dynamodb:LeadingKeys": {"token#*"}}}},
	{Index: 2, Effect: "Allow", Actions: []string{"dynamodb:Scan"}, Resources: []string{"table/Grants"}},
}

func TestEvaluate(t *testing.T) {
	for _, tc := range []struct {
		name      string
		call      Call
		allowed   bool
		deniedBy  int
		allowedBy []int
		err       bool
	}{
		{"OK", Call{Action: "dynamodb:GetItem", Resource: "table/State", Keyed: true, LeadingKey: "expstats#wx1"}, true, -1, []int{0}, false},
		{"DenyWinsOverAllow", Call{Action: "dynamodb:GetItem", Resource: "table/State", Keyed: true, LeadingKey: "token#wx1"}, false, 1, []int{0}, false},
		{"DenyOnDeniedActionAlone", Call{Action: "dynamodb:PutItem", Resource: "table/State", Keyed: true, LeadingKey: "token#wx1"}, false, 1, nil, false},
		{"ImplicitDeny", Call{Action: "dynamodb:PutItem", Resource: "table/State", Keyed: true, LeadingKey: "expstats#wx1"}, false, -1, nil, false},
		{"OtherTable", Call{Action: "dynamodb:GetItem", Resource: "table/Grants", Keyed: true, LeadingKey: "token#wx1"}, false, -1, nil, false},
		// ForAnyValue on a request with no key (a Scan) is false: the Deny does not apply.
		{"ScanCarriesNoKey", Call{Action: "dynamodb:Scan", Resource: "table/Grants"}, true, -1, []int{2}, false},
		{"ErrKeyUnknown", Call{Action: "dynamodb:GetItem", Resource: "table/State", Keyed: true, KeyUnknown: true}, false, -1, []int{0}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Evaluate(statePolicy, tc.call)
			if d.Allowed != tc.allowed || d.DeniedBy != tc.deniedBy || !slices.Equal(d.AllowedBy, tc.allowedBy) || (d.Err != nil) != tc.err {
				t.Fatalf("got %+v, want allowed %v denied by %d allowed by %v err %v", d, tc.allowed, tc.deniedBy, tc.allowedBy, tc.err)
			}
		})
	}
}

func TestConditionNotModelledFails(t *testing.T) {
	stmts := []Statement{{Effect: "Allow", Actions: []string{"dynamodb:GetItem"}, Resources: []string{"*"},
		Condition: map[string]map[string][]string{"StringEquals": {"dynamodb:Attributes": {"pk"}}}}}
	v := Check(map[string][]Statement{"F": stmts}, []Call{{Function: "F", Action: "dynamodb:GetItem", Resource: "table/T", Keyed: true, LeadingKey: "k"}})
	if len(v) != 1 {
		t.Fatalf("a condition the checker cannot evaluate passed: %v", v)
	}
}

// TestRecordSplits: a transaction is checked per item and its own action, a batch per
// table and key, a Query on its index with the partition key from its key condition.
func TestRecordSplits(t *testing.T) {
	tpl := &samtemplate.Template{Tables: map[string]*samtemplate.Table{
		"StateTable": {LogicalID: "StateTable", KeySchema: []samtemplate.KeyElement{{AttributeName: "pk", KeyType: "HASH"}, {AttributeName: "sk", KeyType: "RANGE"}}},
		"RunsTable": {LogicalID: "RunsTable", KeySchema: []samtemplate.KeyElement{{AttributeName: "pk", KeyType: "HASH"}},
			GlobalSecondaryIndexes: []samtemplate.Index{{IndexName: "ByDue", KeySchema: []samtemplate.KeyElement{{AttributeName: "due", KeyType: "HASH"}}}}},
	}}
	r := NewRecorder(tpl, "p-")
	s := func(v string) ddbtypes.AttributeValue { return &ddbtypes.AttributeValueMemberS{Value: v} }
	key := func(pk string) map[string]ddbtypes.AttributeValue {
		return map[string]ddbtypes.AttributeValue{"pk": s(pk), "sk": s("x")}
	}
	got := r.calls1("F", "DynamoDB", "TransactWriteItems", &dynamodb.TransactWriteItemsInput{TransactItems: []ddbtypes.TransactWriteItem{
		{ConditionCheck: &ddbtypes.ConditionCheck{TableName: aws.String("p-StateTable"), Key: key("a#1")}},
		{Put: &ddbtypes.Put{TableName: aws.String("p-RunsTable"), Item: key("b#2")}},
		{Update: &ddbtypes.Update{TableName: aws.String("p-StateTable"), Key: key("c#3")}},
		{Delete: &ddbtypes.Delete{TableName: aws.String("p-StateTable"), Key: key("token#4")}},
	}})
	got = append(got, r.calls1("F", "DynamoDB", "BatchWriteItem", &dynamodb.BatchWriteItemInput{RequestItems: map[string][]ddbtypes.WriteRequest{
		"p-StateTable": {{PutRequest: &ddbtypes.PutRequest{Item: key("e#5")}}},
	}})...)
	got = append(got, r.calls1("F", "DynamoDB", "Query", &dynamodb.QueryInput{TableName: aws.String("p-RunsTable"), IndexName: aws.String("ByDue"),
		KeyConditionExpression:    aws.String("#d = :d AND #s <= :s"),
		ExpressionAttributeNames:  map[string]string{"#d": "due", "#s": "sk"},
		ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{":d": s("day#1"), ":s": s("z")}})...)
	got = append(got, r.calls1("F", "DynamoDB", "Query", &dynamodb.QueryInput{TableName: aws.String("p-StateTable"),
		KeyConditionExpression: aws.String("begins_with(sk, :p)"), ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{":p": s("x")}})...)
	got = append(got, r.calls1("F", "DynamoDB", "DescribeTable", &dynamodb.DescribeTableInput{TableName: aws.String("p-StateTable")})...)
	state, runs := TableARN("p-StateTable", ""), TableARN("p-RunsTable", "")
	want := []Call{
		{Function: "F", Operation: "TransactWriteItems", Action: "dynamodb:ConditionCheckItem", Resource: state, Keyed: true, LeadingKey: "a#1"},
		{Function: "F", Operation: "TransactWriteItems", Action: "dynamodb:PutItem", Resource: runs, Keyed: true, LeadingKey: "b#2"},
		{Function: "F", Operation: "TransactWriteItems", Action: "dynamodb:UpdateItem", Resource: state, Keyed: true, LeadingKey: "c#3"},
		{Function: "F", Operation: "TransactWriteItems", Action: "dynamodb:DeleteItem", Resource: state, Keyed: true, LeadingKey: "token#4"},
		{Function: "F", Operation: "BatchWriteItem", Action: "dynamodb:BatchWriteItem", Resource: state, Keyed: true, LeadingKey: "e#5"},
		{Function: "F", Operation: "Query", Action: "dynamodb:Query", Resource: runs + "/index/ByDue", Keyed: true, LeadingKey: "day#1"},
		{Function: "F", Operation: "Query", Action: "dynamodb:Query", Resource: state, Keyed: true, KeyUnknown: true},
		{Function: "F", Operation: "DescribeTable", Action: "dynamodb:DescribeTable", Resource: "?"},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got\n%v\nwant\n%v", got, want)
	}
	if s := want[3].String(); s != "F dynamodb:DeleteItem on "+state+" (in TransactWriteItems) key token#…" {
		t.Errorf("String() = %q", s)
	}
	if s := (Call{Function: "F", Action: "dynamodb:GetItem", Resource: state, Keyed: true, LeadingKey: "oAbCdEf#wx1"}).String(); s != "F dynamodb:GetItem on "+state+" key …" {
		t.Errorf("an openid-like key reached String(): %q", s)
	}
}

func TestQueueARN(t *testing.T) {
	if got := QueueARN("http://127.0.0.1:4566/123456789012/p-SendQueue"); got != "arn:aws:sqs:us-east-1:123456789012:p-SendQueue" {
		t.Errorf("QueueARN = %q", got)
	}
	if got := QueueARN("http://127.0.0.1:4566/p-SendQueue"); got != "?" {
		t.Errorf("QueueARN of a URL without an account = %q", got)
	}
}
