package expire_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"minipush"
	"minipush/internal/dev/localstack"
	"minipush/internal/dev/testenv"
	"minipush/internal/dynamo"
	"minipush/internal/expire"
	"minipush/internal/lambdaenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const app = "wxapp"

// clock is a test clock moved by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// world is one test's local stack: storage on a test clock, the grants stream as the
// expire mapping filters it, the TTL reaper and the handler.
type world struct {
	env    *testenv.Env
	clk    *clock
	db     *dynamo.DB
	stream *localstack.StreamReader
	reaper *localstack.Reaper
	h      *expire.Handler
}

func mustWorld(t *testing.T, api func(dynamo.API) dynamo.API) *world {
	t.Helper()
	env := testenv.New(t)
	clk := &clock{t: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)}
	var client dynamo.API = env.DynamoDB
	if api != nil {
		client = api(client)
	}
	db := dynamo.New(client, dynamo.Tables{
		Grants: env.Table("GrantsTable"), Users: env.Table("UsersTable"), Campaigns: env.Table("CampaignsTable"),
		Audience: env.Table("AudienceTable"), Deliveries: env.Table("DeliveriesTable"), State: env.Table("StateTable"),
	})
	db.Now = clk.Now
	fn := env.Template.Functions["ExpireFunction"]
	if fn == nil {
		t.Fatal("template has no ExpireFunction")
	}
	stream, err := localstack.NewStreamReader(env.Streams, env.StreamARNs["GrantsTable"], []string{`{"eventName":["REMOVE"]}`})
	if err != nil {
		t.Fatal(err)
	}
	h := expire.New(db, nil)
	h.Now = clk.Now
	return &world{
		env: env, clk: clk, db: db, stream: stream,
		reaper: localstack.NewReaper(env.DynamoDB, env.Template, env.Resources, clk.Now),
		h:      h,
	}
}

func grant(openID string, kind minipush.GrantKind, value string, expires time.Time) minipush.Grant {
	return minipush.Grant{
		AppID: app, OpenID: openID, Kind: kind, ID: minipush.GrantID(kind, value), Value: value,
		Uses: kind.Uses(), CollectedAt: expires.Add(-minipush.FormGrantValidity), ExpiresAt: expires,
	}
}

func (w *world) mustAdd(t *testing.T, openID string, grants ...minipush.Grant) {
	t.Helper()
	st, err := w.db.AddGrants(t.Context(), app, openID, grants, minipush.DefaultMaxLiveGrants)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range st {
		if s != minipush.AddAccepted {
			t.Fatalf("grant %d: %s", i, s)
		}
	}
}

