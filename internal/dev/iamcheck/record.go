// Package iamcheck checks that template.yaml's IAM policies allow what the functions
// actually do. A Recorder, put into each function's wiring through lambdaenv.Observer,
// notes every permission each AWS call of a function needs — the IAM action and the
// resource ARN, per item inside a transaction, with the partition key values a
// dynamodb:LeadingKeys condition sees — while a realistic workload runs through the
// real functions on the local stack. Check then evaluates those calls against the
// function's statements in the template with IAM's rules (an explicit Deny wins, then
// any Allow, else the implicit deny), because DynamoDB Local and the SQS server check
// no IAM at all: a missing permission is AccessDenied in AWS and invisible locally.
//
// The inverse, Unused, lists what a policy allows that no recorded call needed, for a
// human to trim (a call the workload never made may still be needed).
package iamcheck

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go/middleware"

	"minipush/internal/dev/localstack"
	"minipush/internal/dev/samtemplate"
	"minipush/internal/lambdaenv"
)

// Call is one permission one AWS call of a function needs: what IAM authorizes. A call
// that touches several items or tables (a batch, a transaction) is several Calls.
type Call struct {
	Function string // the template's logical id
	// Action is the IAM action, e.g. dynamodb:PutItem for a Put inside a
	// TransactWriteItems (IAM checks the item actions of a transaction).
	Action string
	// Resource is the ARN IAM matches the policy's resources against: a table, or
	// table/…/index/Name for an index, a stream, a queue, a secret. Local names are
	// those the template's references resolve to on the local stack.
	Resource string
	// Operation is the API operation that made the call, e.g. TransactWriteItems.
	Operation string
	// LeadingKey is the partition key value the call reads or writes, which a
	// dynamodb:LeadingKeys condition sees (Keyed); a Scan has none. It may be an
	// openid: it never appears in messages (see String).
	LeadingKey string
	Keyed      bool
	// KeyUnknown marks a keyed call whose partition key the recorder could not read;
	// a LeadingKeys condition on it cannot be evaluated and fails the check.
	KeyUnknown bool
}

// String describes the call for a report, with the leading key reduced to its item
// kind before the first '#' (token#…): keys may hold openids, which never reach logs.
func (c Call) String() string {
	s := fmt.Sprintf("%s %s on %s", c.Function, c.Action, c.Resource)
	if c.Operation != "" && !strings.HasSuffix(c.Action, ":"+c.Operation) {
		s += " (in " + c.Operation + ")"
	}
	switch {
	case c.KeyUnknown:
		s += " key unknown"
	case c.Keyed:
		if p, _, ok := strings.Cut(c.LeadingKey, "#"); ok && keyTag.MatchString(p) {
			s += " key " + p + "#…"
		} else {
			s += " key …"
		}
	}
	return s
}

// keyTag is a key prefix that names a kind of item (token, expstats), never a user.
var keyTag = regexp.MustCompile(`^[a-z_]{1,16}$`)

// Recorder records the calls of the functions it observes. It is safe for concurrent
// use.
type Recorder struct {
	tables map[string]*samtemplate.Table // local table name -> its template table

	mu    sync.Mutex
	calls map[Call]int
	iters map[string]string // stream shard iterator -> stream ARN (GetRecords names only the iterator)
}

// NewRecorder returns a recorder for the functions of tpl provisioned on the local
// stack under prefix (localstack.Provision's), whose table names it reads the key
// schemas of.
func NewRecorder(tpl *samtemplate.Template, prefix string) *Recorder {
	r := &Recorder{tables: map[string]*samtemplate.Table{}, calls: map[Call]int{}, iters: map[string]string{}}
	for id, t := range tpl.Tables {
		r.tables[prefix+id] = t
	}
	return r
}

// Observer returns the observer to build function (a logical id) with: its AWS calls
// and secret reads are recorded under that id.
func (r *Recorder) Observer(function string) lambdaenv.Observer {
	mw := middleware.InitializeMiddlewareFunc("iamcheck", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
		// Recorded before the call: IAM refuses it whatever its outcome would be.
		r.add(r.calls1(function, awsmiddleware.GetServiceID(ctx), awsmiddleware.GetOperationName(ctx), in.Parameters)...)
		out, md, err := next.HandleInitialize(ctx, in)
		if err == nil {
			r.follow(in.Parameters, out.Result)
		}
		return out, md, err
	})
	return lambdaenv.Observer{
		APIOptions: []func(*middleware.Stack) error{func(s *middleware.Stack) error {
			return s.Initialize.Add(mw, middleware.After)
		}},
		Secret: func(arn string) {
			r.add(Call{Function: function, Action: "secretsmanager:GetSecretValue", Resource: arn, Operation: "GetSecretValue"})
		},
	}
}

func (r *Recorder) add(calls ...Call) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range calls {
		r.calls[c]++
	}
}

