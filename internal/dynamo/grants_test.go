package dynamo_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"minipush"
	"minipush/internal/dev/testenv"
	"minipush/internal/dynamo"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// countingAPI counts Query calls so a test can prove an access pattern is one Query.
type countingAPI struct {
	dynamo.API
	queries atomic.Int64
}

func (c *countingAPI) Query(ctx context.Context, in *dynamodb.QueryInput, optFns ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error) {
	c.queries.Add(1)
	return c.API.Query(ctx, in, optFns...)
}

// clock is a test clock that tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// MustDB returns a DB on a fresh namespace with a controllable clock.
func MustDB(t *testing.T) (*dynamo.DB, *countingAPI, *clock) {
	t.Helper()
	env := testenv.New(t)
	api := &countingAPI{API: env.DynamoDB}
	clk := &clock{t: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)}
	db := dynamo.New(api, dynamo.Tables{
		Grants: env.Table("GrantsTable"), Users: env.Table("UsersTable"), Campaigns: env.Table("CampaignsTable"),
		Audience: env.Table("AudienceTable"), Deliveries: env.Table("DeliveriesTable"), State: env.Table("StateTable"),
	})
	db.Now = clk.Now
	return db, api, clk
}

func formGrant(app, openid, value string, collected time.Time) minipush.Grant {
	return minipush.Grant{
		AppID: app, OpenID: openid, Kind: minipush.GrantForm, ID: minipush.GrantID(minipush.GrantForm, value),
		Value: value, Uses: 1, CollectedAt: collected, ExpiresAt: collected.Add(minipush.FormGrantValidity),
	}
}

func subscribeGrant(app, openid, tpl, key string, collected time.Time) minipush.Grant {
	return minipush.Grant{
		AppID: app, OpenID: openid, Kind: minipush.GrantSubscribe, ID: minipush.GrantID(minipush.GrantSubscribe, tpl, key),
		TemplateID: tpl, Uses: 1, CollectedAt: collected, ExpiresAt: collected.Add(minipush.DefaultSubscribeRetention),
	}
}

func TestAddGrants(t *testing.T) {
	t.Parallel()
	db, _, clk := MustDB(t)
	ctx := t.Context()
	now := clk.Now()
	batch := []minipush.Grant{
		formGrant("wx1", "u1", "f1", now),
		formGrant("wx1", "u1", "f2", now),
		formGrant("wx1", "u1", "f1", now), // repeated inside the batch
	}
	got, err := db.AddGrants(ctx, "wx1", "u1", batch, 3)
	if err != nil {
		t.Fatal(err)
	}
	want := []minipush.AddStatus{minipush.AddAccepted, minipush.AddAccepted, minipush.AddDuplicate}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("first upload = %v, want %v", got, want)
	}

	t.Run("RetryStoresOnce", func(t *testing.T) {
		got, err := db.AddGrants(ctx, "wx1", "u1", batch[:2], 3)
		if err != nil {
			t.Fatal(err)
		}
		if got[0] != minipush.AddDuplicate || got[1] != minipush.AddDuplicate {
			t.Fatalf("re-upload = %v, want duplicates", got)
		}
		live, err := db.LiveGrants(ctx, "wx1", "u1")
		if err != nil || len(live) != 2 {
			t.Fatalf("live grants = %d (%v), want 2", len(live), err)
		}
	})

	t.Run("ErrOverLimit", func(t *testing.T) {
		got, err := db.AddGrants(ctx, "wx1", "u1", []minipush.Grant{formGrant("wx1", "u1", "f3", now), formGrant("wx1", "u1", "f4", now)}, 3)
		if err != nil {
			t.Fatal(err)
		}
		if got[0] != minipush.AddAccepted || got[1] != minipush.AddOverLimit {
			t.Fatalf("upload at the limit = %v, want [accepted over_user_limit]", got)
		}
		u, err := db.GetUser(ctx, "wx1", "u1")
		if err != nil {
			t.Fatal(err)
		}
		if u.LiveGrants != 3 || !u.LatestExpiry.Equal(now.Add(minipush.FormGrantValidity)) {
			t.Fatalf("inventory = %d live, latest %v", u.LiveGrants, u.LatestExpiry)
		}
	})

	t.Run("ExpiryFreesRoom", func(t *testing.T) {
		clk.Add(minipush.FormGrantValidity + time.Second)
		got, err := db.AddGrants(ctx, "wx1", "u1", []minipush.Grant{formGrant("wx1", "u1", "f5", clk.Now())}, 3)
		if err != nil {
			t.Fatal(err)
		}
		if got[0] != minipush.AddAccepted {
			t.Fatalf("upload after expiry = %v, want accepted (expired grants are not live even before TTL deletes them)", got)
		}
		u, _ := db.GetUser(ctx, "wx1", "u1")
		if u.LiveGrants != 1 {
			t.Fatalf("live grants = %d, want 1", u.LiveGrants)
		}
	})
}

