// Package samtemplate reads template.yaml into a small model of exactly what the local
// stack needs: tables, queues, functions with their events, environment and policies.
//
// It exists because goformation (v7.14.9) does not apply Globals, has no ScheduleV2, and
// silently drops SQS ScalingConfig, DynamoDB FilterCriteria and GetAtt targets; a local
// stack built on it would quietly differ from the cloud. This reader uses yaml.v3 nodes
// (short-form tags such as !Ref arrive as node tags), applies Globals the way SAM does,
// decodes every property strictly, and fails on anything it does not understand.
package samtemplate

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Resource types the model understands. Others listed in passiveTypes are accepted and
// checked for dangling references but have no local stand-in. Log groups, alarms and
// subscriptions have no local stand-in either, but they are decoded strictly into the
// model so tests can hold the template to its operational promises (retention, alarms).
const (
	TypeTable        = "AWS::DynamoDB::Table"
	TypeQueue        = "AWS::SQS::Queue"
	TypeFunction     = "AWS::Serverless::Function"
	TypeHTTPAPI      = "AWS::Serverless::HttpApi"
	TypeSecret       = "AWS::SecretsManager::Secret"
	TypeLogGroup     = "AWS::Logs::LogGroup"
	TypeAlarm        = "AWS::CloudWatch::Alarm"
	TypeTopic        = "AWS::SNS::Topic"
	TypeSubscription = "AWS::SNS::Subscription"
	TypeDashboard    = "AWS::CloudWatch::Dashboard"
)

var passiveTypes = map[string]bool{
	TypeSecret:                true,
	TypeTopic:                 true,
	"AWS::SSM::Parameter":     true,
	"AWS::SQS::QueuePolicy":   true,
	"AWS::SNS::TopicPolicy":   true,
	"AWS::Serverless::Api":    false, // REST APIs: the local runner emulates HTTP APIs only
	"AWS::Serverless::Layer":  false,
	"AWS::Lambda::Permission": true,
}

// attributes lists the GetAtt attributes each resource type has.
var attributes = map[string][]string{
	TypeTable:             {"Arn", "StreamArn"},
	TypeQueue:             {"Arn", "QueueName", "QueueUrl"},
	TypeFunction:          {"Arn"},
	TypeHTTPAPI:           {"ApiEndpoint", "ApiId"},
	TypeSecret:            {"Id"},
	TypeTopic:             {"TopicArn", "TopicName"},
	TypeAlarm:             {"Arn"},
	"AWS::SSM::Parameter": {"Type", "Value"},
	TypeLogGroup:          {"Arn"},
}

var pseudoParameters = map[string]bool{
	"AWS::AccountId": true, "AWS::Region": true, "AWS::StackName": true, "AWS::StackId": true,
	"AWS::Partition": true, "AWS::URLSuffix": true, "AWS::NoValue": true, "AWS::NotificationARNs": true,
}

// Template is the model of a SAM template.
type Template struct {
	Parameters map[string]Parameter
	Tables     map[string]*Table
	Queues     map[string]*Queue
	Functions  map[string]*Function
	HTTPAPIs   []string
	HTTPAPI    map[string]*HTTPAPI // by logical id, the same ids as HTTPAPIs
	LogGroups  map[string]*LogGroup
	Alarms     map[string]*Alarm
	// Subscriptions are AWS::SNS::Subscription resources.
	Subscriptions map[string]*Subscription
	// Dashboards are AWS::CloudWatch::Dashboard resources: read (so a test can check
	// their metrics exist) and deliberately not emulated.
	Dashboards map[string]*Dashboard
	Types      map[string]string // every resource's logical id -> type
	// Conditions are the template's named conditions; ResourceConditions maps the logical
	// id of a conditional resource to its condition's name.
	Conditions         map[string]*Condition
	ResourceConditions map[string]string
	// DeletionPolicies and UpdateReplacePolicies are the resources' attributes of those
	// names, by logical id (absent: CloudFormation's default, Delete).
	DeletionPolicies      map[string]string
	UpdateReplacePolicies map[string]string

	root *yaml.Node
}

