package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"minipush"
	"minipush/internal/admin"
)

// syncBuffer is a log sink safe for the handler's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// lines decodes the JSON log lines written so far.
func (s *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s.b.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// brokenStore fails every campaign read the way an unreachable DynamoDB would.
type brokenStore struct{ admin.Store }

var errDynamoDown = errors.New("dial tcp 10.0.0.1:443: connection refused")

func (brokenStore) GetCampaign(context.Context, string) (minipush.Campaign, error) {
	return minipush.Campaign{}, errDynamoDown
}

// withRequestID is do with the API Gateway request id set.
func withRequestID(t *testing.T, h *admin.Handler, c call, id string) events.APIGatewayV2HTTPResponse {
	t.Helper()
	path, query, _ := strings.Cut(c.target, "?")
	req := events.APIGatewayV2HTTPRequest{
		RouteKey: "ANY /v1/admin/{proxy+}", RawPath: path, RawQueryString: query, Body: c.body,
		Headers: map[string]string{"authorization": "Bearer " + token, "content-type": "application/json"},
		RequestContext: events.APIGatewayV2HTTPRequestContext{
			RequestID: id, HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: c.method, Path: path},
		},
	}
	resp, err := h.Handle(t.Context(), req)
	if err != nil {
		t.Fatalf("%s %s: handler error %v", c.method, c.target, err)
	}
	return resp
}

func TestLogs(t *testing.T) {
	t.Parallel()

	t.Run("OperatorChangeAudited", func(t *testing.T) {
		t.Parallel()
		h, _ := MustAdmin(t)
		var buf syncBuffer
		h.Log = slog.New(slog.NewJSONHandler(&buf, nil))
		mustOK(t, h, call{method: "POST", target: "/v1/admin/campaigns", body: subscribeCampaign}, http.StatusCreated, nil)
		resp := withRequestID(t, h, call{method: "POST", target: "/v1/admin/campaigns/c1/schedule", body: `{"now":true}`}, "req-42")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("schedule: %d %s", resp.StatusCode, resp.Body)
		}
		var found bool
		for _, l := range buf.lines(t) {
			if l["campaign"] == "c1" && l["request_id"] == "req-42" && l["status"] == float64(200) && l["level"] == "INFO" {
				found = true
			}
		}
		if !found {
			t.Fatalf("no audit line for the schedule with campaign and request id in %v", buf.lines(t))
		}
	})

	t.Run("NoOpenIDInLogs", func(t *testing.T) {
		t.Parallel()
		h, _ := MustAdmin(t)
		var buf syncBuffer
		h.Log = slog.New(slog.NewJSONHandler(&buf, nil))
		const openID = "oSecretOpenID123"
		resp := withRequestID(t, h, call{method: "PUT", target: "/v1/admin/users/" + openID + "?appId=wx1", body: `{"region":"north"}`}, "req-44")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("put user: %d %s", resp.StatusCode, resp.Body)
		}
		withRequestID(t, h, call{method: "PUT", target: "/v1/admin/users/" + openID + "?appId=wx1", body: `{"region":`}, "req-45")
		if len(buf.lines(t)) == 0 {
			t.Fatal("no log line for the user change")
		}
		buf.mu.Lock()
		defer buf.mu.Unlock()
		if strings.Contains(buf.b.String(), openID) {
			t.Fatalf("an openid reached the logs: %s", buf.b.String())
		}
	})

	t.Run("ErrInternalLoggedNotLeaked", func(t *testing.T) {
		t.Parallel()
		h, _ := MustAdmin(t)
		var buf syncBuffer
		h.Log = slog.New(slog.NewJSONHandler(&buf, nil))
		h.Store = brokenStore{Store: h.Store}
		resp := withRequestID(t, h, call{method: "GET", target: "/v1/admin/campaigns/c9"}, "req-43")
		if resp.StatusCode != http.StatusInternalServerError || strings.Contains(resp.Body, "10.0.0.1") {
			t.Fatalf("%d %s, want 500 without the cause", resp.StatusCode, resp.Body)
		}
		lines := buf.lines(t)
		var errLines int
		for _, l := range lines {
			if l["level"] != "ERROR" {
				continue
			}
			errLines++
			if l["campaign"] != "c9" || l["request_id"] != "req-43" || !strings.Contains(l["err"].(string), "connection refused") {
				t.Fatalf("error line %v lacks campaign, request id or cause", l)
			}
		}
		if errLines != 1 {
			t.Fatalf("%d error lines, want the failed read logged once: %v", errLines, lines)
		}
	})
}
