package httpapi_test

import (
	"strings"
	"testing"

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