// Parameter is a template parameter.
type Parameter struct {
	Type           string   `yaml:"Type"`
	Default        *string  `yaml:"Default"`
	Description    string   `yaml:"Description"`
	AllowedValues  []string `yaml:"AllowedValues"`
	AllowedPattern string   `yaml:"AllowedPattern"`
	MinValue       *float64 `yaml:"MinValue"`
	MaxValue       *float64 `yaml:"MaxValue"`
	NoEcho         bool     `yaml:"NoEcho"`
}

// Table is an AWS::DynamoDB::Table.
type Table struct {
	LogicalID                        string                `yaml:"-"`
	TableName                        string                `yaml:"TableName"`
	BillingMode                      string                `yaml:"BillingMode"`
	AttributeDefinitions             []AttributeDefinition `yaml:"AttributeDefinitions"`
	KeySchema                        []KeyElement          `yaml:"KeySchema"`
	GlobalSecondaryIndexes           []Index               `yaml:"GlobalSecondaryIndexes"`
	LocalSecondaryIndexes            []Index               `yaml:"LocalSecondaryIndexes"`
	TimeToLiveSpecification          *TTLSpecification     `yaml:"TimeToLiveSpecification"`
	StreamSpecification              *StreamSpecification  `yaml:"StreamSpecification"`
	PointInTimeRecoverySpecification map[string]bool       `yaml:"PointInTimeRecoverySpecification"`
	SSESpecification                 map[string]bool       `yaml:"SSESpecification"`
	DeletionProtectionEnabled        bool                  `yaml:"DeletionProtectionEnabled"`
}

// PITREnabled reports whether the table declares point-in-time recovery. DynamoDB Local
// has no backups, so the local stack records it and does nothing with it.
func (t *Table) PITREnabled() bool {
	return t.PointInTimeRecoverySpecification["PointInTimeRecoveryEnabled"]
}

// AttributeDefinition declares a key attribute's type (S, N or B).
type AttributeDefinition struct {
	AttributeName string `yaml:"AttributeName"`
	AttributeType string `yaml:"AttributeType"`
}

// KeyElement is one part of a key schema (HASH or RANGE).
type KeyElement struct {
	AttributeName string `yaml:"AttributeName"`
	KeyType       string `yaml:"KeyType"`
}

// Index is a global or local secondary index.
type Index struct {
	IndexName  string       `yaml:"IndexName"`
	KeySchema  []KeyElement `yaml:"KeySchema"`
	Projection Projection   `yaml:"Projection"`
}

// Projection says which attributes an index copies.
type Projection struct {
	ProjectionType   string   `yaml:"ProjectionType"`
	NonKeyAttributes []string `yaml:"NonKeyAttributes"`
}

// TTLSpecification names a table's TTL attribute.
type TTLSpecification struct {
	AttributeName string `yaml:"AttributeName"`
	Enabled       bool   `yaml:"Enabled"`
}

// StreamSpecification turns on a table's stream.
type StreamSpecification struct {
	StreamViewType string `yaml:"StreamViewType"`
}

// Queue is an AWS::SQS::Queue.
type Queue struct {
	LogicalID                     string         `yaml:"-"`
	QueueName                     string         `yaml:"QueueName"`
	VisibilityTimeout             Value          `yaml:"VisibilityTimeout"` // a parameter, so local tests can shorten it
	MessageRetentionPeriod        *int           `yaml:"MessageRetentionPeriod"`
	DelaySeconds                  *int           `yaml:"DelaySeconds"`
	ReceiveMessageWaitTimeSeconds *int           `yaml:"ReceiveMessageWaitTimeSeconds"`
	MaximumMessageSize            *int           `yaml:"MaximumMessageSize"`
	SqsManagedSseEnabled          *bool          `yaml:"SqsManagedSseEnabled"` // no local meaning: the local SQS server keeps messages in memory
	RedrivePolicy                 *RedrivePolicy `yaml:"RedrivePolicy"`
}

// RedrivePolicy sends a message to a dead-letter queue after maxReceiveCount receives.
type RedrivePolicy struct {
	DeadLetterTargetArn Value `yaml:"deadLetterTargetArn"`
	MaxReceiveCount     int   `yaml:"maxReceiveCount"`
}

