package collect_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"minipush"
	"minipush/internal/collect"
)

// throttled is a narrow fake: the real store and limiter, except that the call under
// test fails the way DynamoDB throttles once the SDK has given up retrying (DynamoDB
// Local never throttles).
type throttled struct {
	collect.Store
	collect.Limiter
	upsert, add, allow error
}

func (s throttled) UpsertUser(ctx context.Context, appID, openID, unionID string) error {
	if s.upsert != nil {
		return fmt.Errorf("dynamo: upsert user of %s: %w", appID, s.upsert)
	}
	return s.Store.UpsertUser(ctx, appID, openID, unionID)
}

func (s throttled) AddGrants(ctx context.Context, appID, openID string, grants []minipush.Grant, limit int) ([]minipush.AddStatus, error) {
	if s.add != nil {
		return nil, fmt.Errorf("dynamo: add grants for %s: %w", appID, s.add)
	}
	return s.Store.AddGrants(ctx, appID, openID, grants, limit)
}

func (s throttled) Allow(ctx context.Context, key string, limit int, window time.Duration) (bool, error) {
	if s.allow != nil {
		return false, s.allow
	}
	return s.Limiter.Allow(ctx, key, limit, window)
}

// TestThrottledIs503: DynamoDB throttling is not the API's failure: 503 with
// Retry-After, so the client (or WeChat) comes back, instead of 500. Other storage
// errors stay 500.
func TestThrottledIs503(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	_, token := f.login(t)
	store, limiter := f.h.Store, f.h.Limiter
	upload := request("POST", "/v1/grants", `{"grants":[{"type":"form","formId":"f-throttle"}]}`, map[string]string{"Authorization": "Bearer " + token}, nil)
	txThrottled := &types.TransactionCanceledException{CancellationReasons: []types.CancellationReason{{Code: aws.String("None")}, {Code: aws.String("ThrottlingError")}}}
	for _, tc := range []struct {
		name  string
		fake  throttled
		login bool // POST /v1/session instead of an upload
		want  int
	}{
		{"AddGrantsThroughput", throttled{add: &types.ProvisionedThroughputExceededException{Message: aws.String("slow down")}}, false, http.StatusServiceUnavailable},
		{"AddGrantsTransaction", throttled{add: txThrottled}, false, http.StatusServiceUnavailable},
		{"RateLimiterThrottling", throttled{allow: &types.ThrottlingException{}}, false, http.StatusServiceUnavailable},
		{"LoginRequestLimit", throttled{upsert: &types.RequestLimitExceeded{}}, true, http.StatusServiceUnavailable},
		{"ErrOtherFailureStays500", throttled{add: &types.TransactionCanceledException{CancellationReasons: []types.CancellationReason{{Code: aws.String("ValidationError")}}}}, false, http.StatusInternalServerError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := *f.h
			tc.fake.Store, tc.fake.Limiter = store, limiter
			h.Store, h.Limiter = tc.fake, tc.fake
			req := upload
			if tc.login {
				_, code := f.sb.NewLogin(appID)
				req = request("POST", "/v1/session", `{"code":"`+code+`","appId":"`+appID+`"}`, nil, nil)
			}
			resp, err := h.Handle(t.Context(), req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.want {
				t.Fatalf("%d %s, want %d", resp.StatusCode, resp.Body, tc.want)
			}
			if tc.want == http.StatusServiceUnavailable {
				if resp.Headers["Retry-After"] == "" || !strings.Contains(resp.Body, `"code":"unavailable"`) || !strings.Contains(resp.Body, "retry") {
					t.Fatalf("503 %v %s, want Retry-After and an unavailable code", resp.Headers, resp.Body)
				}
			}
		})
	}
}