// follow remembers which stream a shard iterator reads, for the GetRecords that will
// name only the iterator.
func (r *Recorder) follow(params, result any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch out := result.(type) {
	case *dynamodbstreams.GetShardIteratorOutput:
		if in, ok := params.(*dynamodbstreams.GetShardIteratorInput); ok && out.ShardIterator != nil && in.StreamArn != nil {
			r.iters[*out.ShardIterator] = *in.StreamArn
		}
	case *dynamodbstreams.GetRecordsOutput:
		if in, ok := params.(*dynamodbstreams.GetRecordsInput); ok && out.NextShardIterator != nil && in.ShardIterator != nil {
			if arn, ok := r.iters[*in.ShardIterator]; ok {
				r.iters[*out.NextShardIterator] = arn
			}
		}
	}
}

// Calls returns the distinct calls recorded so far, sorted.
func (r *Recorder) Calls() []Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.SortedFunc(maps.Keys(r.calls), compareCalls)
}

func compareCalls(a, b Call) int {
	return cmp.Or(cmp.Compare(a.Function, b.Function), cmp.Compare(a.Action, b.Action), cmp.Compare(a.Resource, b.Resource),
		cmp.Compare(a.Operation, b.Operation), cmp.Compare(a.LeadingKey, b.LeadingKey))
}

// calls1 turns one API call into the permissions it needs. An operation the recorder
// does not model becomes a Call on resource "?", which no policy allows: the check
// fails until the recorder learns it, rather than passing it unseen.
func (r *Recorder) calls1(function, service, op string, params any) []Call {
	base := Call{Function: function, Operation: op}
	one := func(action, resource string) []Call {
		c := base
		c.Action, c.Resource = action, resource
		return []Call{c}
	}
	switch service {
	case "DynamoDB":
		return r.dynamoDB(base, params)
	case "DynamoDB Streams":
		switch in := params.(type) {
		case *dynamodbstreams.DescribeStreamInput:
			return one("dynamodb:DescribeStream", deref(in.StreamArn))
		case *dynamodbstreams.GetShardIteratorInput:
			return one("dynamodb:GetShardIterator", deref(in.StreamArn))
		case *dynamodbstreams.GetRecordsInput:
			r.mu.Lock()
			arn, ok := r.iters[deref(in.ShardIterator)]
			r.mu.Unlock()
			if !ok {
				arn = "?"
			}
			return one("dynamodb:GetRecords", arn)
		}
	case "SQS":
		// The batch calls are authorized as their single-message actions.
		// https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-api-permissions-reference.html
		action := "sqs:" + strings.TrimSuffix(op, "Batch")
		switch in := params.(type) {
		case *sqs.SendMessageInput:
			return one(action, QueueARN(deref(in.QueueUrl)))
		case *sqs.SendMessageBatchInput:
			return one(action, QueueARN(deref(in.QueueUrl)))
		case *sqs.ReceiveMessageInput:
			return one(action, QueueARN(deref(in.QueueUrl)))
		case *sqs.DeleteMessageInput:
			return one(action, QueueARN(deref(in.QueueUrl)))
		case *sqs.DeleteMessageBatchInput:
			return one(action, QueueARN(deref(in.QueueUrl)))
		case *sqs.ChangeMessageVisibilityInput:
			return one(action, QueueARN(deref(in.QueueUrl)))
		case *sqs.ChangeMessageVisibilityBatchInput:
			return one(action, QueueARN(deref(in.QueueUrl)))
		case *sqs.GetQueueAttributesInput:
			return one(action, QueueARN(deref(in.QueueUrl)))
		}
	case "Secrets Manager":
		if in, ok := params.(*secretsmanager.GetSecretValueInput); ok {
			return one("secretsmanager:GetSecretValue", deref(in.SecretId))
		}
	}
	return one(serviceprefix(service)+":"+op, "?")
}

func serviceprefix(service string) string {
	switch service {
	case "DynamoDB", "DynamoDB Streams":
		return "dynamodb"
	case "Secrets Manager":
		return "secretsmanager"
	}
	return strings.ToLower(service)
}