// Function is an AWS::Serverless::Function with Globals applied.
type Function struct {
	LogicalID                    string            `yaml:"-"`
	BuildMethod                  string            `yaml:"-"` // from Metadata
	CodeURI                      string            `yaml:"CodeUri"`
	Handler                      string            `yaml:"Handler"`
	Runtime                      string            `yaml:"Runtime"`
	Architectures                []string          `yaml:"Architectures"`
	MemorySize                   Value             `yaml:"MemorySize"`
	Timeout                      Value             `yaml:"Timeout"`
	Description                  string            `yaml:"Description"`
	LoggingConfig                LoggingConfig     `yaml:"LoggingConfig"`
	Environment                  Environment       `yaml:"Environment"`
	Policies                     []Policy          `yaml:"Policies"`
	Events                       map[string]*Event `yaml:"Events"`
	ReservedConcurrentExecutions Value             `yaml:"ReservedConcurrentExecutions"`
	EventInvokeConfig            EventInvokeConfig `yaml:"EventInvokeConfig"`
}

// EventInvokeConfig is how Lambda retries an asynchronous invocation (the schedule's).
// Locally the runner invokes the schedule synchronously, so it is read and not emulated.
type EventInvokeConfig struct {
	MaximumRetryAttempts     Value `yaml:"MaximumRetryAttempts"`
	MaximumEventAgeInSeconds Value `yaml:"MaximumEventAgeInSeconds"`
}

// LoggingConfig is where and how a function logs. Locally functions log to the runner's
// logger whatever it says.
type LoggingConfig struct {
	LogFormat           string `yaml:"LogFormat"`
	LogGroup            Value  `yaml:"LogGroup"`
	ApplicationLogLevel string `yaml:"ApplicationLogLevel"`
	SystemLogLevel      string `yaml:"SystemLogLevel"`
}

// Environment holds a function's environment variables.
type Environment struct {
	Variables map[string]Value `yaml:"Variables"`
}

// Policy is an inline policy document of a function.
type Policy struct {
	Statement []Statement `yaml:"Statement"`
}

// Statement is one IAM statement. DynamoDB Local does not check IAM, so statements are
// only read for the template tests (least privilege, the token items' Deny).
type Statement struct {
	Sid      string   `yaml:"Sid"`
	Effect   string   `yaml:"Effect"`
	Action   []string `yaml:"Action"`
	Resource []Value  `yaml:"Resource"`
	// Condition maps an operator (ForAnyValue:StringLike) to condition keys and values.
	Condition map[string]map[string][]string `yaml:"Condition"`
}

// Event is one event source of a function. Exactly one of the typed fields is set,
// according to Type.
type Event struct {
	Name     string
	Type     string
	HTTPAPI  *HTTPAPIEvent
	Schedule *ScheduleEvent
	SQS      *SQSEvent
	DynamoDB *DynamoDBEvent
}

// HTTPAPIEvent is a route of an HTTP API.
type HTTPAPIEvent struct {
	APIID                Value  `yaml:"ApiId"`
	Method               string `yaml:"Method"`
	Path                 string `yaml:"Path"`
	PayloadFormatVersion string `yaml:"PayloadFormatVersion"`
	TimeoutInMillis      int    `yaml:"TimeoutInMillis"`
	// RouteSettings throttle this route on the stage; not emulated locally (see HTTPAPI).
	RouteSettings *RouteSettings `yaml:"RouteSettings"`
}

// HTTPAPI is an AWS::Serverless::HttpApi. Stage throttling is read but not emulated by
// the local gateway: local load tests (make demo, make bench, make chaos) would measure
// the throttle instead of the system, and API Gateway's token bucket is AWS's to test.
type HTTPAPI struct {
	LogicalID            string                   `yaml:"-"`
	Description          string                   `yaml:"Description"`
	StageName            string                   `yaml:"StageName"`
	DefaultRouteSettings *RouteSettings           `yaml:"DefaultRouteSettings"`
	RouteSettings        map[string]RouteSettings `yaml:"RouteSettings"`
}

// RouteSettings are an HTTP API stage's per-route settings.
type RouteSettings struct {
	ThrottlingBurstLimit   Value `yaml:"ThrottlingBurstLimit"`
	ThrottlingRateLimit    Value `yaml:"ThrottlingRateLimit"`
	DetailedMetricsEnabled *bool `yaml:"DetailedMetricsEnabled"`
}