// TestAddGrantsConcurrentLimit races uploads of one user: together they must not pass
// the limit, and every accepted grant must be stored.
func TestAddGrantsConcurrentLimit(t *testing.T) {
	t.Parallel()
	db, _, clk := MustDB(t)
	ctx := t.Context()
	const limit, workers, each = 10, 8, 3
	var accepted atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var gs []minipush.Grant
			for i := range each {
				gs = append(gs, formGrant("wx1", "racer", fmt.Sprintf("w%d-%d", w, i), clk.Now()))
			}
			got, err := db.AddGrants(ctx, "wx1", "racer", gs, limit)
			if err != nil {
				t.Error(err)
				return
			}
			for _, s := range got {
				if s == minipush.AddAccepted {
					accepted.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	live, err := db.LiveGrants(ctx, "wx1", "racer")
	if err != nil {
		t.Fatal(err)
	}
	if len(live) != limit || accepted.Load() != limit {
		t.Fatalf("stored %d, answered accepted %d; want both %d", len(live), accepted.Load(), limit)
	}
}

// TestSpendableGrantOneQuery shows the access pattern send uses: the earliest-expiring
// spendable grant for a channel is one Query, skipping expired, used-up and
// other-channel grants.
func TestSpendableGrantOneQuery(t *testing.T) {
	t.Parallel()
	db, api, clk := MustDB(t)
	ctx := t.Context()
	now := clk.Now()
	early := formGrant("wx1", "u1", "early", now.Add(-2*24*time.Hour))
	late := formGrant("wx1", "u1", "late", now)
	expired := formGrant("wx1", "u1", "expired", now.Add(-8*24*time.Hour))
	sub := subscribeGrant("wx1", "u1", "TPL", "k1", now.Add(-300*24*time.Hour))
	if _, err := db.AddGrants(ctx, "wx1", "u1", []minipush.Grant{late, early, expired, sub}, 200); err != nil {
		t.Fatal(err)
	}

	api.queries.Store(0)
	g, err := db.SpendableGrant(ctx, "wx1", "u1", minipush.GrantChannel(minipush.GrantForm, ""))
	if err != nil {
		t.Fatal(err)
	}
	if g.ID != early.ID {
		t.Fatalf("earliest template grant = %s, want the one collected earliest", g.Value)
	}
	if n := api.queries.Load(); n != 1 {
		t.Fatalf("%d queries, want 1", n)
	}

	g, err = db.SpendableGrant(ctx, "wx1", "u1", minipush.GrantChannel(minipush.GrantSubscribe, "TPL"))
	if err != nil || g.ID != sub.ID {
		t.Fatalf("subscribe grant = %+v, %v; want the TPL grant", g, err)
	}
	if _, err := db.SpendableGrant(ctx, "wx1", "u1", minipush.GrantChannel(minipush.GrantSubscribe, "OTHER")); minipush.ErrorCode(err) != minipush.ENOTFOUND {
		t.Fatalf("other template: err %v, want ENOTFOUND", err)
	}

	t.Run("ExpiredNeverReturned", func(t *testing.T) {
		clk.Add(6 * 24 * time.Hour) // early (collected 2 days ago) now expired; late still valid
		g, err := db.SpendableGrant(ctx, "wx1", "u1", "t")
		if err != nil || g.ID != late.ID {
			t.Fatalf("after 6 days: %+v, %v; want the late grant", g.Value, err)
		}
	})
}

// TestImportGrants loads more than one batch of grants and reads each back as the
// sender finds it, with the fields AddGrants would have stored.
func TestImportGrants(t *testing.T) {
	t.Parallel()
	db, _, clk := MustDB(t)
	var grants []minipush.Grant
	for i := range 30 {
		grants = append(grants, formGrant("wximport", fmt.Sprintf("o%d", i), fmt.Sprintf("form-%d", i), clk.Now()))
	}
	if err := db.ImportGrants(t.Context(), grants); err != nil {
		t.Fatal(err)
	}
	for _, want := range grants {
		got, err := db.SpendableGrant(t.Context(), want.AppID, want.OpenID, minipush.GrantChannel(minipush.GrantForm, ""))
		if err != nil {
			t.Fatalf("%s: %v", want.OpenID, err)
		}
		if got.ID != want.ID || got.Value != want.Value || got.Uses != want.Uses || !got.ExpiresAt.Equal(want.ExpiresAt.Truncate(time.Second)) {
			t.Errorf("%s: got %+v, want %+v", want.OpenID, got, want)
		}
	}
}

// TestDeleteGrantsAcceptedBefore: a reject removes the template's grants collected
// before it, and nothing else.
func TestDeleteGrantsAcceptedBefore(t *testing.T) {
	t.Parallel()
	db, _, clk := MustDB(t)
	ctx := t.Context()
	now := clk.Now()
	gs := []minipush.Grant{
		subscribeGrant("wx1", "u1", "A", "old", now.Add(-time.Hour)), subscribeGrant("wx1", "u1", "A", "new", now),
		subscribeGrant("wx1", "u1", "A#0", "other-template", now.Add(-time.Hour)), formGrant("wx1", "u1", "f", now.Add(-time.Hour)),
	}
	if _, err := db.AddGrants(ctx, "wx1", "u1", gs, 200); err != nil {
		t.Fatal(err)
	}
	n, err := db.DeleteGrantsAcceptedBefore(ctx, "wx1", "u1", "A", now)
	if err != nil || n != 1 {
		t.Fatalf("deleted %d, %v; want the one accepted before", n, err)
	}
	live, err := db.LiveGrants(ctx, "wx1", "u1")
	if err != nil || len(live) != 3 {
		t.Fatalf("%d grants left, %v; want 3", len(live), err)
	}
	for _, g := range live {
		if g.TemplateID == "A" && !g.CollectedAt.Equal(now) {
			t.Fatalf("the accept before the reject survived: %+v", g)
		}
	}
}

func mustAddGrant(t *testing.T, db *dynamo.DB, g minipush.Grant) {
	t.Helper()
	st, err := db.AddGrants(t.Context(), g.AppID, g.OpenID, []minipush.Grant{g}, 10)
	if err != nil || st[0] != minipush.AddAccepted {
		t.Fatalf("AddGrants = %v, %v", st, err)
	}
}

// TestSpendGrant: without a lease a spend is conditional on the grant still having a
// use, so two runs that paid with the same grant learn which spent it: one succeeds,
// the other gets ECONFLICT (and, for a subscribe grant, spends the user's next one).
func TestSpendGrant(t *testing.T) {
	t.Parallel()
	const app = "wxspendg"
	t.Run("OnceOnly", func(t *testing.T) {
		t.Parallel()
		db, _, clk := MustDB(t)
		g := formGrant(app, "u1", "f1", clk.Now())
		mustAddGrant(t, db, g)
		errs := make([]error, 4)
		var wg sync.WaitGroup
		for i := range errs {
			wg.Go(func() { errs[i] = db.SpendGrant(t.Context(), g) })
		}
		wg.Wait()
		won := 0
		for _, err := range errs {
			switch minipush.ErrorCode(err) {
			case "":
				won++
			case minipush.ECONFLICT:
			default:
				t.Fatalf("spend: %v", err)
			}
		}
		if won != 1 {
			t.Errorf("%d concurrent spends of one grant succeeded, want 1", won)
		}
		if _, err := db.GetGrant(t.Context(), app, "u1", g.ID); minipush.ErrorCode(err) != minipush.ENOTFOUND {
			t.Errorf("spent grant still stored: %v", err)
		}
	})
	t.Run("PrepayUsesDecrement", func(t *testing.T) {
		t.Parallel()
		db, _, clk := MustDB(t)
		g := formGrant(app, "u1", "p1", clk.Now())
		g.Kind, g.ID, g.Uses = minipush.GrantPrepay, minipush.GrantID(minipush.GrantPrepay, "p1"), 3
		mustAddGrant(t, db, g)
		for want := 2; want >= 0; want-- {
			cur, err := db.SpendableGrant(t.Context(), app, "u1", g.Channel())
			if err != nil {
				t.Fatalf("lookup with %d uses left: %v", want+1, err)
			}
			if err := db.SpendGrant(t.Context(), cur); err != nil {
				t.Fatal(err)
			}
			got, err := db.GetGrant(t.Context(), app, "u1", g.ID)
			switch {
			case want == 0 && minipush.ErrorCode(err) != minipush.ENOTFOUND:
				t.Errorf("after the last use: %+v, %v; want the grant deleted", got, err)
			case want > 0 && (err != nil || got.Uses != want):
				t.Errorf("after a spend: %+v, %v; want %d uses", got, err, want)
			}
		}
	})
	t.Run("PrepayStaleUsesLastOneDeletes", func(t *testing.T) {
		t.Parallel()
		db, _, clk := MustDB(t)
		g := formGrant(app, "u1", "p2", clk.Now())
		g.Kind, g.ID, g.Uses = minipush.GrantPrepay, minipush.GrantID(minipush.GrantPrepay, "p2"), 2
		mustAddGrant(t, db, g)
		// Two runs read uses 2 and both spend: the second takes the last use and deletes.
		for range 2 {
			if err := db.SpendGrant(t.Context(), g); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := db.GetGrant(t.Context(), app, "u1", g.ID); minipush.ErrorCode(err) != minipush.ENOTFOUND {
			t.Errorf("used-up prepay grant still stored: %v", err)
		}
		if err := db.SpendGrant(t.Context(), g); minipush.ErrorCode(err) != minipush.ECONFLICT {
			t.Errorf("third spend of a two-use grant: %v, want ECONFLICT", err)
		}
	})
}

func TestSpendableGrant(t *testing.T) {
	t.Parallel()
	const app = "wxspend"
	db, _, clk := MustDB(t)
	ctx := t.Context()
	ch := minipush.GrantChannel(minipush.GrantForm, "")
	lookup := func() (minipush.Grant, error) { return db.SpendableGrant(ctx, app, "u1", ch) }
	if _, err := lookup(); minipush.ErrorCode(err) != minipush.ENOTFOUND {
		t.Fatalf("no grants: %v, want ENOTFOUND", err)
	}
	early := formGrant(app, "u1", "early", clk.Now().Add(-2*time.Hour))
	late := formGrant(app, "u1", "late", clk.Now())
	mustAddGrant(t, db, early)
	mustAddGrant(t, db, late)
	if g, err := lookup(); err != nil || g.ID != early.ID {
		t.Errorf("lookup: %+v, %v; want the earliest grant", g, err)
	}
	// Past the earlier grant's expiry only the later one is left; past both, none.
	clk.Add(minipush.FormGrantValidity - time.Hour)
	if g, err := lookup(); err != nil || g.ID != late.ID {
		t.Errorf("earliest expired: %+v, %v; want the later grant", g, err)
	}
	clk.Add(2 * time.Hour)
	if _, err := lookup(); minipush.ErrorCode(err) != minipush.ENOTFOUND {
		t.Errorf("all expired: %v, want ENOTFOUND", err)
	}
}
