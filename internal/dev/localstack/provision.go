package localstack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"minipush/internal/dev/samtemplate"
)

// AccountID is the account the local SQS server writes into queue ARNs and URLs.
const AccountID = "123456789012"

// Queue is a provisioned local queue.
type Queue struct {
	Name, URL, ARN string
}

// Resources are the local resources made for one template under one name prefix. They
// resolve the template's references, so a function's environment can be computed exactly
// as CloudFormation would compute it.
type Resources struct {
	Prefix     string
	Tables     map[string]string // logical id -> table name
	StreamARNs map[string]string // logical id -> latest stream ARN
	Queues     map[string]Queue  // logical id -> queue
	Parameters map[string]string // resolved parameter values

	tpl *samtemplate.Template
}

// Provision creates every table and queue of tpl, named prefix+LogicalID, with the keys,
// indexes, TTL, streams, visibility timeouts and redrive policies the template declares.
// params override parameter defaults. What has no local meaning is read and deliberately
// not applied: point-in-time recovery (DynamoDB Local keeps no backups), encryption at
// rest (SqsManagedSseEnabled; the SQS server keeps messages in memory), deletion and
// replacement policies (local resources live as long as the test or run).
func Provision(ctx context.Context, c Clients, tpl *samtemplate.Template, prefix string, params map[string]string) (*Resources, error) {
	r := &Resources{
		Prefix:     prefix,
		Tables:     map[string]string{},
		StreamARNs: map[string]string{},
		Queues:     map[string]Queue{},
		Parameters: map[string]string{},
		tpl:        tpl,
	}
	for name := range tpl.Parameters {
		if v, err := tpl.ParameterValue(name, params); err == nil {
			r.Parameters[name] = v
		}
	}
	for _, id := range slices.Sorted(maps.Keys(tpl.Tables)) {
		if err := r.createTable(ctx, c.DynamoDB, tpl.Tables[id]); err != nil {
			return r, err
		}
	}
	// Dead-letter queues first: a redrive policy names its target's ARN.
	ids := slices.Sorted(maps.Keys(tpl.Queues))
	sort.SliceStable(ids, func(i, j int) bool {
		return tpl.Queues[ids[i]].RedrivePolicy == nil && tpl.Queues[ids[j]].RedrivePolicy != nil
	})
	for _, id := range ids {
		if err := r.createQueue(ctx, c.SQS, tpl.Queues[id]); err != nil {
			return r, err
		}
	}
	return r, nil
}

func (r *Resources) createTable(ctx context.Context, db *dynamodb.Client, t *samtemplate.Table) error {
	name := r.Prefix + t.LogicalID
	in := &dynamodb.CreateTableInput{
		TableName:   aws.String(name),
		BillingMode: ddbtypes.BillingModePayPerRequest,
		KeySchema:   keySchema(t.KeySchema),
	}
	if t.BillingMode != "" && t.BillingMode != string(ddbtypes.BillingModePayPerRequest) {
		return fmt.Errorf("localstack: table %s: billing mode %s is not supported locally", t.LogicalID, t.BillingMode)
	}
	for _, a := range t.AttributeDefinitions {
		in.AttributeDefinitions = append(in.AttributeDefinitions, ddbtypes.AttributeDefinition{
			AttributeName: aws.String(a.AttributeName),
			AttributeType: ddbtypes.ScalarAttributeType(a.AttributeType),
		})
	}
	for _, ix := range t.GlobalSecondaryIndexes {
		in.GlobalSecondaryIndexes = append(in.GlobalSecondaryIndexes, ddbtypes.GlobalSecondaryIndex{
			IndexName: aws.String(ix.IndexName), KeySchema: keySchema(ix.KeySchema), Projection: projection(ix.Projection),
		})
	}
	for _, ix := range t.LocalSecondaryIndexes {
		in.LocalSecondaryIndexes = append(in.LocalSecondaryIndexes, ddbtypes.LocalSecondaryIndex{
			IndexName: aws.String(ix.IndexName), KeySchema: keySchema(ix.KeySchema), Projection: projection(ix.Projection),
		})
	}
	if s := t.StreamSpecification; s != nil {
		in.StreamSpecification = &ddbtypes.StreamSpecification{
			StreamEnabled:  aws.Bool(true),
			StreamViewType: ddbtypes.StreamViewType(s.StreamViewType),
		}
	}
	var desc *ddbtypes.TableDescription
	out, err := db.CreateTable(ctx, in)
	var inUse *ddbtypes.ResourceInUseException
	switch {
	case errors.As(err, &inUse):
		// Kept from an earlier run (make run keeps its data): reuse it as it is.
		d, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)})
		if err != nil {
			return fmt.Errorf("localstack: describe table %s: %w", name, err)
		}
		desc = d.Table
	case err != nil:
		return fmt.Errorf("localstack: create table %s: %w", name, err)
	default:
		desc = out.TableDescription
	}
	r.Tables[t.LogicalID] = name
	if desc.LatestStreamArn != nil {
		r.StreamARNs[t.LogicalID] = *desc.LatestStreamArn
	}
	// TTL is deliberately not enabled on DynamoDB Local: it deletes expired items by the
	// wall clock, late and at random, while tests run on test clocks (an item a test wrote
	// with a fixed "now" in the past could vanish mid-test). The Reaper is the one TTL
	// service locally: it reads the template's TimeToLiveSpecification and deletes on a
	// clock the caller controls.
	return nil
}

