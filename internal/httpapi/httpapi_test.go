package httpapi_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	"minipush"
	"minipush/internal/httpapi"
)

func TestUnmarshal(t *testing.T) {
	type in struct {
		Code   string             `json:"code"`
		N      int                `json:"n"`
		Items  []struct{ F bool } `json:"items"`
		Values map[string]string  `json:"values"`
	}
	for _, tc := range []struct {
		body string
		says string // "" means accepted
	}{
		{`{"code":"x"}`, ""},
		{" {\"code\":\"x\"}\n ", ""},
		{`{"code":"x"}]`, "trailing data"},
		{`{"code":"x"}}`, "trailing data"},
		{`{"code":"x"} {"code":"y"}`, "trailing data"},
		{`{"code":"x"} x`, "trailing data"},
		{``, "empty body"},
		{`{"code":`, "ends early"},
		{`[]`, "the body is an array, want an object"},
		{`"s"`, "the body is a string, want an object"},
		{`{"code":1}`, "code: got a number, want a string"},
		{`{"n":"1"}`, "n: got a string, want an integer"},
		{`{"n":1e400}`, "n: got a number, want an integer"},
		{`{"items":{}}`, "items: got an object, want an array"},
		{`{"values":[]}`, "values: got an array, want an object"},
		{`{"kode":"x"}`, `unknown field "kode"`},
	} {
		err := httpapi.Unmarshal([]byte(tc.body), &in{})
		switch {
		case tc.says == "" && err != nil:
			t.Errorf("%q: %v, want accepted", tc.body, err)
		case tc.says != "" && (minipush.ErrorCode(err) != minipush.EMALFORMED || !strings.Contains(err.Error(), tc.says)):
			t.Errorf("%q: %v, want malformed saying %q", tc.body, err, tc.says)
		case err != nil && strings.Contains(err.Error(), "httpapi_test"):
			t.Errorf("%q: %v names a Go type", tc.body, err)
		}
	}
}

// TestError maps each kind of failure to its status once: a domain code to its status,
// an AWS throttle (plain, or inside a cancelled transaction) to 503 with Retry-After,
// anything else to 500 without its cause.
func TestError(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{"Domain", minipush.Errorf(minipush.ENOTFOUND, "no campaign c1"), 404, minipush.ENOTFOUND},
		{"Throughput", fmt.Errorf("dynamo: get: %w", &types.ProvisionedThroughputExceededException{}), 503, minipush.EUNAVAILABLE},
		{"SQSThrottle", &smithy.GenericAPIError{Code: "ThrottlingException"}, 503, minipush.EUNAVAILABLE},
		{"Transaction", &types.TransactionCanceledException{CancellationReasons: []types.CancellationReason{{Code: aws.String("ThrottlingError")}}}, 503, minipush.EUNAVAILABLE},
		{"ErrOther", errors.New("dial tcp 10.0.0.1:443: connection refused"), 500, minipush.EINTERNAL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := httpapi.Error(tc.err)
			if resp.StatusCode != tc.status || httpapi.Status(tc.err) != tc.status || minipush.ErrorCode(httpapi.Classify(tc.err)) != tc.code {
				t.Fatalf("%d (Status %d, code %s), want %d %s", resp.StatusCode, httpapi.Status(tc.err), minipush.ErrorCode(httpapi.Classify(tc.err)), tc.status, tc.code)
			}
			if want := map[bool]string{true: "2"}[tc.status == 503]; resp.Headers["Retry-After"] != want {
				t.Fatalf("Retry-After %q, want %q", resp.Headers["Retry-After"], want)
			}
			if strings.Contains(resp.Body, "10.0.0.1") {
				t.Fatalf("body %s leaks the cause", resp.Body)
			}
		})
	}
}
