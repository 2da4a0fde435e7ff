package dynamo_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"minipush"
	"minipush/internal/dynamo"
)

// mustClaim writes owner's claim of openID, as send does before it calls WeChat.
func mustClaim(t *testing.T, db *dynamo.DB, clk *clock, runKey, openID, owner, channel string) {
	t.Helper()
	if _, err := db.CreateDelivery(t.Context(), minipush.Delivery{RunKey: runKey, OpenID: openID, State: minipush.DeliverySending,
		Owner: owner, LeaseUntil: clk.Now().Add(time.Minute), GrantID: "g-" + openID, Channel: channel,
		ExpiresAt: clk.Now().Add(time.Hour)}); err != nil {
		t.Fatalf("claim: %v", err)
	}
}

// sentRec is a record of openID's sent message, as send's flush makes it.
func sentRec(clk *clock, runKey, openID, msgID string) minipush.SentRecord {
	return minipush.SentRecord{RunKey: runKey, OpenID: openID, MsgID: msgID, At: clk.Now(), ExpiresAt: clk.Now().Add(time.Hour)}
}

// listAll walks a listing to its end, failing on a cursor that never ends.
func listAll(t *testing.T, db *dynamo.DB, campaign string, outcome minipush.Outcome, limit int) []minipush.Delivery {
	t.Helper()
	var got []minipush.Delivery
	cursor := ""
	for range 1000 {
		dls, next, err := db.ListDeliveries(t.Context(), campaign, 1, outcome, limit, cursor)
		if err != nil {
			t.Fatalf("list %q: %v", outcome, err)
		}
		got = append(got, dls...)
		if next == "" {
			return got
		}
		cursor = next
	}
	t.Fatalf("list %q by %d: cursor never ends", outcome, limit)
	return nil
}

// byOpenID indexes a listing, failing when a delivery appears twice or a log item is
// listed as a delivery.
func byOpenID(t *testing.T, dls []minipush.Delivery) map[string]minipush.Delivery {
	t.Helper()
	out := map[string]minipush.Delivery{}
	for _, d := range dls {
		if strings.HasPrefix(d.OpenID, "~") {
			t.Fatalf("a sent log item listed as a delivery: %q", d.OpenID)
		}
		if _, dup := out[d.OpenID]; dup {
			t.Fatalf("%s listed twice", d.OpenID)
		}
		out[d.OpenID] = d
	}
	return out
}

// sameShard returns n openids of one delivery shard, so that their claims and the
// sent log items naming them share a partition.
func sameShard(prefix string, n int) []string {
	var out []string
	want := -1
	for i := 0; len(out) < n; i++ {
		id := fmt.Sprintf("%s%06d", prefix, i)
		s := minipush.DeliveryShard(id)
		if want < 0 {
			want = s
		}
		if s == want {
			out = append(out, id)
		}
	}
	return out
}