func keySchema(ks []samtemplate.KeyElement) []ddbtypes.KeySchemaElement {
	out := make([]ddbtypes.KeySchemaElement, 0, len(ks))
	for _, k := range ks {
		out = append(out, ddbtypes.KeySchemaElement{AttributeName: aws.String(k.AttributeName), KeyType: ddbtypes.KeyType(k.KeyType)})
	}
	return out
}

func projection(p samtemplate.Projection) *ddbtypes.Projection {
	out := &ddbtypes.Projection{ProjectionType: ddbtypes.ProjectionType(p.ProjectionType)}
	if len(p.NonKeyAttributes) > 0 {
		out.NonKeyAttributes = p.NonKeyAttributes
	}
	return out
}

func (r *Resources) createQueue(ctx context.Context, client *sqs.Client, q *samtemplate.Queue) error {
	name := r.Prefix + q.LogicalID
	attrs := map[string]string{}
	setInt := func(k string, v *int) {
		if v != nil {
			attrs[k] = strconv.Itoa(*v)
		}
	}
	if q.VisibilityTimeout.IsSet() {
		v, err := q.VisibilityTimeout.Resolve(r)
		if err != nil {
			return fmt.Errorf("localstack: queue %s: visibility timeout: %w", q.LogicalID, err)
		}
		attrs["VisibilityTimeout"] = v
	}
	setInt("MessageRetentionPeriod", q.MessageRetentionPeriod)
	setInt("DelaySeconds", q.DelaySeconds)
	setInt("ReceiveMessageWaitTimeSeconds", q.ReceiveMessageWaitTimeSeconds)
	setInt("MaximumMessageSize", q.MaximumMessageSize)
	if rp := q.RedrivePolicy; rp != nil {
		arn, err := rp.DeadLetterTargetArn.Resolve(r)
		if err != nil {
			return fmt.Errorf("localstack: queue %s: redrive target: %w", q.LogicalID, err)
		}
		b, _ := json.Marshal(map[string]any{"deadLetterTargetArn": arn, "maxReceiveCount": rp.MaxReceiveCount})
		attrs[string(sqstypes.QueueAttributeNameRedrivePolicy)] = string(b)
	}
	out, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
	if err != nil {
		return fmt.Errorf("localstack: create queue %s: %w", name, err)
	}
	got, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: out.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn},
	})
	if err != nil {
		return fmt.Errorf("localstack: queue %s: arn: %w", name, err)
	}
	r.Queues[q.LogicalID] = Queue{Name: name, URL: *out.QueueUrl, ARN: got.Attributes[string(sqstypes.QueueAttributeNameQueueArn)]}
	return nil
}

