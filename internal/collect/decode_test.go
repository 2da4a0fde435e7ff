package collect_test

import (
	"strings"
	"testing"
	"time"

	"minipush"
	"minipush/internal/collect"
)

var decodeNow = time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)

const retention = 365 * 24 * time.Hour

func TestDecodeGrants(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", collect.MaxKeyLen+1)
	for _, tc := range []struct {
		name   string
		item   string
		reason string
		kind   minipush.GrantKind
		expiry time.Time // zero: not checked
	}{
		{"Form", `{"type":"form","formId":"f1"}`, "", minipush.GrantForm, decodeNow.Add(minipush.FormGrantValidity)},
		{"FormCollectedAt", `{"type":"form","formId":"f1","collectedAt":"2026-11-24T08:00:00Z"}`, "", minipush.GrantForm, decodeNow.Add(6 * 24 * time.Hour)},
		{"FormFutureClamped", `{"type":"form","formId":"f1","collectedAt":"2027-01-01T00:00:00Z"}`, "", minipush.GrantForm, decodeNow.Add(minipush.FormGrantValidity)},
		{"Prepay", `{"type":"prepay","prepayId":"wx201410272009395522657a690389285100"}`, "", minipush.GrantPrepay, decodeNow.Add(minipush.FormGrantValidity)},
		{"Subscribe", `{"type":"subscribe","key":"k1","results":{"T1":"accept","T2":"reject"}}`, "", minipush.GrantSubscribe, decodeNow.Add(retention)},
		{"ErrMockFormID", `{"type":"form","formId":"the formId is a mock one"}`, collect.ReasonMockFormID, "", time.Time{}},
		{"ErrEmptyFormID", `{"type":"form","formId":"  "}`, collect.ReasonEmpty, "", time.Time{}},
		{"ErrMissingFormID", `{"type":"form"}`, collect.ReasonEmpty, "", time.Time{}},
		{"ErrPrepayWithFormID", `{"type":"prepay","formId":"f"}`, collect.ReasonEmpty, "", time.Time{}},
		{"ErrTooLong", `{"type":"form","formId":"` + long + `"}`, collect.ReasonTooLong, "", time.Time{}},
		{"ErrUnknownType", `{"type":"coupon","formId":"f"}`, collect.ReasonUnknownType, "", time.Time{}},
		{"ErrBadCollectedAt", `{"type":"form","formId":"f","collectedAt":"yesterday"}`, collect.ReasonBadCollectedAt, "", time.Time{}},
		{"ErrExpired", `{"type":"form","formId":"f","collectedAt":"2026-11-18T08:00:00Z"}`, collect.ReasonExpired, "", time.Time{}},
		{"ErrNotAccepted", `{"type":"subscribe","key":"k","results":{"T1":"reject","T2":"ban","T3":"filter"}}`, collect.ReasonNotAccepted, "", time.Time{}},
		{"ErrMissingKey", `{"type":"subscribe","results":{"T1":"accept"}}`, collect.ReasonMissingKey, "", time.Time{}},
		{"ErrKeyTooLong", `{"type":"subscribe","key":"` + long + `","results":{"T1":"accept"}}`, collect.ReasonTooLong, "", time.Time{}},
		{"ErrNoResults", `{"type":"subscribe","key":"k"}`, collect.ReasonEmpty, "", time.Time{}},
		{"ErrEmptyTemplate", `{"type":"subscribe","key":"k","results":{"":"accept"}}`, collect.ReasonEmpty, "", time.Time{}},
		{"ErrBadResult", `{"type":"subscribe","key":"k","results":{"T1":"maybe"}}`, collect.ReasonBadResult, "", time.Time{}},
		{"ErrTooManyTemplates", `{"type":"subscribe","key":"k","results":{"A":"accept","B":"accept","C":"accept","D":"accept"}}`, collect.ReasonTooManyTemplates, "", time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			items, err := collect.DecodeGrants([]byte(`{"grants":[`+tc.item+`]}`), "wx1", "o1", decodeNow, retention)
			if err != nil {
				t.Fatalf("DecodeGrants: %v", err)
			}
			if len(items) != 1 {
				t.Fatalf("%d items, want 1", len(items))
			}
			it := items[0]
			if it.Reason != tc.reason {
				t.Fatalf("reason %q, want %q", it.Reason, tc.reason)
			}
			if tc.reason != "" {
				if len(it.Grants) != 0 {
					t.Fatalf("rejected item yields %d grants", len(it.Grants))
				}
				return
			}
			if len(it.Grants) != 1 {
				t.Fatalf("%d grants, want 1", len(it.Grants))
			}
			g := it.Grants[0]
			if g.Kind != tc.kind || g.AppID != "wx1" || g.OpenID != "o1" || g.ID == "" || g.Uses != tc.kind.Uses() {
				t.Fatalf("grant %+v", g)
			}
			if !g.ExpiresAt.Equal(tc.expiry) {
				t.Fatalf("expires %v, want %v", g.ExpiresAt, tc.expiry)
			}
		})
	}
}