// mustReap runs the reaper and returns how many items it deleted.
func (w *world) mustReap(t *testing.T) int {
	t.Helper()
	n, err := w.reaper.RunOnce(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// mustRecords returns the REMOVE records that arrived since the last call.
func (w *world) mustRecords(t *testing.T) []events.DynamoDBEventRecord {
	t.Helper()
	recs, err := w.stream.Next(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// mustFeed hands recs to the handler as one batch and fails on any reported failure.
func (w *world) mustFeed(t *testing.T, recs []events.DynamoDBEventRecord) {
	t.Helper()
	resp, err := w.h.Handle(t.Context(), events.DynamoDBEvent{Records: recs})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.BatchItemFailures) > 0 {
		t.Fatalf("batch item failures: %v", resp.BatchItemFailures)
	}
}

func (w *world) mustUser(t *testing.T, openID string) minipush.User {
	t.Helper()
	u, err := w.db.GetUser(t.Context(), app, openID)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func (w *world) mustInventory(t *testing.T) minipush.GrantInventory {
	t.Helper()
	inv, err := w.db.GrantInventory(t.Context(), app)
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

// expiredOn returns the expiry counts of one day of inv.
func expiredOn(t *testing.T, inv minipush.GrantInventory, day time.Time) minipush.ExpiryDay {
	t.Helper()
	want := minipush.ExpiryDayOf(day)
	for _, d := range inv.ExpiredPerDay {
		if d.Day == want {
			return d
		}
	}
	t.Fatalf("inventory has no day %s: %+v", want, inv.ExpiredPerDay)
	return minipush.ExpiryDay{}
}

func totalExpired(inv minipush.GrantInventory) int {
	n := 0
	for _, d := range inv.ExpiredPerDay {
		n += d.Total
	}
	return n
}

func checkUser(t *testing.T, u minipush.User, live int, latest time.Time) {
	t.Helper()
	if u.LiveGrants != live || !u.LatestExpiry.Equal(latest) {
		t.Errorf("user %s: live %d, latest expiry %v; want %d, %v", u.OpenID, u.LiveGrants, u.LatestExpiry, live, latest)
	}
}

func TestExpiry(t *testing.T) {
	t.Parallel()
	w := mustWorld(t, nil)
	t0 := w.clk.Now()
	exp := t0.Add(minipush.FormGrantValidity)
	w.mustAdd(t, "alice",
		grant("alice", minipush.GrantForm, "f1", exp),
		grant("alice", minipush.GrantForm, "f2", exp),
		grant("alice", minipush.GrantPrepay, "p1", exp))
	w.mustAdd(t, "bob", grant("bob", minipush.GrantForm, "f3", exp))
	checkUser(t, w.mustUser(t, "alice"), 3, exp)
	if got := w.mustRecords(t); len(got) != 0 {
		t.Fatalf("REMOVE records before any removal: %d", len(got))
	}

	var recs []events.DynamoDBEventRecord
	var stats minipush.GrantInventory
	t.Run("ExpiredCounted", func(t *testing.T) {
		w.clk.Add(minipush.FormGrantValidity + time.Hour)
		if n := w.mustReap(t); n != 4 {
			t.Fatalf("reaped %d, want 4", n)
		}
		recs = w.mustRecords(t)
		if len(recs) != 4 {
			t.Fatalf("REMOVE records = %d, want 4", len(recs))
		}
		w.mustFeed(t, recs)
		checkUser(t, w.mustUser(t, "alice"), 0, time.Time{})
		checkUser(t, w.mustUser(t, "bob"), 0, time.Time{})
		stats = w.mustInventory(t)
		day := expiredOn(t, stats, exp)
		want := map[minipush.GrantKind]int{minipush.GrantForm: 3, minipush.GrantPrepay: 1}
		if day.Total != 4 || !reflect.DeepEqual(day.ByKind, want) {
			t.Errorf("expired on %s = %d %v, want 4 %v", day.Day, day.Total, day.ByKind, want)
		}
		if stats.Live != 0 {
			t.Errorf("live = %d, want 0", stats.Live)
		}
	})
	t.Run("ReplayChangesNothing", func(t *testing.T) {
		if len(recs) == 0 {
			t.Skip("no records from ExpiredCounted")
		}
		w.mustFeed(t, recs)
		w.mustFeed(t, recs[1:3]) // a partial retry, as after a batch item failure
		checkUser(t, w.mustUser(t, "alice"), 0, time.Time{})
		checkUser(t, w.mustUser(t, "bob"), 0, time.Time{})
		if again := w.mustInventory(t); !reflect.DeepEqual(again, stats) {
			t.Errorf("inventory after replay:\n%+v\nwant\n%+v", again, stats)
		}
	})
}

func TestSpentGrantIsNotAnExpiry(t *testing.T) {
	t.Parallel()
	w := mustWorld(t, nil)
	exp := w.clk.Now().Add(minipush.FormGrantValidity)
	spent := grant("carol", minipush.GrantForm, "spent", exp)
	w.mustAdd(t, "carol", spent, grant("carol", minipush.GrantForm, "kept", exp.Add(time.Hour)))

	// Send spends the grant a day before its expiry with a plain DeleteItem (DropGrant
	// is that delete, whoever holds the grant).
	w.clk.Add(6 * 24 * time.Hour)
	if err := w.db.DropGrant(t.Context(), app, "carol", spent.ID); err != nil {
		t.Fatal(err)
	}
	recs := w.mustRecords(t)
	if len(recs) != 1 {
		t.Fatalf("REMOVE records = %d, want 1", len(recs))
	}
	w.mustFeed(t, recs)
	checkUser(t, w.mustUser(t, "carol"), 1, exp.Add(time.Hour))
	if n := totalExpired(w.mustInventory(t)); n != 0 {
		t.Errorf("a spent grant counted as expired: %d expiries", n)
	}

	t.Run("LaterExpiryStillCounted", func(t *testing.T) {
		w.clk.Add(2 * 24 * time.Hour)
		if n := w.mustReap(t); n != 1 {
			t.Fatalf("reaped %d, want 1", n)
		}
		w.mustFeed(t, w.mustRecords(t))
		checkUser(t, w.mustUser(t, "carol"), 0, time.Time{})
		if day := expiredOn(t, w.mustInventory(t), exp.Add(time.Hour)); day.Total != 1 || day.ByKind[minipush.GrantForm] != 1 {
			t.Errorf("expired on %s = %+v, want 1 form", day.Day, day)
		}
	})
}

// TestInventoryAtEveryStep moves the clock past one expiry at a time and checks the
// user's count and latest expiry after each reap and feed.
func TestInventoryAtEveryStep(t *testing.T) {
	t.Parallel()
	w := mustWorld(t, nil)
	t0 := w.clk.Now()
	e1, e2, e3 := t0.Add(24*time.Hour), t0.Add(3*24*time.Hour), t0.Add(7*24*time.Hour)
	w.mustAdd(t, "dave",
		grant("dave", minipush.GrantForm, "a", e1),
		grant("dave", minipush.GrantPrepay, "b", e2),
		grant("dave", minipush.GrantForm, "c", e2),
		grant("dave", minipush.GrantForm, "d", e3))
	checkUser(t, w.mustUser(t, "dave"), 4, e3)

	for _, step := range []struct {
		name    string
		to      time.Time
		reaped  int
		live    int
		latest  time.Time
		day     time.Time
		expired int
	}{
		{"BeforeAny", e1.Add(-time.Second), 0, 4, e3, e1, 0},
		{"AtFirst", e1, 1, 3, e3, e1, 1},
		{"PastSecond", e2.Add(time.Hour), 2, 1, e3, e2, 2},
		{"PastLast", e3.Add(time.Hour), 1, 0, time.Time{}, e3, 1},
	} {
		t.Run(step.name, func(t *testing.T) {
			w.clk.Add(step.to.Sub(w.clk.Now()))
			if n := w.mustReap(t); n != step.reaped {
				t.Fatalf("reaped %d, want %d", n, step.reaped)
			}
			recs := w.mustRecords(t)
			if len(recs) != step.reaped {
				t.Fatalf("REMOVE records = %d, want %d", len(recs), step.reaped)
			}
			w.mustFeed(t, recs)
			w.mustFeed(t, recs) // replayed at once: still the same
			checkUser(t, w.mustUser(t, "dave"), step.live, step.latest)
			inv := w.mustInventory(t)
			if day := expiredOn(t, inv, step.day); day.Total != step.expired {
				t.Errorf("expired on %s = %d, want %d", day.Day, day.Total, step.expired)
			}
			if inv.Live != step.live {
				t.Errorf("app live = %d, want %d", inv.Live, step.live)
			}
		})
	}
}

// failingAPI fails chosen DynamoDB calls, the failures DynamoDB Local cannot produce.
type failingAPI struct {
	dynamo.API
	failTransactions bool   // every TransactWriteItems (RecordExpiry)
	failUpdatesOf    string // UpdateItem on this table (RecomputeInventory of users)
}

var errInjected = errors.New("injected failure")

func (f *failingAPI) TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, optFns ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error) {
	if f.failTransactions {
		return nil, errInjected
	}
	return f.API.TransactWriteItems(ctx, in, optFns...)
}

func (f *failingAPI) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	if f.failUpdatesOf != "" && aws.ToString(in.TableName) == f.failUpdatesOf {
		return nil, errInjected
	}
	return f.API.UpdateItem(ctx, in, optFns...)
}

func TestFailuresAreReported(t *testing.T) {
	t.Parallel()
	var fail *failingAPI
	w := mustWorld(t, func(api dynamo.API) dynamo.API { fail = &failingAPI{API: api}; return fail })
	exp := w.clk.Now().Add(minipush.FormGrantValidity)
	w.mustAdd(t, "erin", grant("erin", minipush.GrantForm, "e1", exp))
	w.mustAdd(t, "frank", grant("frank", minipush.GrantForm, "f1", exp))
	w.clk.Add(minipush.FormGrantValidity)
	w.mustReap(t)
	recs := w.mustRecords(t)
	if len(recs) != 2 {
		t.Fatalf("REMOVE records = %d, want 2", len(recs))
	}
	seqs := func(resp events.DynamoDBEventResponse) []string {
		var out []string
		for _, f := range resp.BatchItemFailures {
			out = append(out, f.ItemIdentifier)
		}
		return out
	}

	t.Run("CountFails", func(t *testing.T) {
		fail.failTransactions = true
		defer func() { fail.failTransactions = false }()
		resp, err := w.h.Handle(t.Context(), events.DynamoDBEvent{Records: recs})
		if err != nil {
			t.Fatal(err)
		}
		want := []string{recs[0].Change.SequenceNumber, recs[1].Change.SequenceNumber}
		if got := seqs(resp); !reflect.DeepEqual(got, want) {
			t.Fatalf("failures = %v, want %v", got, want)
		}
	})
	t.Run("RecomputeFailsForOneUser", func(t *testing.T) {
		fail.failUpdatesOf = w.env.Table("UsersTable")
		resp, err := w.h.Handle(t.Context(), events.DynamoDBEvent{Records: recs})
		fail.failUpdatesOf = ""
		if err != nil {
			t.Fatal(err)
		}
		if got := seqs(resp); len(got) != 2 {
			t.Fatalf("failures = %v, want both records", got)
		}
		// The counts were written before the recompute failed; the retry must not add to them.
		w.mustFeed(t, recs)
		checkUser(t, w.mustUser(t, "erin"), 0, time.Time{})
		if day := expiredOn(t, w.mustInventory(t), exp); day.Total != 2 {
			t.Errorf("expired after failure and retry = %d, want 2", day.Total)
		}
	})
}

func TestHandleSkipsWhatIsNotAGrantRemoval(t *testing.T) {
	t.Parallel()
	w := mustWorld(t, nil)
	s := events.NewStringAttribute
	base := func(name string, old map[string]events.DynamoDBAttributeValue) events.DynamoDBEventRecord {
		return events.DynamoDBEventRecord{EventName: name, Change: events.DynamoDBStreamRecord{SequenceNumber: "1", OldImage: old}}
	}
	for _, tc := range []struct {
		name string
		rec  events.DynamoDBEventRecord
	}{
		{"Insert", base("INSERT", map[string]events.DynamoDBAttributeValue{"sk": s("g#x"), "appId": s(app), "openId": s("x"), "id": s("x")})},
		{"NoOldImage", base("REMOVE", nil)},
		{"NotAGrant", base("REMOVE", map[string]events.DynamoDBAttributeValue{"pk": s("x"), "sk": s("other")})},
		{"Undecodable", base("REMOVE", map[string]events.DynamoDBAttributeValue{"sk": s("g#x"), "appId": s(app), "openId": s("x"), "id": s("x"), "uses": s("lots")})},
		{"NoUser", base("REMOVE", map[string]events.DynamoDBAttributeValue{"sk": s("g#x"), "id": s("x")})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := w.h.Handle(t.Context(), events.DynamoDBEvent{Records: []events.DynamoDBEventRecord{tc.rec}})
			if err != nil || len(resp.BatchItemFailures) != 0 {
				t.Fatalf("Handle = %v, %v; want no failures", resp, err)
			}
			if _, err := w.db.GetUser(t.Context(), app, "x"); minipush.ErrorCode(err) != minipush.ENOTFOUND {
				t.Fatalf("user x was touched: %v", err)
			}
		})
	}
}

func TestFromEnv(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	vars := env.MustFunctionEnv(t, "ExpireFunction")
	for _, kv := range env.Endpoints.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	t.Run("OK", func(t *testing.T) {
		h, err := lambdaenv.Expire(t.Context(), lambdaenv.Env{Getenv: func(k string) string { return vars[k] }})
		if err != nil {
			t.Fatal(err)
		}
		if db, ok := h.DB.(*dynamo.DB); !ok || db.Tables.Grants != env.Table("GrantsTable") || db.Tables.State != env.Table("StateTable") {
			t.Fatalf("handler wired to %+v", h.DB)
		}
		if h.RecordTimeOnly {
			t.Error("RecordTimeOnly set against a local endpoint")
		}
		resp, err := h.Handle(t.Context(), events.DynamoDBEvent{})
		if err != nil || len(resp.BatchItemFailures) != 0 {
			t.Fatalf("empty batch: %v, %v", resp, err)
		}
	})
	t.Run("ErrMissingTable", func(t *testing.T) {
		if _, err := lambdaenv.Expire(t.Context(), lambdaenv.Env{Getenv: func(k string) string {
			if k == "STATE_TABLE" {
				return ""
			}
			return vars[k]
		}}); err == nil || !strings.Contains(err.Error(), "STATE_TABLE") {
			t.Fatalf("lambdaenv.Expire without STATE_TABLE = %v, want an error naming it", err)
		}
	})
}
