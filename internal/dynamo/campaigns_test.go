package dynamo_test

import (
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"minipush"
	"minipush/internal/dynamo"
)

func draft(id string, created time.Time) minipush.Campaign {
	return minipush.Campaign{
		ID: id, AppID: "wx1", Name: "n-" + id, Status: minipush.StatusDraft, CreatedAt: created, UpdatedAt: created,
		Message: minipush.Message{Kind: minipush.MessageSubscribe, TemplateID: "tpl1", Page: "pages/a?x=1",
			Data: map[string]minipush.DataValue{"thing1": {Value: "hello"}}},
		Audience: minipush.Audience{Kind: minipush.AudienceSegment, Segment: &minipush.Segment{Regions: []string{"sh"}, Tags: []string{"vip"}}},
		Policy:   minipush.Policy{SkipOptedOut: true, RetryBudget: 3},
	}
}

// rawMeta reads the campaign's meta item as stored.
func rawMeta(t *testing.T, db *dynamo.DB, id string) map[string]types.AttributeValue {
	t.Helper()
	out, err := db.Client.GetItem(t.Context(), &dynamodb.GetItemInput{
		TableName: aws.String(db.Tables.Campaigns), ConsistentRead: aws.Bool(true),
		Key: map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "c#" + id}, "sk": &types.AttributeValueMemberS{Value: "meta"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.Item
}

func TestCampaignStorage(t *testing.T) {
	t.Parallel()
	db, _, clk := MustDB(t)
	ctx := t.Context()

	t.Run("CreateGetAndSendCampaignAgree", func(t *testing.T) {
		c := draft("c1", clk.Now())
		if err := db.CreateCampaign(ctx, c); err != nil {
			t.Fatal(err)
		}
		if err := db.CreateCampaign(ctx, c); minipush.ErrorCode(err) != minipush.ECONFLICT {
			t.Fatalf("second create: %v, want conflict", err)
		}
		got, err := db.GetCampaign(ctx, "c1")
		if err != nil {
			t.Fatal(err)
		}
		if got.Name != c.Name || got.Message.Data["thing1"].Value != "hello" || got.Audience.Segment == nil ||
			got.Audience.Segment.Tags[0] != "vip" || !got.CreatedAt.Equal(c.CreatedAt) || got.Status != minipush.StatusDraft {
			t.Fatalf("got %+v", got)
		}
		sc, err := db.SendCampaign(ctx, "c1")
		if err != nil {
			t.Fatal(err)
		}
		if sc.Message.TemplateID != "tpl1" || sc.Message.Page != "pages/a?x=1" || !sc.Policy.SkipOptedOut || sc.Policy.RetryBudget != 3 || sc.AppID != "wx1" {
			t.Fatalf("SendCampaign read %+v", sc)
		}
		if _, ok := rawMeta(t, db, "c1")["dueShard"]; ok {
			t.Fatal("a draft is in the due index")
		}
		if _, err := db.GetCampaign(ctx, "nope"); minipush.ErrorCode(err) != minipush.ENOTFOUND {
			t.Fatalf("missing: %v", err)
		}
	})

	t.Run("UpdateDraftThenScheduleThenRefuse", func(t *testing.T) {
		if err := db.CreateCampaign(ctx, draft("c2", clk.Now())); err != nil {
			t.Fatal(err)
		}
		got, err := db.UpdateDraft(ctx, "c2", func(c *minipush.Campaign) error { c.Name = "renamed"; return nil })
		if err != nil || got.Name != "renamed" {
			t.Fatalf("update: %+v %v", got, err)
		}
		at := clk.Now().Add(time.Hour)
		sc, err := db.ScheduleCampaign(ctx, "c2", minipush.Schedule{At: at}, at)
		if err != nil || sc.Status != minipush.StatusScheduled || !sc.NextRunAt.Equal(at) {
			t.Fatalf("schedule: %+v %v", sc, err)
		}
		item := rawMeta(t, db, "c2")
		if s, _ := item["dueShard"].(*types.AttributeValueMemberS); s == nil || s.Value != dynamo.DueShard {
			t.Fatalf("dueShard %v", item["dueShard"])
		}
		if n, _ := item["dueAt"].(*types.AttributeValueMemberN); n == nil || n.Value != strconv.FormatInt(at.Unix(), 10) {
			t.Fatalf("dueAt %v", item["dueAt"])
		}
		_, err = db.UpdateDraft(ctx, "c2", func(c *minipush.Campaign) error { c.Name = "again"; return nil })
		if minipush.ErrorCode(err) != minipush.ECONFLICT {
			t.Fatalf("edit of a scheduled campaign: %v", err)
		}
		if got, _ := db.GetCampaign(ctx, "c2"); got.Name != "renamed" {
			t.Fatalf("refused edit changed the name to %q", got.Name)
		}
	})

	t.Run("PauseResumeCancel", func(t *testing.T) {
		if err := db.CreateCampaign(ctx, draft("c3", clk.Now())); err != nil {
			t.Fatal(err)
		}
		if _, err := db.OperatorPause(ctx, "c3"); minipush.ErrorCode(err) != minipush.ECONFLICT {
			t.Fatalf("pause of a draft: %v", err)
		}
		at := clk.Now().Add(time.Minute)
		if _, err := db.ScheduleCampaign(ctx, "c3", minipush.Schedule{Cron: "0 10 * * *", TimeZone: "Asia/Shanghai"}, at); err != nil {
			t.Fatal(err)
		}
		p, err := db.OperatorPause(ctx, "c3")
		if err != nil || p.Status != minipush.StatusPaused {
			t.Fatalf("pause: %+v %v", p, err)
		}
		if _, ok := rawMeta(t, db, "c3")["dueShard"]; ok {
			t.Fatal("a paused campaign stays in the due index")
		}
		r, err := db.ResumeCampaign(ctx, "c3", false)
		if err != nil || r.Status != minipush.StatusScheduled {
			t.Fatalf("resume: %+v %v", r, err)
		}
		if _, ok := rawMeta(t, db, "c3")["dueShard"]; !ok {
			t.Fatal("a resumed campaign is not back in the due index")
		}
		if _, err := db.ResumeCampaign(ctx, "c3", false); minipush.ErrorCode(err) != minipush.ECONFLICT {
			t.Fatalf("resume of a scheduled campaign: %v", err)
		}
		cc, err := db.CancelCampaign(ctx, "c3")
		if err != nil || cc.Status != minipush.StatusCancelled {
			t.Fatalf("cancel: %+v %v", cc, err)
		}
		item := rawMeta(t, db, "c3")
		if _, ok := item["dueShard"]; ok {
			t.Fatal("a cancelled campaign stays in the due index")
		}
		if _, err := db.CancelCampaign(ctx, "c3"); minipush.ErrorCode(err) != minipush.ECONFLICT {
			t.Fatalf("second cancel: %v", err)
		}
		if _, err := db.CancelCampaign(ctx, "nope"); minipush.ErrorCode(err) != minipush.ENOTFOUND {
			t.Fatalf("cancel of nothing: %v", err)
		}
	})

	t.Run("ResumeAfterSendPaused", func(t *testing.T) {
		// send pauses a sending campaign without pausedFrom; resume finds the run's status.
		if err := db.CreateCampaign(ctx, draft("c4", clk.Now())); err != nil {
			t.Fatal(err)
		}
		put := func(item map[string]types.AttributeValue) {
			if _, err := db.Client.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(db.Tables.Campaigns), Item: item}); err != nil {
				t.Fatal(err)
			}
		}
		meta := rawMeta(t, db, "c4")
		meta["status"] = &types.AttributeValueMemberS{Value: "sending"}
		meta["runSeq"] = &types.AttributeValueMemberN{Value: "1"}
		put(meta)
		put(map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "c#c4"}, "sk": &types.AttributeValueMemberS{Value: "run#1"},
			"status": &types.AttributeValueMemberS{Value: string(minipush.RunSending)}, "planned": &types.AttributeValueMemberN{Value: "3"}})
		if err := db.PauseCampaign(ctx, "c4", "template gone"); err != nil {
			t.Fatal(err)
		}
		r, err := db.ResumeCampaign(ctx, "c4", false)
		if err != nil || r.Status != minipush.StatusSending {
			t.Fatalf("resume: %+v %v", r, err)
		}
		runs, err := db.CampaignRuns(ctx, "c4")
		if err != nil || len(runs) != 1 || runs[0].N != 1 || runs[0].Counters.Planned != 3 {
			t.Fatalf("runs %+v %v", runs, err)
		}
	})
}