// TestSentLogFold: a claim its owner's sent log names is final, sent, for every reader
// of deliveries (send's redelivery check, the claim race, the operator's listing, the
// completion recount); a log of another owner names nothing of this claim's, and a
// final item wins over a log.
func TestSentLogFold(t *testing.T) {
	t.Parallel()
	db, _, clk := MustDB(t)
	ctx := t.Context()
	rk := minipush.RunKey("c", 1)
	const (
		logged   = "uLogged"   // a's claim, named by a's log
		cs       = "uCS"       // a's customer-service claim, named by a's log
		fellBack = "uFellBack" // a's claim after a refused customer-service attempt, logged
		unlogged = "uUnlogged" // a's claim, in no log
		other    = "uOther"    // b's claim, named only by a's log
		taken    = "uTaken"    // a's claim taken over as unknown, then named by a's log
		failed   = "uFailed"   // a's claim finished failed
		direct   = "uDirect"   // a's claim finished sent by its own write
	)
	for _, u := range []string{logged, fellBack, unlogged, taken, failed, direct} {
		mustClaim(t, db, clk, rk, u, "a", string(minipush.MessageSubscribe))
	}
	mustClaim(t, db, clk, rk, cs, "a", minipush.ChannelCustomerService)
	mustClaim(t, db, clk, rk, other, "b", string(minipush.MessageSubscribe))
	if err := db.FallBackDelivery(ctx, rk, fellBack, "a", string(minipush.MessageSubscribe), "window_closed"); err != nil {
		t.Fatal(err)
	}
	if err := db.FinishDelivery(ctx, rk, failed, "a", time.Time{}, minipush.OutcomeFailed, "user_refused", 43101, "", ""); err != nil {
		t.Fatal(err)
	}
	if err := db.FinishDelivery(ctx, rk, direct, "a", time.Time{}, minipush.OutcomeSent, "", 0, "m-direct", ""); err != nil {
		t.Fatal(err)
	}
	// The lost-sender takeover (send's resolve) names the claim's lease; the log that
	// appears after it must not undo it.
	if err := db.FinishDelivery(ctx, rk, taken, "a", clk.Now().Add(time.Minute), minipush.OutcomeUnknown, "sender_lost", 0, "", ""); err != nil {
		t.Fatal(err)
	}
	clk.Add(3 * time.Second)
	sentAt := clk.Now()
	if err := db.RecordSent(ctx, "a", 0, []minipush.SentRecord{
		sentRec(clk, rk, logged, "m-logged"), sentRec(clk, rk, cs, "m-cs"), sentRec(clk, rk, fellBack, "m-fb"),
		sentRec(clk, rk, other, "m-other"), sentRec(clk, rk, taken, "m-taken"),
	}); err != nil {
		t.Fatal(err)
	}
	all := []string{logged, cs, fellBack, unlogged, other, taken, failed, direct}
	isSent := func(d minipush.Delivery, msgID string) bool {
		return d.State == minipush.DeliveryFinal && d.Outcome == minipush.OutcomeSent && d.MsgID == msgID &&
			d.UpdatedAt.Equal(sentAt) && d.LeaseUntil.IsZero()
	}
	isClaim := func(d minipush.Delivery, owner string) bool {
		return d.State == minipush.DeliverySending && d.Outcome == "" && d.Owner == owner
	}
	// checkSent asserts what every reader must show for the sent recipients, check for
	// each recipient.
	checkSent := func(t *testing.T, got map[string]minipush.Delivery) {
		t.Helper()
		for u, msgID := range map[string]string{logged: "m-logged", cs: "m-cs", fellBack: "m-fb"} {
			if d := got[u]; !isSent(d, msgID) {
				t.Errorf("%s: %+v, want final sent with msgid %s at %v", u, d, msgID, sentAt)
			}
		}
		if d := got[direct]; d.State != minipush.DeliveryFinal || d.Outcome != minipush.OutcomeSent || d.MsgID != "m-direct" {
			t.Errorf("sent by its own write: %+v", d)
		}
	}
	check := func(t *testing.T, got map[string]minipush.Delivery) {
		t.Helper()
		checkSent(t, got)
		if d := got[unlogged]; !isClaim(d, "a") {
			t.Errorf("unlogged claim: %+v, want a's claim still sending", d)
		}
		if d := got[other]; !isClaim(d, "b") {
			t.Errorf("b's claim named by a's log: %+v, want b's claim still sending (the fold is per owner)", d)
		}
		if d := got[taken]; d.Outcome != minipush.OutcomeUnknown || d.Reason != "sender_lost" || d.MsgID != "" {
			t.Errorf("claim taken over, then logged: %+v, want unknown/sender_lost (a final item wins)", d)
		}
		if d := got[failed]; d.Outcome != minipush.OutcomeFailed || d.Reason != "user_refused" {
			t.Errorf("failed: %+v", d)
		}
	}

	t.Run("Deliveries", func(t *testing.T) {
		got, err := db.Deliveries(ctx, rk, append(all, "uNobody"))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(all) {
			t.Errorf("Deliveries found %d, want %d", len(got), len(all))
		}
		check(t, got)
	})
	t.Run("CreateDeliveryConflict", func(t *testing.T) {
		got := map[string]minipush.Delivery{}
		for _, u := range all {
			was, err := db.CreateDelivery(ctx, minipush.Delivery{RunKey: rk, OpenID: u, State: minipush.DeliverySending, Owner: "c",
				LeaseUntil: clk.Now().Add(time.Minute), ExpiresAt: clk.Now().Add(time.Hour)})
			if minipush.ErrorCode(err) != minipush.ECONFLICT {
				t.Fatalf("claim of %s over an existing item: %v, want ECONFLICT", u, err)
			}
			got[u] = was
		}
		check(t, got)
	})
	t.Run("ListAll", func(t *testing.T) {
		got := byOpenID(t, listAll(t, db, "c", "", 3))
		if len(got) != len(all) {
			t.Errorf("listed %d deliveries, want %d", len(got), len(all))
		}
		check(t, got)
	})
	t.Run("ListSent", func(t *testing.T) {
		got := byOpenID(t, listAll(t, db, "c", minipush.OutcomeSent, 2))
		if len(got) != 4 {
			t.Errorf("listed %d sent (%v), want %s, %s, %s and %s", len(got), keys(got), logged, cs, fellBack, direct)
		}
		checkSent(t, got)
	})
	t.Run("ListFailedAndUnknown", func(t *testing.T) {
		if got := byOpenID(t, listAll(t, db, "c", minipush.OutcomeFailed, 2)); len(got) != 1 || got[failed].Reason != "user_refused" {
			t.Errorf("failed listing %v, want only %s", keys(got), failed)
		}
		if got := byOpenID(t, listAll(t, db, "c", minipush.OutcomeUnknown, 2)); len(got) != 1 || got[taken].Reason != "sender_lost" {
			t.Errorf("unknown listing %v, want only %s", keys(got), taken)
		}
	})
	t.Run("CountOutcomes", func(t *testing.T) {
		c, err := db.CountOutcomes(ctx, "c", 1)
		if err != nil {
			t.Fatal(err)
		}
		// The claim on the customer-service channel saved a grant; the fallen-back one
		// counts its fallback: a logged claim carries its channel like a final item.
		if c.Sent != 4 || c.Unknown != 1 || c.Failed["user_refused"] != 1 || c.Final() != 6 || c.GrantsSaved != 1 || c.CSFallbacks != 1 {
			t.Errorf("CountOutcomes = %+v, want 4 sent (once each), 1 unknown, 1 failed, 1 grant saved, 1 fallback", c)
		}
	})
}