func TestDecodeGrantsStableIDs(t *testing.T) {
	t.Parallel()
	body := []byte(`{"grants":[{"type":"form","formId":"f1"},{"type":"subscribe","key":"k","results":{"T1":"accept","T2":"accept"}}]}`)
	a, err := collect.DecodeGrants(body, "wx1", "o1", decodeNow, retention)
	if err != nil {
		t.Fatal(err)
	}
	b, err := collect.DecodeGrants(body, "wx1", "o1", decodeNow.Add(time.Hour), retention)
	if err != nil {
		t.Fatal(err)
	}
	if a[0].Grants[0].ID != b[0].Grants[0].ID || a[1].Grants[1].ID != b[1].Grants[1].ID {
		t.Fatal("a retry of the same upload derives different grant ids")
	}
	if a[1].Grants[0].ID == a[1].Grants[1].ID || a[1].Grants[0].TemplateID != "T1" || a[1].Templates[1] != "T2" {
		t.Fatalf("subscribe item grants %+v", a[1])
	}
}

func TestDecodeGrantsErrors(t *testing.T) {
	t.Parallel()
	many := `{"grants":[` + strings.Repeat(`{"type":"form","formId":"f"},`, collect.MaxBatch) + `{"type":"form","formId":"f"}]}`
	subs := strings.Repeat(`{"type":"subscribe","key":"k","results":{"A":"accept","B":"accept","C":"accept"}},`, 34)
	tooManyGrants := `{"grants":[` + strings.TrimSuffix(subs, ",") + `]}`
	for _, tc := range []struct {
		name, body, code string
	}{
		{"ErrEmptyBody", "  ", minipush.EMALFORMED},
		{"ErrNotJSON", "grants=1", minipush.EMALFORMED},
		{"ErrArray", `[{"type":"form","formId":"f"}]`, minipush.EMALFORMED},
		{"ErrUnknownField", `{"grants":[{"type":"form","form_id":"f"}]}`, minipush.EMALFORMED},
		{"ErrTrailing", `{"grants":[]} {}`, minipush.EMALFORMED},
		{"ErrNoGrantsField", `{}`, minipush.EMALFORMED},
		{"ErrItemNotObject", `{"grants":["f"]}`, minipush.EMALFORMED},
		{"ErrEmptyBatch", `{"grants":[]}`, minipush.EINVALID},
		{"ErrTooManyItems", many, minipush.ETOOLARGE},
		{"ErrTooManyGrants", tooManyGrants, minipush.ETOOLARGE},
		{"ErrTooBig", `{"grants":[{"type":"form","formId":"` + strings.Repeat("x", collect.MaxUploadBytes) + `"}]}`, minipush.ETOOLARGE},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			items, err := collect.DecodeGrants([]byte(tc.body), "wx1", "o1", decodeNow, retention)
			if got := minipush.ErrorCode(err); got != tc.code {
				t.Fatalf("error %v (code %q), want code %q", err, got, tc.code)
			}
			if items != nil {
				t.Fatalf("items %+v on error", items)
			}
		})
	}
}

// FuzzDecodeGrants checks the decoder never panics, yields nothing on an error, never
// yields grants for a rejected item, and every grant it yields could be stored as is.
func FuzzDecodeGrants(f *testing.F) {
	for _, s := range []string{
		`{"grants":[{"type":"form","formId":"f1","collectedAt":"2026-11-24T08:00:00Z"}]}`,
		`{"grants":[{"type":"prepay","prepayId":"p"},{"type":"subscribe","key":"k","results":{"T":"accept"}}]}`,
		`{"grants":[{"type":"form","formId":"the formId is a mock one"}]}`,
		`{"grants":[{"type":"subscribe","key":"","results":{"T":"accept"}}]}`,
		`{"grants":[]}`, `{}`, `[]`, `null`, `{"grants":null}`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		items, err := collect.DecodeGrants(body, "wx1", "o1", decodeNow, retention)
		if err != nil {
			if items != nil {
				t.Fatalf("items alongside error %v", err)
			}
			if minipush.ErrorMessage(err) == "internal error" {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if len(items) == 0 || len(items) > collect.MaxBatch {
			t.Fatalf("%d items without an error", len(items))
		}
		total := 0
		for i, it := range items {
			if it.Reason != "" && len(it.Grants) > 0 {
				t.Fatalf("item %d rejected (%s) with grants", i, it.Reason)
			}
			if it.Reason == "" && len(it.Grants) == 0 {
				t.Fatalf("item %d neither rejected nor yielding grants", i)
			}
			total += len(it.Grants)
			for _, g := range it.Grants {
				switch {
				case !g.Kind.Valid(), g.ID == "", g.AppID != "wx1", g.OpenID != "o1", g.Uses != g.Kind.Uses():
					t.Fatalf("bad grant %+v", g)
				case !g.ExpiresAt.After(decodeNow), g.CollectedAt.After(decodeNow):
					t.Fatalf("grant times %+v", g)
				case g.Kind != minipush.GrantSubscribe && (strings.TrimSpace(g.Value) == "" || len(g.Value) > collect.MaxKeyLen || g.Value == minipush.MockFormID):
					t.Fatalf("bad value %+v", g)
				case g.Kind == minipush.GrantSubscribe && (g.TemplateID == "" || len(g.TemplateID) > collect.MaxKeyLen):
					t.Fatalf("bad template %+v", g)
				case g.Kind != minipush.GrantSubscribe && g.ExpiresAt.After(decodeNow.Add(minipush.FormGrantValidity)):
					t.Fatalf("form grant outlives 7 days from now: %+v", g)
				}
			}
		}
		if total > collect.MaxGrantsPerUpload {
			t.Fatalf("%d grants, over the limit", total)
		}
	})
}