// LogGroup is an AWS::Logs::LogGroup (no local stand-in: functions log to the runner).
type LogGroup struct {
	LogicalID       string `yaml:"-"`
	LogGroupName    Value  `yaml:"LogGroupName"`
	RetentionInDays Value  `yaml:"RetentionInDays"`
	LogGroupClass   string `yaml:"LogGroupClass"`
}

// Alarm is an AWS::CloudWatch::Alarm on one metric (no local stand-in).
type Alarm struct {
	LogicalID          string      `yaml:"-"`
	AlarmDescription   string      `yaml:"AlarmDescription"`
	Namespace          string      `yaml:"Namespace"`
	MetricName         string      `yaml:"MetricName"`
	Dimensions         []Dimension `yaml:"Dimensions"`
	Statistic          string      `yaml:"Statistic"`
	Period             int         `yaml:"Period"`
	EvaluationPeriods  int         `yaml:"EvaluationPeriods"`
	DatapointsToAlarm  int         `yaml:"DatapointsToAlarm"`
	Threshold          Value       `yaml:"Threshold"`
	ComparisonOperator string      `yaml:"ComparisonOperator"`
	TreatMissingData   string      `yaml:"TreatMissingData"`
	AlarmActions       []Value     `yaml:"AlarmActions"`
	OKActions          []Value     `yaml:"OKActions"`
}

// Dimension names the resource an alarm's metric is about.
type Dimension struct {
	Name  string `yaml:"Name"`
	Value Value  `yaml:"Value"`
}

// Subscription is an AWS::SNS::Subscription (no local stand-in).
type Subscription struct {
	LogicalID string `yaml:"-"`
	Protocol  string `yaml:"Protocol"`
	Endpoint  Value  `yaml:"Endpoint"`
	TopicArn  Value  `yaml:"TopicArn"`
}

// Dashboard is an AWS::CloudWatch::Dashboard. The local stack has no CloudWatch: the
// runner prints its own summary of the same metrics instead (localrun.Summary). The
// body is kept as written (usually a !Sub template) for tests that read its widgets.
type Dashboard struct {
	LogicalID     string `yaml:"-"`
	DashboardName Value  `yaml:"DashboardName"`
	DashboardBody Value  `yaml:"DashboardBody"`
}

// ScheduleEvent is an EventBridge schedule (Type Schedule or ScheduleV2).
type ScheduleEvent struct {
	Schedule                   string `yaml:"Schedule"`           // Schedule
	ScheduleExpression         string `yaml:"ScheduleExpression"` // ScheduleV2
	ScheduleExpressionTimezone string `yaml:"ScheduleExpressionTimezone"`
	Description                string `yaml:"Description"`
	Enabled                    *bool  `yaml:"Enabled"`
	State                      string `yaml:"State"`
	Input                      string `yaml:"Input"`
}

// Expression returns the rate() or cron() expression whichever event type declared it.
func (e *ScheduleEvent) Expression() string {
	if e.Schedule != "" {
		return e.Schedule
	}
	return e.ScheduleExpression
}

// SQSEvent is an SQS event source mapping.
type SQSEvent struct {
	Queue                          Value          `yaml:"Queue"`
	BatchSize                      Value          `yaml:"BatchSize"`
	MaximumBatchingWindowInSeconds Value          `yaml:"MaximumBatchingWindowInSeconds"`
	FunctionResponseTypes          []string       `yaml:"FunctionResponseTypes"`
	ScalingConfig                  *ScalingConfig `yaml:"ScalingConfig"`
	Enabled                        Value          `yaml:"Enabled"` // a parameter may switch a mapping off
}

// ScalingConfig bounds how many instances an SQS event source drives at once.
type ScalingConfig struct {
	MaximumConcurrency Value `yaml:"MaximumConcurrency"`
}