// TestSentLogPaging: a shard's sent log items sort after its deliveries; a listing by
// small pages walks past them without listing them and ends with an empty cursor,
// each delivery listed once.
func TestSentLogPaging(t *testing.T) {
	t.Parallel()
	db, _, clk := MustDB(t)
	ctx := t.Context()
	rk := minipush.RunKey("c", 1)
	ids := sameShard("p", 7)
	for _, u := range ids {
		mustClaim(t, db, clk, rk, u, "a", string(minipush.MessageSubscribe))
	}
	// a's logs (two flushes) name the first four; b's log, of recipients without an
	// item here, adds log items of another owner at the shard's end.
	if err := db.RecordSent(ctx, "a", 0, []minipush.SentRecord{sentRec(clk, rk, ids[0], "m0"), sentRec(clk, rk, ids[1], "m1")}); err != nil {
		t.Fatal(err)
	}
	if err := db.RecordSent(ctx, "a", 1, []minipush.SentRecord{sentRec(clk, rk, ids[2], "m2"), sentRec(clk, rk, ids[3], "m3")}); err != nil {
		t.Fatal(err)
	}
	if err := db.RecordSent(ctx, "b", 0, []minipush.SentRecord{sentRec(clk, rk, ids[4], "mb")}); err != nil {
		t.Fatal(err)
	}
	for _, limit := range []int{1, 2, 3, 7, 100} {
		t.Run(fmt.Sprintf("All%d", limit), func(t *testing.T) {
			got := byOpenID(t, listAll(t, db, "c", "", limit))
			if len(got) != len(ids) {
				t.Fatalf("listed %v, want the %d deliveries", keys(got), len(ids))
			}
			for i, u := range ids {
				if sent := got[u].Outcome == minipush.OutcomeSent; sent != (i < 4) {
					t.Errorf("%s: %+v, want sent %v", u, got[u], i < 4)
				}
			}
		})
		t.Run(fmt.Sprintf("Sent%d", limit), func(t *testing.T) {
			got := byOpenID(t, listAll(t, db, "c", minipush.OutcomeSent, limit))
			if len(got) != 4 {
				t.Fatalf("listed %v, want the 4 logged claims", keys(got))
			}
			for i, u := range ids[:4] {
				if d := got[u]; d.MsgID != fmt.Sprintf("m%d", i) {
					t.Errorf("%s: msgid %q, want m%d", u, d.MsgID, i)
				}
			}
		})
	}
}