func TestListCampaigns(t *testing.T) {
	t.Parallel()
	db, _, clk := MustDB(t)
	ctx := t.Context()
	var want []string
	for i := range 7 {
		id := fmt.Sprintf("d%d", i)
		if err := db.CreateCampaign(ctx, draft(id, clk.Now().Add(time.Duration(i)*time.Second))); err != nil {
			t.Fatal(err)
		}
		want = append([]string{id}, want...) // newest first
	}
	if err := db.CreateCampaign(ctx, draft("s", clk.Now())); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ScheduleCampaign(ctx, "s", minipush.Schedule{At: clk.Now()}, clk.Now()); err != nil {
		t.Fatal(err)
	}

	t.Run("PagedNewestFirst", func(t *testing.T) {
		var got []string
		cursor := ""
		for pages := 0; ; pages++ {
			if pages > 10 {
				t.Fatal("cursor never ends")
			}
			cs, next, err := db.ListCampaigns(ctx, minipush.StatusDraft, 3, cursor)
			if err != nil {
				t.Fatal(err)
			}
			if len(cs) > 3 {
				t.Fatalf("page of %d", len(cs))
			}
			for _, c := range cs {
				got = append(got, c.ID)
			}
			if next == "" {
				break
			}
			cursor = next
		}
		if !slices.Equal(got, want) {
			t.Fatalf("got %v, want %v", got, want)
		}
	})
	t.Run("OtherStatus", func(t *testing.T) {
		cs, _, err := db.ListCampaigns(ctx, minipush.StatusScheduled, 10, "")
		if err != nil || len(cs) != 1 || cs[0].ID != "s" {
			t.Fatalf("scheduled: %+v %v", cs, err)
		}
	})
	t.Run("ErrForeignCursor", func(t *testing.T) {
		_, next, err := db.ListCampaigns(ctx, minipush.StatusDraft, 2, "")
		if err != nil || next == "" {
			t.Fatal(next, err)
		}
		for _, cur := range []string{next + "x", "garbage!", "e30"} {
			if _, _, err := db.ListCampaigns(ctx, minipush.StatusScheduled, 2, cur); minipush.ErrorCode(err) != minipush.EINVALID {
				t.Fatalf("cursor %q: %v", cur, err)
			}
		}
		if _, _, err := db.ListCampaigns(ctx, minipush.StatusScheduled, 2, next); minipush.ErrorCode(err) != minipush.EINVALID {
			t.Fatalf("draft cursor on scheduled list: %v", err)
		}
	})
}

func TestPauseCampaign(t *testing.T) {
	t.Parallel()
	db, _, _ := MustDB(t)
	ctx := t.Context()
	putRun(t, db, "c", "sending", minipush.RunSending, 1, "")
	if err := db.PauseCampaign(ctx, "c", "template_invalid (errcode 40037)"); err != nil {
		t.Fatal(err)
	}
	if err := db.PauseCampaign(ctx, "c", "again"); minipush.ErrorCode(err) != minipush.ECONFLICT {
		t.Errorf("second pause: %v, want ECONFLICT (log once)", err)
	}
	putRun(t, db, "x", "cancelled", minipush.RunSending, 1, "")
	if err := db.PauseCampaign(ctx, "x", "r"); minipush.ErrorCode(err) != minipush.ECONFLICT {
		t.Errorf("pause of a cancelled campaign: %v, want ECONFLICT", err)
	}
	if c, err := db.SendCampaign(ctx, "x"); err != nil || c.Status != minipush.StatusCancelled {
		t.Errorf("cancelled campaign became %s, %v", c.Status, err)
	}
}
