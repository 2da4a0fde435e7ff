package samtemplate

import (
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func repoTemplate(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "template.yaml")
}

func TestParseRepoTemplate(t *testing.T) {
	t.Parallel()
	tpl, err := ReadFile(repoTemplate(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Run("GlobalsApplied", func(t *testing.T) {
		for _, id := range tpl.FunctionIDs() {
			f := tpl.Functions[id]
			if f.Runtime != "provided.al2023" || len(f.Architectures) != 1 || f.Architectures[0] != "arm64" {
				t.Errorf("%s: runtime %q arch %v, want provided.al2023 arm64 from Globals", id, f.Runtime, f.Architectures)
			}
			if _, ok := f.Environment.Variables["GRANTS_TABLE"]; !ok {
				t.Errorf("%s: GRANTS_TABLE from Globals missing", id)
			}
		}
		if got := tpl.Functions["SendFunction"].Timeout.Literal; got != "60" {
			t.Errorf("SendFunction timeout %q: the function's own value must win over Globals", got)
		}
		if _, ok := tpl.Functions["SendFunction"].Environment.Variables["SEND_QUEUE_URL"]; !ok {
			t.Error("SendFunction lost its own variables when Globals merged")
		}
	})
	t.Run("StreamFilterAndScaling", func(t *testing.T) {
		ev := tpl.Functions["ExpireFunction"].Events["Removals"].DynamoDB
		if ev == nil || ev.FilterCriteria == nil || len(ev.FilterCriteria.Filters) != 1 ||
			!strings.Contains(ev.FilterCriteria.Filters[0].Pattern, "REMOVE") {
			t.Fatalf("expire stream filter not read: %+v", ev)
		}
		sqs := tpl.Functions["SendFunction"].Events["Batches"].SQS
		if sqs == nil || sqs.ScalingConfig == nil || sqs.ScalingConfig.MaximumConcurrency.Ref != "SendMaxConcurrency" {
			t.Fatalf("send scaling config not read: %+v", sqs)
		}
		if !sqs.ReportsBatchItemFailures() {
			t.Error("send must report batch item failures")
		}
	})
	t.Run("Redrive", func(t *testing.T) {
		q := tpl.Queues["SendQueue"]
		if q.RedrivePolicy == nil || q.RedrivePolicy.DeadLetterTargetArn.GetAtt != [2]string{"SendDeadLetterQueue", "Arn"} {
			t.Fatalf("redrive policy not read: %+v", q.RedrivePolicy)
		}
	})
}

func TestParseRefuses(t *testing.T) {
	t.Parallel()
	const head = "Parameters:\n  P:\n    Type: String\n    Default: x\nResources:\n"
	tests := []struct {
		name, body, want string
	}{
		{"ErrDanglingRef", "  Q:\n    Type: AWS::SQS::Queue\n    Properties:\n      RedrivePolicy:\n        deadLetterTargetArn: !GetAtt Missing.Arn\n        maxReceiveCount: 3\n", "no resource Missing"},
		{"ErrBadAttribute", "  D:\n    Type: AWS::SQS::Queue\n  Q:\n    Type: AWS::SQS::Queue\n    Properties:\n      RedrivePolicy:\n        deadLetterTargetArn: !GetAtt D.StreamArn\n        maxReceiveCount: 3\n", "has no attribute StreamArn"},
		{"ErrDanglingSub", "  T:\n    Type: AWS::SNS::Topic\n    Properties:\n      DisplayName: !Sub \"${Nope}-x\"\n", "Ref Nope"},
		{"ErrUnknownProperty", "  Q:\n    Type: AWS::SQS::Queue\n    Properties:\n      FifoQueue: true\n", "FifoQueue"},
		{"ErrUnsupportedIntrinsic", "  T:\n    Type: AWS::SNS::Topic\n    Properties:\n      DisplayName: !Select [0, [a, b]]\n", "!Select"},
		{"ErrIfUnknownCondition", "  T:\n    Type: AWS::SNS::Topic\n    Properties:\n      DisplayName: !If [c, a, b]\n", "no condition of that name"},
		{"ErrResourceUnknownCondition", "  T:\n    Type: AWS::SNS::Topic\n    Condition: Nope\n", "no such condition"},
		{"ErrConditionalTable", "  T:\n    Type: AWS::DynamoDB::Table\n    Condition: C\nConditions:\n  C: !Equals [!Ref P, x]\n", "conditional AWS::DynamoDB::Table"},
		{"ErrConditionOnResource", "  T:\n    Type: AWS::SNS::Topic\nConditions:\n  D: !Equals [!Ref T, x]\n", "parameters only"},
		{"ErrConditionCycle", "  T:\n    Type: AWS::SNS::Topic\nConditions:\n  D: !Not [!Condition D]\n", "refers to itself"},
		{"ErrBadDeletionPolicy", "  T:\n    Type: AWS::DynamoDB::Table\n    DeletionPolicy: Keep\n", "not a CloudFormation policy"},
		{"ErrAlarmField", "  A:\n    Type: AWS::CloudWatch::Alarm\n    Properties:\n      MetricNam: Errors\n", "MetricNam"},
		{"ErrDestinationField", "  Q:\n    Type: AWS::SQS::Queue\n  F:\n    Type: AWS::Serverless::Function\n    Properties:\n      Events:\n        E:\n          Type: DynamoDB\n          Properties:\n            Stream: x\n            DestinationConfig:\n              OnFailure:\n                Destination: !GetAtt Q.Arn\n                Kind: SQS\n", "Kind"},
		{"ErrLongFormIntrinsic", "  T:\n    Type: AWS::SNS::Topic\n    Properties:\n      DisplayName:\n        Fn::Join: [\"-\", [a, b]]\n", "Fn::Join"},
		{"ErrIntrinsicInTable", "  T:\n    Type: AWS::DynamoDB::Table\n    Properties:\n      TableName: !Ref P\n", "not supported here"},
		{"ErrUnknownType", "  B:\n    Type: AWS::S3::Bucket\n", "AWS::S3::Bucket"},
		{"ErrDashboardField", "  D:\n    Type: AWS::CloudWatch::Dashboard\n    Properties:\n      DashboardBdy: x\n", "DashboardBdy"},
		{"ErrDashboardNoBody", "  D:\n    Type: AWS::CloudWatch::Dashboard\n    Properties:\n      DashboardName: x\n", "without DashboardBody"},
		{"ErrDashboardDanglingSub", "  D:\n    Type: AWS::CloudWatch::Dashboard\n    Properties:\n      DashboardBody: !Sub '{\"q\": \"${Nope.QueueName}\"}'\n", "no resource Nope"},
		{"ErrUnknownEvent", "  F:\n    Type: AWS::Serverless::Function\n    Properties:\n      Events:\n        E:\n          Type: S3\n          Properties:\n            Bucket: b\n", "event type S3"},
		{"ErrSQSEventField", "  Q:\n    Type: AWS::SQS::Queue\n  F:\n    Type: AWS::Serverless::Function\n    Properties:\n      Events:\n        E:\n          Type: SQS\n          Properties:\n            Queue: !GetAtt Q.Arn\n            ScalingConfig:\n              MaxConcurrency: 3\n", "MaxConcurrency"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(head + tc.body))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse error = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

type fakeResolver map[string]string

func (f fakeResolver) Ref(n string) (string, error) { return f[n], nil }
func (f fakeResolver) GetAtt(r, a string) (string, error) {
	return f[r+"."+a], nil
}

func TestResolveSub(t *testing.T) {
	t.Parallel()
	v := Value{Sub: "${T.Arn}/index/* in ${AWS::Region} ${!Literal}", kind: subValue}
	got, err := v.Resolve(fakeResolver{"T.Arn": "arn:t", "AWS::Region": "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "arn:t/index/* in us-east-1 ${Literal}"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// condResolver resolves parameters from a map and evaluates the template's conditions.
type condResolver struct {
	tpl    *Template
	params fakeResolver
}

func (c condResolver) Ref(n string) (string, error)        { return c.params.Ref(n) }
func (c condResolver) GetAtt(r, a string) (string, error)  { return c.params.GetAtt(r, a) }
func (c condResolver) Condition(name string) (bool, error) { return c.tpl.EvalCondition(name, c) }

func TestConditionsAndIf(t *testing.T) {
	t.Parallel()
	const src = `Parameters:
  Email:
    Type: String
    Default: ""
  Reserve:
    Type: String
    Default: "true"
Conditions:
  HasEmail: !Not [!Equals [!Ref Email, ""]]
  DoReserve:
    Fn::Equals: [!Ref Reserve, "true"]
  Both: !And [!Condition HasEmail, !Condition DoReserve]
Resources:
  Topic:
    Type: AWS::SNS::Topic
    Properties:
      DisplayName: !If [DoReserve, reserved, !Ref AWS::NoValue]
  Sub:
    Type: AWS::SNS::Subscription
    Condition: Both
    Properties:
      Protocol: email
      Endpoint: !Ref Email
      TopicArn: !Ref Topic
`
	tpl, err := Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if tpl.ResourceConditions["Sub"] != "Both" || tpl.Subscriptions["Sub"] == nil {
		t.Fatalf("conditional subscription not read: %v %+v", tpl.ResourceConditions, tpl.Subscriptions)
	}
	v, err := parseIfFromTopic(tpl)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		email, reserve string
		both           bool
		display        string
	}{
		{"", "true", false, "reserved"},
		{"a@b.c", "true", true, "reserved"},
		{"a@b.c", "false", false, ""}, // AWS::NoValue: the property is absent
	} {
		r := condResolver{tpl: tpl, params: fakeResolver{"Email": tc.email, "Reserve": tc.reserve}}
		got, err := tpl.EvalCondition("Both", r)
		if err != nil || got != tc.both {
			t.Errorf("%+v: Both = %v (%v)", tc, got, err)
		}
		if s, err := v.Resolve(r); err != nil || s != tc.display {
			t.Errorf("%+v: If = %q (%v), want %q", tc, s, err, tc.display)
		}
	}
	if _, err := v.Resolve(fakeResolver{}); err == nil {
		t.Error("If resolved without a condition resolver")
	}
}

// parseIfFromTopic reads the Topic's DisplayName back as a Value (passive resources keep
// no model of their properties).
func parseIfFromTopic(tpl *Template) (Value, error) {
	n := mapGet(mapGet(mapGet(mapGet(tpl.root, "Resources"), "Topic"), "Properties"), "DisplayName")
	return parseValue(n)
}