// DynamoDBEvent is a DynamoDB stream event source mapping.
type DynamoDBEvent struct {
	Stream                         Value           `yaml:"Stream"`
	StartingPosition               string          `yaml:"StartingPosition"`
	BatchSize                      Value           `yaml:"BatchSize"`
	MaximumBatchingWindowInSeconds Value           `yaml:"MaximumBatchingWindowInSeconds"`
	MaximumRetryAttempts           Value           `yaml:"MaximumRetryAttempts"`
	BisectBatchOnFunctionError     bool            `yaml:"BisectBatchOnFunctionError"`
	ParallelizationFactor          Value           `yaml:"ParallelizationFactor"`
	FunctionResponseTypes          []string        `yaml:"FunctionResponseTypes"`
	FilterCriteria                 *FilterCriteria `yaml:"FilterCriteria"`
	Enabled                        Value           `yaml:"Enabled"`
	MaximumRecordAgeInSeconds      Value           `yaml:"MaximumRecordAgeInSeconds"`
	// DestinationConfig is where Lambda sends a record of a batch it gave up on.
	DestinationConfig *StreamDestinationConfig `yaml:"DestinationConfig"`
}

// StreamDestinationConfig is a stream mapping's on-failure destination.
type StreamDestinationConfig struct {
	OnFailure struct {
		// Type (SQS or SNS) is SAM's: it makes SAM grant the function's role the right to
		// send there, and is removed from the CloudFormation resource.
		Type        string `yaml:"Type"`
		Destination Value  `yaml:"Destination"`
	} `yaml:"OnFailure"`
}

// MappingEnabled resolves an event source mapping's Enabled property: true when absent,
// as in Lambda, else the resolved value, which must be true or false.
func MappingEnabled(v Value, r Resolver) (bool, error) {
	if !v.IsSet() {
		return true, nil
	}
	s, err := v.Resolve(r)
	if err != nil {
		return false, err
	}
	switch strings.ToLower(s) {
	case "true", "":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("samtemplate: Enabled %q is not true or false", s)
}

// FilterCriteria are event-source filter patterns (JSON strings).
type FilterCriteria struct {
	Filters []struct {
		Pattern string `yaml:"Pattern"`
	} `yaml:"Filters"`
}

// ReportsBatchItemFailures reports whether the mapping honours partial batch responses.
func reportsBatchItemFailures(types []string) bool {
	for _, t := range types {
		if t == "ReportBatchItemFailures" {
			return true
		}
	}
	return false
}

// ReportsBatchItemFailures reports whether the SQS mapping honours batchItemFailures.
func (e *SQSEvent) ReportsBatchItemFailures() bool {
	return reportsBatchItemFailures(e.FunctionResponseTypes)
}

// ReportsBatchItemFailures reports whether the stream mapping honours batchItemFailures.
func (e *DynamoDBEvent) ReportsBatchItemFailures() bool {
	return reportsBatchItemFailures(e.FunctionResponseTypes)
}

// ReadFile reads and parses a template file.
func ReadFile(path string) (*Template, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("samtemplate: %w", err)
	}
	t, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("samtemplate: %s: %w", path, err)
	}
	return t, nil
}

