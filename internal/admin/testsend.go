package admin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"

	"github.com/aws/aws-lambda-go/events"
	"golang.org/x/sync/errgroup"

	"minipush"
	"minipush/internal/httpapi"
	"minipush/internal/send"
)

// MaxTestRecipients bounds one test send: the operator's own test users, not an
// audience (issue #18).
const MaxTestRecipients = 20

// TestSender sends a campaign's message now to a few users through the run's
// per-recipient path (*send.Handler implements it; see send.SendTest for what a test
// shares with a run and what it does not).
type TestSender interface {
	SendTest(ctx context.Context, c minipush.Campaign, runKey string, openIDs []string) ([]send.TestResult, error)
}

// userStore reads one user; *dynamo.DB implements it (ENOTFOUND for an unknown user).
type userStore interface {
	GetUser(ctx context.Context, appID, openID string) (minipush.User, error)
}

// TestSendAnswer is the answer of POST campaigns/{id}/test.
type TestSendAnswer struct {
	CampaignID string `json:"campaignId"`
	// TestID names this test's deliveries (their key is "<campaign>#test-<testId>"): the
	// same Idempotency-Key gives the same testId, so a retry never sends twice.
	TestID  string            `json:"testId"`
	Results []send.TestResult `json:"results"`
	Summary map[string]int    `json:"summary"` // recipients by outcome
}

// testSend sends the campaign's message now to the operator's test users and answers
// each outcome. Every openid must be a known user of the campaign's app (one who logged
// in or was imported), checked before anything is sent: a bad request spends nothing.
// POST /v1/admin/campaigns/{id}/test {"openIds":[...]}
func (h *Handler) testSend(ctx context.Context, r request) (events.APIGatewayV2HTTPResponse, error) {
	var in struct {
		OpenIDs []string `json:"openIds"`
	}
	if err := httpapi.DecodeJSON(r.APIGatewayV2HTTPRequest, 8<<10, &in); err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	if n := len(in.OpenIDs); n == 0 || n > MaxTestRecipients {
		return events.APIGatewayV2HTTPResponse{}, invalid("openIds: %d openids, want 1 to %d (your test users)", n, MaxTestRecipients)
	}
	seen := make(map[string]int, len(in.OpenIDs))
	for i, id := range in.OpenIDs {
		field := fmt.Sprintf("openIds[%d]", i)
		if err := validateOpenID(field, id); err != nil {
			return events.APIGatewayV2HTTPResponse{}, err
		}
		if j, dup := seen[id]; dup {
			return events.APIGatewayV2HTTPResponse{}, invalid("%s: repeats openIds[%d]", field, j)
		}
		seen[id] = i
	}
	c, err := h.campaign(ctx, r)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	if h.TestSender == nil {
		return events.APIGatewayV2HTTPResponse{}, minipush.Errorf(minipush.ENOTIMPL,
			"a test send needs its own access token, which only TOKEN_ENDPOINT=stable gives without invalidating the sender's")
	}
	if err := h.knownUsers(ctx, c.AppID, in.OpenIDs); err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	// The Idempotency-Key (already checked by handle) fixes the test's key, so a retry
	// after a lost answer or a 5xx finds its recipients final and sends nothing twice.
	key, keyed, _ := idempotencyKey(r.APIGatewayV2HTTPRequest)
	results, err := h.TestSender.SendTest(ctx, c, send.TestRunKey(c.ID, testID(key, keyed)), in.OpenIDs)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, fmt.Errorf("admin: test send of %s: %w", c.ID, err)
	}
	ans := TestSendAnswer{CampaignID: c.ID, TestID: testID(key, keyed), Results: results, Summary: map[string]int{}}
	for _, res := range results {
		ans.Summary[string(res.Outcome)]++
	}
	h.log().InfoContext(ctx, "admin: test send", "campaign", c.ID, "test", ans.TestID, "recipients", len(results), "outcomes", ans.Summary)
	return httpapi.JSON(http.StatusOK, ans), nil
}

// testID is the test's id: derived from the Idempotency-Key when the request has one,
// else random (every request is a test of its own).
func testID(key string, keyed bool) string {
	if keyed {
		sum := sha256.Sum256([]byte("test\n" + key))
		return hex.EncodeToString(sum[:8])
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b)
}

// knownUsers refuses, naming the field, an openid that is no user of appID: a test is
// for the operator's own users, and an openid of another app (or a typo) would only
// end no_grant. One strongly consistent read per openid, at most 20, in parallel.
func (h *Handler) knownUsers(ctx context.Context, appID string, openIDs []string) error {
	us, ok := h.Store.(userStore)
	if !ok {
		return minipush.Errorf(minipush.EINTERNAL, "test send: the store cannot read users")
	}
	known := make([]bool, len(openIDs))
	g, gctx := errgroup.WithContext(ctx)
	for i, id := range openIDs {
		g.Go(func() error {
			_, err := us.GetUser(gctx, appID, id)
			switch {
			case minipush.ErrorCode(err) == minipush.ENOTFOUND:
				return nil
			case err != nil:
				return fmt.Errorf("admin: test send: %w", err)
			}
			known[i] = true
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for i, ok := range known {
		if !ok {
			// The index, not the openid: the message may reach logs.
			return invalid("openIds[%d]: no user of app %s has this openid (the user must have logged in or been imported)", i, appID)
		}
	}
	return nil
}