// TestRecordSentSplits: more records of one shard than one log item holds go into
// several parts of one log (one item could otherwise pass DynamoDB's 400 KB), each
// readable by the fold; entries naming no claim count nowhere.
func TestRecordSentSplits(t *testing.T) {
	t.Parallel()
	db, _, clk := MustDB(t)
	ctx := t.Context()
	rk := minipush.RunKey("c", 1)
	const n = 1001 // maxSentPerItem + 1
	ids := sameShard("s", n)
	claimed := []string{ids[0], ids[999], ids[1000]} // the first and last of part 0, part 1
	for _, u := range claimed {
		mustClaim(t, db, clk, rk, u, "a", string(minipush.MessageSubscribe))
	}
	recs := make([]minipush.SentRecord, 0, n)
	for i, u := range ids {
		recs = append(recs, sentRec(clk, rk, u, fmt.Sprintf("m%d", i)))
	}
	if err := db.RecordSent(ctx, "a", 3, recs); err != nil {
		t.Fatal(err)
	}
	out, err := db.Client.Query(ctx, &dynamodb.QueryInput{
		TableName:              aws.String(db.Tables.Deliveries),
		KeyConditionExpression: aws.String("pk = :pk AND begins_with(sk, :p)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": &types.AttributeValueMemberS{Value: minipush.DeliveryPartition(rk, minipush.DeliveryShard(ids[0]))},
			":p":  &types.AttributeValueMemberS{Value: "~sent#a#3#"},
		},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		t.Fatal(err)
	}
	entries := map[string]int{}
	for _, it := range out.Items {
		sk := it["sk"].(*types.AttributeValueMemberS).Value
		entries[sk] = len(it["sent"].(*types.AttributeValueMemberM).Value)
	}
	if len(entries) != 2 || entries["~sent#a#3#0"] != 1000 || entries["~sent#a#3#1"] != 1 {
		t.Fatalf("log items %v, want parts 0 and 1 of 1000 and 1 entries", entries)
	}
	got, err := db.Deliveries(ctx, rk, claimed)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 999, 1000} {
		if d := got[ids[i]]; d.Outcome != minipush.OutcomeSent || d.MsgID != fmt.Sprintf("m%d", i) {
			t.Errorf("record %d: %+v, want sent with msgid m%d", i, d, i)
		}
	}
	if c, err := db.CountOutcomes(ctx, "c", 1); err != nil || c.Sent != len(claimed) || c.Final() != len(claimed) {
		t.Errorf("CountOutcomes = %+v, %v; want %d sent: a log entry without its claim counts nowhere", c, err, len(claimed))
	}
	if got := byOpenID(t, listAll(t, db, "c", minipush.OutcomeSent, 2)); len(got) != len(claimed) {
		t.Errorf("sent listing %d, want %d", len(got), len(claimed))
	}
}