// Parse parses a template. It fails on resource types, properties, event types and
// intrinsics the model does not understand, and on references that point at nothing.
func Parse(b []byte) (*Template, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("template is not a YAML map")
	}
	root := doc.Content[0]
	t := &Template{
		Parameters: map[string]Parameter{},
		Tables:     map[string]*Table{},
		Queues:     map[string]*Queue{},
		Functions:  map[string]*Function{},
		HTTPAPI:    map[string]*HTTPAPI{},
		LogGroups:  map[string]*LogGroup{},
		Alarms:     map[string]*Alarm{},

		Subscriptions:         map[string]*Subscription{},
		Dashboards:            map[string]*Dashboard{},
		Types:                 map[string]string{},
		Conditions:            map[string]*Condition{},
		ResourceConditions:    map[string]string{},
		DeletionPolicies:      map[string]string{},
		UpdateReplacePolicies: map[string]string{},
		root:                  root,
	}
	if n := mapGet(root, "Parameters"); n != nil {
		if err := strictDecode(n, &t.Parameters); err != nil {
			return nil, fmt.Errorf("Parameters: %w", err)
		}
	}
	var globalFn *yaml.Node
	if g := mapGet(root, "Globals"); g != nil {
		for i := 0; i < len(g.Content); i += 2 {
			if k := g.Content[i].Value; k != "Function" {
				return nil, fmt.Errorf("Globals.%s is not supported by the local stack", k)
			}
		}
		globalFn = mapGet(g, "Function")
	}
	if n := mapGet(root, "Conditions"); n != nil {
		if err := t.parseConditions(n); err != nil {
			return nil, err
		}
	}
	resources := mapGet(root, "Resources")
	if resources == nil || resources.Kind != yaml.MappingNode {
		return nil, errors.New("no Resources")
	}
	for i := 0; i < len(resources.Content); i += 2 {
		id, res := resources.Content[i].Value, resources.Content[i+1]
		if err := t.addResource(id, res, globalFn); err != nil {
			return nil, fmt.Errorf("Resources.%s: %w", id, err)
		}
	}
	if err := t.checkReferences(); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *Template) addResource(id string, res, globalFn *yaml.Node) error {
	typ := mapGet(res, "Type")
	if typ == nil {
		return errors.New("no Type")
	}
	for i := 0; i < len(res.Content); i += 2 {
		switch k, v := res.Content[i].Value, res.Content[i+1]; k {
		case "Type", "Properties", "Metadata", "DependsOn":
		case "DeletionPolicy", "UpdateReplacePolicy":
			switch v.Value {
			case "Delete", "Retain", "RetainExceptOnCreate", "Snapshot":
			default:
				return fmt.Errorf("%s %q is not a CloudFormation policy", k, v.Value)
			}
			if k == "DeletionPolicy" {
				t.DeletionPolicies[id] = v.Value
			} else {
				t.UpdateReplacePolicies[id] = v.Value
			}
		case "Condition":
			if _, ok := t.Conditions[v.Value]; !ok {
				return fmt.Errorf("Condition %s: no such condition", v.Value)
			}
			t.ResourceConditions[id] = v.Value
		default:
			return fmt.Errorf("attribute %s is not supported by the local stack", k)
		}
	}
	t.Types[id] = typ.Value
	if _, ok := t.ResourceConditions[id]; ok {
		switch typ.Value {
		case TypeTable, TypeQueue, TypeFunction, TypeHTTPAPI:
			// The local stack always creates these; a condition it ignored would make local
			// and cloud differ, so it is refused rather than guessed.
			return fmt.Errorf("a conditional %s has no local emulation", typ.Value)
		}
	}
	props := mapGet(res, "Properties")
	if props == nil {
		props = &yaml.Node{Kind: yaml.MappingNode}
	}
	switch typ.Value {
	case TypeTable:
		if err := forbidIntrinsics(props); err != nil {
			return err
		}
		tab := &Table{}
		if err := strictDecode(props, tab); err != nil {
			return err
		}
		tab.LogicalID = id
		t.Tables[id] = tab
	case TypeQueue:
		q := &Queue{}
		if err := strictDecode(props, q); err != nil {
			return err
		}
		q.LogicalID = id
		t.Queues[id] = q
	case TypeFunction:
		f, err := decodeFunction(id, res, props, globalFn)
		if err != nil {
			return err
		}
		t.Functions[id] = f
	case TypeHTTPAPI:
		api := &HTTPAPI{}
		if err := strictDecode(props, api); err != nil {
			return err
		}
		api.LogicalID = id
		t.HTTPAPIs = append(t.HTTPAPIs, id)
		t.HTTPAPI[id] = api
	case TypeLogGroup:
		lg := &LogGroup{}
		if err := strictDecode(props, lg); err != nil {
			return err
		}
		lg.LogicalID = id
		t.LogGroups[id] = lg
	case TypeAlarm:
		a := &Alarm{}
		if err := strictDecode(props, a); err != nil {
			return err
		}
		a.LogicalID = id
		t.Alarms[id] = a
	case TypeSubscription:
		s := &Subscription{}
		if err := strictDecode(props, s); err != nil {
			return err
		}
		s.LogicalID = id
		t.Subscriptions[id] = s
	case TypeDashboard:
		d := &Dashboard{}
		if err := strictDecode(props, d); err != nil {
			return err
		}
		if !d.DashboardBody.IsSet() {
			return errors.New("a dashboard without DashboardBody")
		}
		d.LogicalID = id
		t.Dashboards[id] = d
	default:
		if !passiveTypes[typ.Value] {
			return fmt.Errorf("type %s is not supported by the local stack", typ.Value)
		}
	}
	return nil
}