// dynamoDB splits a DynamoDB call into its IAM checks: batches per table and key (IAM
// authorizes dynamodb:BatchGetItem and dynamodb:BatchWriteItem on each table they
// touch), transactions per item and its own action (dynamodb:ConditionCheckItem for a
// ConditionCheck).
// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis-iam.html
func (r *Recorder) dynamoDB(base Call, params any) []Call {
	var out []Call
	item := func(action, table string, key map[string]ddbtypes.AttributeValue) {
		c := base
		c.Action, c.Resource = action, TableARN(table, "")
		c.LeadingKey, c.Keyed, c.KeyUnknown = r.leadingKey(table, "", key)
		out = append(out, c)
	}
	switch in := params.(type) {
	case *dynamodb.GetItemInput:
		item("dynamodb:GetItem", deref(in.TableName), in.Key)
	case *dynamodb.PutItemInput:
		item("dynamodb:PutItem", deref(in.TableName), in.Item)
	case *dynamodb.UpdateItemInput:
		item("dynamodb:UpdateItem", deref(in.TableName), in.Key)
	case *dynamodb.DeleteItemInput:
		item("dynamodb:DeleteItem", deref(in.TableName), in.Key)
	case *dynamodb.QueryInput:
		c := base
		table, index := deref(in.TableName), deref(in.IndexName)
		c.Action, c.Resource = "dynamodb:Query", TableARN(table, index)
		c.Keyed = true
		c.LeadingKey, c.KeyUnknown = r.queryKey(table, index, in)
		out = append(out, c)
	case *dynamodb.ScanInput:
		c := base
		c.Action, c.Resource = "dynamodb:Scan", TableARN(deref(in.TableName), deref(in.IndexName))
		out = append(out, c)
	case *dynamodb.BatchGetItemInput:
		for table, ka := range in.RequestItems {
			for _, k := range ka.Keys {
				item("dynamodb:BatchGetItem", table, k)
			}
		}
	case *dynamodb.BatchWriteItemInput:
		for table, reqs := range in.RequestItems {
			for _, w := range reqs {
				switch {
				case w.PutRequest != nil:
					item("dynamodb:BatchWriteItem", table, w.PutRequest.Item)
				case w.DeleteRequest != nil:
					item("dynamodb:BatchWriteItem", table, w.DeleteRequest.Key)
				}
			}
		}
	case *dynamodb.TransactWriteItemsInput:
		for _, t := range in.TransactItems {
			switch {
			case t.ConditionCheck != nil:
				item("dynamodb:ConditionCheckItem", deref(t.ConditionCheck.TableName), t.ConditionCheck.Key)
			case t.Put != nil:
				item("dynamodb:PutItem", deref(t.Put.TableName), t.Put.Item)
			case t.Update != nil:
				item("dynamodb:UpdateItem", deref(t.Update.TableName), t.Update.Key)
			case t.Delete != nil:
				item("dynamodb:DeleteItem", deref(t.Delete.TableName), t.Delete.Key)
			}
		}
	case *dynamodb.TransactGetItemsInput:
		for _, t := range in.TransactItems {
			if t.Get != nil {
				item("dynamodb:GetItem", deref(t.Get.TableName), t.Get.Key)
			}
		}
	default:
		c := base
		c.Action, c.Resource = "dynamodb:"+base.Operation, "?"
		out = append(out, c)
	}
	return out
}

// hashKey returns the partition key attribute of a table (index "") or of its index.
func (r *Recorder) hashKey(table, index string) string {
	t := r.tables[table]
	if t == nil {
		return ""
	}
	schema := t.KeySchema
	for _, ix := range slices.Concat(t.GlobalSecondaryIndexes, t.LocalSecondaryIndexes) {
		if index != "" && ix.IndexName == index {
			schema = ix.KeySchema
		}
	}
	for _, k := range schema {
		if k.KeyType == "HASH" {
			return k.AttributeName
		}
	}
	return ""
}

// leadingKey reads the partition key value of an item or key.
func (r *Recorder) leadingKey(table, index string, key map[string]ddbtypes.AttributeValue) (value string, keyed, unknown bool) {
	v, ok := scalar(key[r.hashKey(table, index)])
	return v, true, !ok
}

// keyEquality matches "name = :value" in a key condition; the partition key is always
// compared for equality (the sort key's <= and >= have a character before '=').
var keyEquality = regexp.MustCompile(`(#?[A-Za-z0-9_.]+)\s*=\s*(:[A-Za-z0-9_]+)`)

// queryKey reads the partition key value a Query names in its key condition.
func (r *Recorder) queryKey(table, index string, in *dynamodb.QueryInput) (string, bool) {
	hash := r.hashKey(table, index)
	for _, m := range keyEquality.FindAllStringSubmatch(deref(in.KeyConditionExpression), -1) {
		name := m[1]
		if strings.HasPrefix(name, "#") {
			name = in.ExpressionAttributeNames[name]
		}
		if name == hash && hash != "" {
			if v, ok := scalar(in.ExpressionAttributeValues[m[2]]); ok {
				return v, false
			}
		}
	}
	if c, ok := in.KeyConditions[hash]; ok && len(c.AttributeValueList) == 1 {
		if v, ok := scalar(c.AttributeValueList[0]); ok {
			return v, false
		}
	}
	return "", true
}

func scalar(v ddbtypes.AttributeValue) (string, bool) {
	switch v := v.(type) {
	case *ddbtypes.AttributeValueMemberS:
		return v.Value, true
	case *ddbtypes.AttributeValueMemberN:
		return v.Value, true
	}
	return "", false
}

// TableARN is the ARN of a local table (localstack.Resources.GetAtt's form), or of its
// index when index is set.
func TableARN(table, index string) string {
	arn := fmt.Sprintf("arn:aws:dynamodb:%s:%s:table/%s", localstack.Region, localstack.AccountID, table)
	if index != "" {
		arn += "/index/" + index
	}
	return arn
}

// QueueARN is the ARN of the queue at a queue URL (…/account/name), or "?" for a URL
// of another shape.
func QueueARN(queueURL string) string {
	u, err := url.Parse(queueURL)
	if err != nil {
		return "?"
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
		return "?"
	}
	return fmt.Sprintf("arn:aws:sqs:%s:%s:%s", localstack.Region, parts[0], parts[1])
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
