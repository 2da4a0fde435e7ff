package admin_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"minipush"
	"minipush/internal/admin"
)

// throttledStore is a narrow fake: the real store, except that the calls under test
// fail the way DynamoDB throttles once the SDK has given up retrying (DynamoDB Local
// never throttles).
type throttledStore struct {
	admin.Store
	err error
}

func (s throttledStore) GetCampaign(ctx context.Context, id string) (minipush.Campaign, error) {
	return minipush.Campaign{}, fmt.Errorf("dynamo: get campaign %s: %w", id, s.err)
}

func (s throttledStore) CreateCampaign(ctx context.Context, c minipush.Campaign) error {
	return fmt.Errorf("dynamo: create campaign %s: %w", c.ID, s.err)
}

// TestThrottledIs503: a DynamoDB throttle is answered as collect answers it, 503
// "unavailable" with Retry-After, on reads and keyed or unkeyed writes alike, instead
// of a 500 that tells the operator something broke. Other storage errors stay 500.
func TestThrottledIs503(t *testing.T) {
	t.Parallel()
	h, _ := MustAdmin(t)
	real := h.Store
	txThrottled := &types.TransactionCanceledException{CancellationReasons: []types.CancellationReason{{Code: aws.String("None")}, {Code: aws.String("ThrottlingError")}}}
	for _, tc := range []struct {
		name string
		err  error
		c    call
		want int
	}{
		{"ReadThroughput", &types.ProvisionedThroughputExceededException{Message: aws.String("slow down")}, call{method: "GET", target: "/v1/admin/campaigns/c1"}, http.StatusServiceUnavailable},
		{"ReadThrottling", &types.ThrottlingException{}, call{method: "GET", target: "/v1/admin/campaigns/c1"}, http.StatusServiceUnavailable},
		{"CreateRequestLimit", &types.RequestLimitExceeded{}, call{method: "POST", target: "/v1/admin/campaigns", body: subscribeCampaign}, http.StatusServiceUnavailable},
		{"CreateTransaction", txThrottled, call{method: "POST", target: "/v1/admin/campaigns", body: subscribeCampaign}, http.StatusServiceUnavailable},
		{"KeyedCreate", &types.ThrottlingException{}, call{method: "POST", target: "/v1/admin/campaigns", body: subscribeCampaign,
			header: map[string]string{admin.IdempotencyHeader: "throttled-create-1"}}, http.StatusServiceUnavailable},
		{"ErrOtherFailureStays500", &types.TransactionCanceledException{CancellationReasons: []types.CancellationReason{{Code: aws.String("ValidationError")}}},
			call{method: "GET", target: "/v1/admin/campaigns/c1"}, http.StatusInternalServerError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := *h
			h.Store = throttledStore{Store: real, err: tc.err}
			resp := do(t, &h, tc.c)
			if resp.StatusCode != tc.want {
				t.Fatalf("%s %s: %d %s, want %d", tc.c.method, tc.c.target, resp.StatusCode, resp.Body, tc.want)
			}
			retry := resp.Headers["Retry-After"]
			if tc.want == http.StatusServiceUnavailable && (retry != "2" || !strings.Contains(resp.Body, `"code":"unavailable"`)) {
				t.Fatalf("Retry-After %q, body %s; want 2 and code unavailable", retry, resp.Body)
			}
			if tc.want != http.StatusServiceUnavailable && retry != "" {
				t.Fatalf("Retry-After %q on a %d", retry, resp.StatusCode)
			}
		})
	}
	// A throttled keyed write kept nothing for its key: the same request runs again.
	resp := do(t, h, call{method: "POST", target: "/v1/admin/campaigns", body: subscribeCampaign,
		header: map[string]string{admin.IdempotencyHeader: "throttled-create-1"}})
	if resp.StatusCode != http.StatusCreated || resp.Headers[admin.ReplayedHeader] != "" {
		t.Fatalf("retry after a throttle: %d %v %s, want 201 not replayed", resp.StatusCode, resp.Headers, resp.Body)
	}
}