func decodeFunction(id string, res, props, globalFn *yaml.Node) (*Function, error) {
	if globalFn != nil {
		props = mergeGlobals(globalFn, props)
	}
	events := mapGet(props, "Events")
	withoutEvents := mapWithout(props, "Events")
	f := &Function{}
	if err := strictDecode(withoutEvents, f); err != nil {
		return nil, err
	}
	f.LogicalID = id
	if md := mapGet(res, "Metadata"); md != nil {
		if bm := mapGet(md, "BuildMethod"); bm != nil {
			f.BuildMethod = bm.Value
		}
	}
	f.Events = map[string]*Event{}
	if events != nil {
		for i := 0; i < len(events.Content); i += 2 {
			name, en := events.Content[i].Value, events.Content[i+1]
			ev, err := decodeEvent(name, en)
			if err != nil {
				return nil, fmt.Errorf("Events.%s: %w", name, err)
			}
			f.Events[name] = ev
		}
	}
	return f, nil
}

func decodeEvent(name string, n *yaml.Node) (*Event, error) {
	typ := mapGet(n, "Type")
	if typ == nil {
		return nil, errors.New("no Type")
	}
	props := mapGet(n, "Properties")
	if props == nil {
		return nil, errors.New("no Properties")
	}
	ev := &Event{Name: name, Type: typ.Value}
	var target any
	switch typ.Value {
	case "HttpApi":
		ev.HTTPAPI = &HTTPAPIEvent{}
		target = ev.HTTPAPI
	case "Schedule", "ScheduleV2":
		ev.Schedule = &ScheduleEvent{}
		target = ev.Schedule
	case "SQS":
		ev.SQS = &SQSEvent{}
		target = ev.SQS
	case "DynamoDB":
		ev.DynamoDB = &DynamoDBEvent{}
		target = ev.DynamoDB
	default:
		return nil, fmt.Errorf("event type %s is not supported by the local stack", typ.Value)
	}
	if err := strictDecode(props, target); err != nil {
		return nil, err
	}
	if ev.Schedule != nil {
		if (typ.Value == "Schedule") != (ev.Schedule.Schedule != "") || ev.Schedule.Expression() == "" {
			return nil, fmt.Errorf("%s event needs its own expression property", typ.Value)
		}
	}
	return ev, nil
}

// mergeGlobals applies Globals.Function to a function's properties the way SAM does:
// maps merge recursively, lists are the global entries followed by the function's, and
// a scalar set on the function wins.
func mergeGlobals(global, local *yaml.Node) *yaml.Node {
	if global.Kind != local.Kind {
		return local
	}
	switch local.Kind {
	case yaml.MappingNode:
		out := &yaml.Node{Kind: yaml.MappingNode, Tag: local.Tag, Line: local.Line}
		out.Content = append(out.Content, local.Content...)
		for i := 0; i < len(global.Content); i += 2 {
			k, gv := global.Content[i], global.Content[i+1]
			if idx := mapIndex(out, k.Value); idx >= 0 {
				out.Content[idx+1] = mergeGlobals(gv, out.Content[idx+1])
			} else {
				out.Content = append(out.Content, k, gv)
			}
		}
		return out
	case yaml.SequenceNode:
		out := &yaml.Node{Kind: yaml.SequenceNode, Tag: local.Tag, Line: local.Line}
		out.Content = append(append(out.Content, global.Content...), local.Content...)
		return out
	}
	return local
}

// strictDecode decodes n into v and fails on unknown fields, which yaml.v3 only offers
// on a Decoder, hence the round trip through bytes.
func strictDecode(n *yaml.Node, v any) error {
	b, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w (near line %d)", err, n.Line)
	}
	return nil
}

// forbidIntrinsics refuses intrinsics in a subtree whose model has no Value fields, so a
// !Ref there is an error instead of being read as a literal name.
func forbidIntrinsics(n *yaml.Node) error {
	if strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!") {
		return fmt.Errorf("line %d: intrinsic %s is not supported here by the local stack", n.Line, n.Tag)
	}
	for i, c := range n.Content {
		if n.Kind == yaml.MappingNode && i%2 == 0 && (c.Value == "Ref" || strings.HasPrefix(c.Value, "Fn::")) {
			return fmt.Errorf("line %d: intrinsic %s is not supported here by the local stack", c.Line, c.Value)
		}
		if err := forbidIntrinsics(c); err != nil {
			return err
		}
	}
	return nil
}