func keys(m map[string]minipush.Delivery) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestSentLogFoldManyOwners: claims of one shard held by more than foldOwners (4)
// senders, as on a listing page or a batch read across many invocations, fold through
// one Query of all the shard's logs instead of one per owner; each claim is still made
// final by its own owner's entry only: another owner's entry for the same openid
// leaves it a claim (entries are keyed by owner), and an unlogged claim stays open.
func TestSentLogFoldManyOwners(t *testing.T) {
	t.Parallel()
	db, api, clk := MustDB(t)
	ctx := t.Context()
	rk := minipush.RunKey("c", 1)
	const owners = 6
	ids := sameShard("w", owners+2)
	crossed, unlogged := ids[owners], ids[owners+1] // o0's claim named by o1's log; o5's claim in no log
	for i := range owners {
		o := fmt.Sprintf("o%d", i)
		mustClaim(t, db, clk, rk, ids[i], o, string(minipush.MessageSubscribe))
		if err := db.RecordSent(ctx, o, 0, []minipush.SentRecord{sentRec(clk, rk, ids[i], fmt.Sprintf("m%d", i))}); err != nil {
			t.Fatal(err)
		}
	}
	mustClaim(t, db, clk, rk, crossed, "o0", string(minipush.MessageSubscribe))
	mustClaim(t, db, clk, rk, unlogged, "o5", string(minipush.MessageSubscribe))
	if err := db.RecordSent(ctx, "o1", 1, []minipush.SentRecord{sentRec(clk, rk, crossed, "m-crossed")}); err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T, got map[string]minipush.Delivery) {
		t.Helper()
		for i := range owners {
			if d := got[ids[i]]; d.State != minipush.DeliveryFinal || d.Outcome != minipush.OutcomeSent || d.MsgID != fmt.Sprintf("m%d", i) {
				t.Errorf("o%d's logged claim: %+v, want sent with msgid m%d", i, d, i)
			}
		}
		if d := got[crossed]; d.State != minipush.DeliverySending || d.Owner != "o0" || d.Outcome != "" {
			t.Errorf("o0's claim named by o1's log: %+v, want o0's claim still sending", d)
		}
		if d := got[unlogged]; d.State != minipush.DeliverySending || d.Owner != "o5" {
			t.Errorf("unlogged claim: %+v, want o5's claim still sending", d)
		}
	}
	t.Run("Deliveries", func(t *testing.T) {
		before := api.queries.Load()
		got, err := db.Deliveries(ctx, rk, ids)
		if err != nil {
			t.Fatal(err)
		}
		check(t, got)
		// One Query of the shard's logs, not one per owner (6 here).
		if n := api.queries.Load() - before; n != 1 {
			t.Errorf("Deliveries of one shard with %d owners made %d Queries, want 1", owners, n)
		}
	})
	t.Run("ListAll", func(t *testing.T) {
		got := byOpenID(t, listAll(t, db, "c", "", minipush.MaxListLimit))
		if len(got) != len(ids) {
			t.Errorf("listed %v, want the %d deliveries", keys(got), len(ids))
		}
		check(t, got)
	})
	t.Run("ListSent", func(t *testing.T) {
		got := byOpenID(t, listAll(t, db, "c", minipush.OutcomeSent, minipush.MaxListLimit))
		if len(got) != owners {
			t.Errorf("listed %v as sent, want the %d logged by their owners", keys(got), owners)
		}
		if _, ok := got[crossed]; ok {
			t.Errorf("o0's claim listed sent by o1's log")
		}
	})
}
