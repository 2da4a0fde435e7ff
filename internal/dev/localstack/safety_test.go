package localstack_test

import (
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"minipush/internal/dev/localstack"
	"minipush/internal/dev/samtemplate"
	"minipush/internal/dev/testenv"
	"minipush/internal/dynamo"
)

// withParams returns the stack's resolver with some parameters overridden, to evaluate
// the template's conditions and values as a deployment with those parameters would.
func withParams(res *localstack.Resources, params map[string]string) *localstack.Resources {
	c := *res
	c.Parameters = maps.Clone(res.Parameters)
	maps.Copy(c.Parameters, params)
	return &c
}

func mustResolve(t *testing.T, v samtemplate.Value, r samtemplate.Resolver) string {
	t.Helper()
	s, err := v.Resolve(r)
	if err != nil {
		t.Fatalf("resolve %s: %v", v, err)
	}
	return s
}

// TestTemplateSafety holds template.yaml to its operational promises (issue 13, items
// 3, 11, 13, 14): removing any of them from the template fails a subtest.
func TestTemplateSafety(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	tpl := env.Template

	t.Run("TablesRetainedWithPITR", func(t *testing.T) {
		for id, tab := range tpl.Tables {
			if tpl.DeletionPolicies[id] != "Retain" || tpl.UpdateReplacePolicies[id] != "Retain" {
				t.Errorf("%s: DeletionPolicy %q UpdateReplacePolicy %q, want Retain: a stack delete or replacement must not drop harvested grants",
					id, tpl.DeletionPolicies[id], tpl.UpdateReplacePolicies[id])
			}
			if !tab.PITREnabled() {
				t.Errorf("%s: point-in-time recovery is off", id)
			}
		}
	})

	t.Run("QueuesEncrypted", func(t *testing.T) {
		for id, q := range tpl.Queues {
			if q.SqsManagedSseEnabled == nil || !*q.SqsManagedSseEnabled {
				t.Errorf("%s: SqsManagedSseEnabled is not true", id)
			}
		}
	})

	t.Run("LogGroupsWithRetention", func(t *testing.T) {
		used := map[string]string{}
		for _, id := range tpl.FunctionIDs() {
			ref := tpl.Functions[id].LoggingConfig.LogGroup.Ref
			lg := tpl.LogGroups[ref]
			if lg == nil {
				t.Errorf("%s: LoggingConfig.LogGroup %q is not a log group of the template (Lambda's own group keeps logs for ever)", id, ref)
				continue
			}
			if other, ok := used[ref]; ok {
				t.Errorf("%s and %s share log group %s", id, other, ref)
			}
			used[ref] = id
			if lg.RetentionInDays.Ref != "LogRetentionDays" {
				t.Errorf("%s: retention %s, want the LogRetentionDays parameter", ref, lg.RetentionInDays)
			}
			if n, err := strconv.Atoi(mustResolve(t, lg.RetentionInDays, env.Resources)); err != nil || n <= 0 {
				t.Errorf("%s: retention %q days", ref, mustResolve(t, lg.RetentionInDays, env.Resources))
			}
		}
	})

	t.Run("Alarms", func(t *testing.T) {
		// has reports whether an alarm notifying AlarmTopic watches metric (any, when
		// empty) of the resource dim names.
		has := func(namespace, metric, dim string) bool {
			for _, a := range tpl.Alarms {
				if a.Namespace != namespace || (metric != "" && a.MetricName != metric) || len(a.Dimensions) != 1 || a.Dimensions[0].Value.String() != dim {
					continue
				}
				for _, act := range a.AlarmActions {
					if act.Ref == "AlarmTopic" {
						return true
					}
				}
			}
			return false
		}
		for _, id := range tpl.FunctionIDs() {
			for _, metric := range []string{"Errors", "Throttles"} {
				if !has("AWS/Lambda", metric, "!Ref "+id) {
					t.Errorf("no alarm on %s of %s notifying AlarmTopic", metric, id)
				}
			}
		}
		for _, want := range []struct{ metric, queue string }{
			{"ApproximateAgeOfOldestMessage", "SendQueue"},
			{"", "SendDeadLetterQueue"}, // its consumer empties it: what to watch is the consumer's choice
			{"ApproximateNumberOfMessagesVisible", "ExpireFailureQueue"},
		} {
			if !has("AWS/SQS", want.metric, "!GetAtt "+want.queue+".QueueName") {
				t.Errorf("no alarm on %s of %s notifying AlarmTopic", want.metric, want.queue)
			}
		}
	})

	t.Run("AlarmEmail", func(t *testing.T) {
		var sub *samtemplate.Subscription
		for _, s := range tpl.Subscriptions {
			if s.TopicArn.Ref == "AlarmTopic" && s.Protocol == "email" && s.Endpoint.Ref == "AlarmEmail" {
				sub = s
			}
		}
		if sub == nil {
			t.Fatal("no e-mail subscription of AlarmEmail to AlarmTopic")
		}
		cond := tpl.ResourceConditions[sub.LogicalID]
		for _, tc := range []struct {
			email string
			want  bool
		}{{"", false}, {"ops@example.com", true}} {
			got, err := tpl.EvalCondition(cond, withParams(env.Resources, map[string]string{"AlarmEmail": tc.email}))
			if err != nil || got != tc.want {
				t.Errorf("AlarmEmail %q: subscription condition %q = %v (%v), want %v", tc.email, cond, got, err, tc.want)
			}
		}
	})

	t.Run("ExpireFailureDestination", func(t *testing.T) {
		f := tpl.Functions["ExpireFunction"]
		ev := f.Events["Removals"].DynamoDB
		if ev.DestinationConfig == nil || ev.DestinationConfig.OnFailure.Type != "SQS" ||
			ev.DestinationConfig.OnFailure.Destination.GetAtt != [2]string{"ExpireFailureQueue", "Arn"} {
			t.Fatalf("expire's stream mapping has no SQS on-failure destination: %+v", ev.DestinationConfig)
		}
		var replay *samtemplate.SQSEvent
		for _, e := range f.Events {
			if e.SQS != nil && e.SQS.Queue.GetAtt == [2]string{"ExpireFailureQueue", "Arn"} {
				replay = e.SQS
			}
		}
		if replay == nil {
			t.Fatal("nothing replays ExpireFailureQueue")
		}
		for param, want := range map[string]bool{"": false, "false": false, "true": true} {
			r := env.Resources
			if param != "" {
				r = withParams(r, map[string]string{"ExpireReplayEnabled": param})
			}
			if on, err := samtemplate.MappingEnabled(replay.Enabled, r); err != nil || on != want {
				t.Errorf("ExpireReplayEnabled %q: replay mapping enabled = %v (%v), want %v (off until the operator fixed the cause)", param, on, err, want)
			}
		}
	})

	t.Run("Concurrency", func(t *testing.T) {
		reserved := func(r *localstack.Resources, id string) int {
			s := mustResolve(t, tpl.Functions[id].ReservedConcurrentExecutions, r)
			if s == "" {
				return 0
			}
			n, err := strconv.Atoi(s)
			if err != nil {
				t.Fatalf("%s: reserved concurrency %q", id, s)
			}
			return n
		}
		for _, params := range []map[string]string{nil, {"SendMaxConcurrency": "40"}} {
			r := withParams(env.Resources, params)
			sendMax, _ := strconv.Atoi(r.Parameters["SendMaxConcurrency"])
			if got := reserved(r, "SendFunction"); got < sendMax {
				t.Errorf("send reserves %d < SendMaxConcurrency %d: the mapping's instances would be throttled", got, sendMax)
			}
		}
		// send, plan and expire keep capacity whatever collect does; collect and admin are
		// capped by theirs.
		for _, id := range []string{"SendFunction", "PlanFunction", "ExpireFunction", "CollectFunction", "AdminFunction"} {
			if n := reserved(env.Resources, id); n <= 0 {
				t.Errorf("%s reserves no concurrency: a login flood could take its capacity", id)
			}
		}
		sum := 0
		for _, id := range tpl.FunctionIDs() {
			sum += reserved(env.Resources, id)
		}
		// The parameter's description states the account limit the defaults need.
		if d := tpl.Parameters["UseReservedConcurrency"].Description; !strings.Contains(d, strconv.Itoa(100+sum)) {
			t.Errorf("UseReservedConcurrency's description does not state the %d (100 + %d reserved) the defaults need: %q", 100+sum, sum, d)
		}
		off := withParams(env.Resources, map[string]string{"UseReservedConcurrency": "false"})
		for _, id := range tpl.FunctionIDs() {
			if n := reserved(off, id); n != 0 {
				t.Errorf("UseReservedConcurrency=false: %s still reserves %d", id, n)
			}
		}
	})

	t.Run("StageThrottling", func(t *testing.T) {
		api := tpl.HTTPAPI["HttpApi"]
		if api == nil || api.DefaultRouteSettings == nil ||
			!api.DefaultRouteSettings.ThrottlingRateLimit.IsSet() || !api.DefaultRouteSettings.ThrottlingBurstLimit.IsSet() {
			t.Fatal("the HTTP API stage has no default throttling")
		}
		rs := tpl.Functions["CollectFunction"].Events["Session"].HTTPAPI.RouteSettings
		if rs == nil || !rs.ThrottlingRateLimit.IsSet() || !rs.ThrottlingBurstLimit.IsSet() {
			t.Fatal("POST /v1/session has no route throttling of its own")
		}
		num := func(v samtemplate.Value) float64 {
			f, err := strconv.ParseFloat(mustResolve(t, v, env.Resources), 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
		if num(rs.ThrottlingRateLimit) > num(api.DefaultRouteSettings.ThrottlingRateLimit) {
			t.Error("POST /v1/session is throttled more loosely than the default route")
		}
	})

	t.Run("TokenItemsDenied", func(t *testing.T) {
		// The real key of a token item, written by the code that writes it.
		db := dynamo.New(env.DynamoDB, dynamo.Tables{State: env.Table("StateTable")})
		if err := db.PutToken(t.Context(), "wxdenied", "o", "secret-token", time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		out, err := env.DynamoDB.Scan(t.Context(), &dynamodb.ScanInput{TableName: aws.String(env.Table("StateTable"))})
		if err != nil {
			t.Fatal(err)
		}
		var tokenPK string
		for _, it := range out.Items {
			if _, ok := it["accessToken"]; ok {
				tokenPK = it["pk"].(*ddbtypes.AttributeValueMemberS).Value
			}
		}
		if tokenPK == "" {
			t.Fatal("token item not found")
		}
		for _, id := range []string{"CollectFunction", "AdminFunction"} {
			denied, scans := false, false
			for _, p := range tpl.Functions[id].Policies {
				for _, st := range p.Statement {
					onState := slices.ContainsFunc(st.Resource, func(v samtemplate.Value) bool { return v.GetAtt == [2]string{"StateTable", "Arn"} })
					if !onState {
						continue
					}
					if st.Effect == "Allow" && (slices.Contains(st.Action, "dynamodb:Scan") || slices.ContainsFunc(st.Action, func(a string) bool { return strings.Contains(a, "PartiQL") })) {
						scans = true // a Scan carries no leading key, so no LeadingKeys Deny applies to it
					}
					if st.Effect != "Deny" || !slices.Contains(st.Action, "dynamodb:*") {
						continue
					}
					for _, pat := range st.Condition["ForAnyValue:StringLike"]["dynamodb:LeadingKeys"] {
						if stringLike(pat, tokenPK) {
							denied = true
						}
					}
				}
			}
			if !denied {
				t.Errorf("%s: no Deny of dynamodb:* on the state table for leading keys like %q (the access tokens)", id, tokenPK)
			}
			if scans {
				t.Errorf("%s may Scan the state table, which reads the token items past the LeadingKeys Deny", id)
			}
		}
	})

	t.Run("RecountMayQueryDeliveries", func(t *testing.T) {
		// Reconcile (dynamo's CountOutcomes) queries the deliveries table shard by shard;
		// each function that finishes runs calls it. DynamoDB Local checks no IAM, so only
		// this test sees an AccessDenied that AWS would answer.
		for _, id := range []string{"SendFunction", "PlanFunction", "DeadLetterFunction", "AdminFunction"} {
			allowed := false
			for _, p := range tpl.Functions[id].Policies {
				for _, st := range p.Statement {
					if st.Effect != "Allow" || !slices.Contains(st.Action, "dynamodb:Query") {
						continue
					}
					for _, r := range st.Resource {
						if r.GetAtt == [2]string{"DeliveriesTable", "Arn"} {
							allowed = true
						}
					}
				}
			}
			if !allowed {
				t.Errorf("%s may not Query DeliveriesTable, which its run recount reads", id)
			}
		}
	})

	t.Run("NoUnusedDeletes", func(t *testing.T) {
		deletes := func(id string) map[string]bool {
			out := map[string]bool{}
			for _, p := range tpl.Functions[id].Policies {
				for _, st := range p.Statement {
					if st.Effect != "Allow" {
						continue
					}
					for _, a := range st.Action {
						if a == "dynamodb:DeleteItem" || a == "dynamodb:BatchWriteItem" {
							for _, r := range st.Resource {
								out[r.GetAtt[0]+r.Sub] = true
							}
						}
					}
				}
			}
			return out
		}
		// collect deletes grants (a template reject); admin writes audience pages with
		// BatchWriteItem and Idempotency-Key records in the state table, and a test send
		// (send's recipient path) deletes its own claim and spends or drops grants.
		for id, allowed := range map[string][]string{
			"CollectFunction": {"GrantsTable", "${GrantsTable.Arn}/index/*"},
			"AdminFunction":   {"AudienceTable", "StateTable", "DeliveriesTable", "GrantsTable"},
		} {
			for res := range deletes(id) {
				if !slices.Contains(allowed, res) {
					t.Errorf("%s may delete from %s, which it never does", id, res)
				}
			}
		}
	})
}

// stringLike is IAM's StringLike: * matches any run of characters, ? any one.
func stringLike(pattern, s string) bool {
	re := "^" + strings.NewReplacer(`\*`, ".*", `\?`, ".").Replace(regexp.QuoteMeta(pattern)) + "$"
	return regexp.MustCompile(re).MatchString(s)
}