// checkReferences walks the whole template and fails on a Ref, GetAtt or Sub variable
// that names no parameter, pseudo parameter or resource, or an attribute the resource
// type does not have.
func (t *Template) checkReferences() error {
	var errs []error
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		if v, err := parseValue(n); err == nil && v.kind != literalValue {
			for _, r := range v.references() {
				if err := t.checkReference(r); err != nil {
					errs = append(errs, fmt.Errorf("%s (line %d): %w", path, n.Line, err))
				}
			}
			return
		} else if err != nil && (n.Kind == yaml.ScalarNode || isIntrinsicMap(n) || isCustomTag(n.Tag)) {
			errs = append(errs, fmt.Errorf("%s: %w", path, err))
			return
		}
		for i, c := range n.Content {
			p := path
			if n.Kind == yaml.MappingNode {
				if i%2 == 0 {
					continue
				}
				p = path + "." + n.Content[i-1].Value
			} else if n.Kind == yaml.SequenceNode {
				p = path + "[" + strconv.Itoa(i) + "]"
			}
			walk(c, p)
		}
	}
	for _, section := range []string{"Globals", "Resources", "Outputs"} {
		if n := mapGet(t.root, section); n != nil {
			walk(n, section)
		}
	}
	return errors.Join(errs...)
}

func (t *Template) checkReference(r string) error {
	if name, ok := strings.CutPrefix(r, conditionRef); ok {
		if _, ok := t.Conditions[name]; !ok {
			return fmt.Errorf("If %s: no condition of that name", name)
		}
		return nil
	}
	if res, attr, ok := strings.Cut(r, "."); ok {
		typ, exists := t.Types[res]
		if !exists {
			return fmt.Errorf("GetAtt %s: no resource %s", r, res)
		}
		for _, a := range attributes[typ] {
			if a == attr {
				return nil
			}
		}
		return fmt.Errorf("GetAtt %s: %s has no attribute %s", r, typ, attr)
	}
	if _, ok := t.Parameters[r]; ok || pseudoParameters[r] {
		return nil
	}
	if _, ok := t.Types[r]; ok {
		return nil
	}
	return fmt.Errorf("Ref %s: no parameter or resource of that name", r)
}

// ParameterValue returns a parameter's value: the override if given, else its default.
func (t *Template) ParameterValue(name string, overrides map[string]string) (string, error) {
	p, ok := t.Parameters[name]
	if !ok {
		return "", fmt.Errorf("samtemplate: no parameter %s", name)
	}
	if v, ok := overrides[name]; ok {
		return v, nil
	}
	if p.Default == nil {
		return "", fmt.Errorf("samtemplate: parameter %s has no default and no value was given", name)
	}
	return *p.Default, nil
}

// FunctionIDs returns the logical ids of the functions, sorted.
func (t *Template) FunctionIDs() []string {
	ids := make([]string, 0, len(t.Functions))
	for id := range t.Functions {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

func isCustomTag(tag string) bool {
	return strings.HasPrefix(tag, "!") && !strings.HasPrefix(tag, "!!")
}

func isIntrinsicMap(n *yaml.Node) bool {
	return n.Kind == yaml.MappingNode && len(n.Content) == 2 &&
		(n.Content[0].Value == "Ref" || strings.HasPrefix(n.Content[0].Value, "Fn::"))
}

func mapIndex(m *yaml.Node, key string) int {
	if m == nil || m.Kind != yaml.MappingNode {
		return -1
	}
	for i := 0; i < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return i
		}
	}
	return -1
}

func mapGet(m *yaml.Node, key string) *yaml.Node {
	if i := mapIndex(m, key); i >= 0 {
		return m.Content[i+1]
	}
	return nil
}

func mapWithout(m *yaml.Node, key string) *yaml.Node {
	out := &yaml.Node{Kind: yaml.MappingNode, Line: m.Line}
	for i := 0; i < len(m.Content); i += 2 {
		if m.Content[i].Value != key {
			out.Content = append(out.Content, m.Content[i], m.Content[i+1])
		}
	}
	return out
}