// Teardown deletes every table and queue Provision made.
func (r *Resources) Teardown(ctx context.Context, c Clients) error {
	var errs []error
	for _, name := range r.Tables {
		if _, err := c.DynamoDB.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(name)}); err != nil {
			errs = append(errs, err)
		}
	}
	for _, q := range r.Queues {
		if _, err := c.SQS.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(q.URL)}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Ref implements samtemplate.Resolver: tables resolve to their names, queues to their
// URLs, parameters to their values and secrets to a local: reference.
func (r *Resources) Ref(name string) (string, error) {
	if v, ok := r.Parameters[name]; ok {
		return v, nil
	}
	switch name {
	case "AWS::Region":
		return Region, nil
	case "AWS::AccountId":
		return AccountID, nil
	case "AWS::Partition":
		return "aws", nil
	case "AWS::URLSuffix":
		return "amazonaws.com", nil
	case "AWS::StackName":
		return r.Prefix + "minipush", nil
	}
	if t, ok := r.Tables[name]; ok {
		return t, nil
	}
	if q, ok := r.Queues[name]; ok {
		return q.URL, nil
	}
	if _, ok := r.tpl.Parameters[name]; ok {
		return "", fmt.Errorf("localstack: parameter %s has no default and no local value", name)
	}
	if typ, ok := r.tpl.Types[name]; ok {
		// Resources without a local stand-in (secrets, topics, the HTTP API) resolve to
		// a recognisable local name; the local runner supplies their content.
		_ = typ
		return "local:" + name, nil
	}
	return "", fmt.Errorf("localstack: Ref %s: unknown", name)
}

// GetAtt implements samtemplate.Resolver.
func (r *Resources) GetAtt(res, attr string) (string, error) {
	if t, ok := r.Tables[res]; ok {
		switch attr {
		case "Arn":
			return fmt.Sprintf("arn:aws:dynamodb:%s:%s:table/%s", Region, AccountID, t), nil
		case "StreamArn":
			if s, ok := r.StreamARNs[res]; ok {
				return s, nil
			}
			return "", fmt.Errorf("localstack: table %s has no stream", res)
		}
	}
	if q, ok := r.Queues[res]; ok {
		switch attr {
		case "Arn":
			return q.ARN, nil
		case "QueueName":
			return q.Name, nil
		case "QueueUrl":
			return q.URL, nil
		}
	}
	if _, ok := r.tpl.Types[res]; ok {
		return "local:" + res + "." + attr, nil
	}
	return "", fmt.Errorf("localstack: GetAtt %s.%s: unknown", res, attr)
}

// FunctionEnv resolves a function's environment variables (Globals applied) against
// the local resources.
func (r *Resources) FunctionEnv(logicalID string) (map[string]string, error) {
	f, ok := r.tpl.Functions[logicalID]
	if !ok {
		return nil, fmt.Errorf("localstack: no function %s", logicalID)
	}
	env := make(map[string]string, len(f.Environment.Variables))
	for k, v := range f.Environment.Variables {
		s, err := v.Resolve(r)
		if err != nil {
			return nil, fmt.Errorf("localstack: %s: env %s: %w", logicalID, k, err)
		}
		env[k] = s
	}
	return env, nil
}

// Table returns the local name of a table, or panics when the template has no such
// table: asking for one that does not exist is a programming error in a test or runner.
func (r *Resources) Table(logicalID string) string {
	name, ok := r.Tables[logicalID]
	if !ok {
		panic("localstack: template has no table " + logicalID)
	}
	return name
}

// Queue returns a provisioned queue, panicking like Table on an unknown id.
func (r *Resources) Queue(logicalID string) Queue {
	q, ok := r.Queues[logicalID]
	if !ok {
		panic("localstack: template has no queue " + logicalID)
	}
	return q
}

// Condition implements samtemplate.ConditionResolver: the template's conditions,
// evaluated on the parameter values this stack resolved.
func (r *Resources) Condition(name string) (bool, error) {
	return r.tpl.EvalCondition(name, r)
}
