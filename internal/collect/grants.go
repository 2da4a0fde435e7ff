package collect

import (
	"sort"
	"strings"
	"time"

	"minipush"
	"minipush/internal/httpapi"
)

// Upload limits of POST /v1/grants. A mini-program uploads what it harvested since its
// last request, which is a handful of items; the limits bound the work (and the single
// DynamoDB transaction) one request can cause.
const (
	MaxBatch            = 50                         // items per upload
	MaxUploadBytes      = 64 << 10                   // request body
	MaxGrantsPerUpload  = minipush.MaxGrantsPerWrite // grants per upload: one transaction
	MaxTemplatesPerItem = 3                          // wx.requestSubscribeMessage takes at most 3 ids
	MaxKeyLen           = minipush.MaxGrantValueLen  // idempotency keys and template ids
)

// Item statuses in an upload answer.
const (
	StatusAccepted  = "accepted"
	StatusDuplicate = "duplicate"
	StatusRejected  = "rejected"
	// StatusIgnored: a valid item this app does not record from the client (subscribe
	// accepts of an app whose subscribeSource is the push). Not an error: WeChat's push
	// stores the same accept.
	StatusIgnored = "ignored"
)

// Machine-readable reasons of a rejected item.
const (
	ReasonMockFormID       = "mock_form_id"       // the simulator's "the formId is a mock one"
	ReasonEmpty            = "empty"              // formId, prepayId or template id missing
	ReasonTooLong          = "too_long"           // a value, key or template id over MaxKeyLen
	ReasonOverUserLimit    = "over_user_limit"    // the user already holds the maximum of live grants
	ReasonUnknownType      = "unknown_type"       // type is not form, prepay or subscribe
	ReasonBadCollectedAt   = "bad_collected_at"   // collectedAt is not RFC 3339
	ReasonExpired          = "expired"            // collectedAt is more than 7 days ago: the grant is dead
	ReasonNotAccepted      = "not_accepted"       // no template was accepted (reject, ban, filter)
	ReasonMissingKey       = "missing_key"        // a subscribe item without its idempotency key
	ReasonBadResult        = "bad_result"         // a result other than accept, reject, ban, filter
	ReasonTooManyTemplates = "too_many_templates" // more templates than one WeChat call can ask for
	ReasonFromPush         = "recorded_from_push" // ignored: the app records subscribe accepts from WeChat's push
	// ReasonBadCharacters: a template id or key holds a character that storage keys use
	// as a separator ("#") or a control character (NUL separates the parts of a grant's
	// id). A template id is part of the grants' expiry-index key, so "A#0" would fall
	// into template "A"'s key range.
	ReasonBadCharacters = "bad_characters"
)

// uploadBody is the JSON of POST /v1/grants.
type uploadBody struct {
	Grants []uploadItem `json:"grants"`
}

// uploadItem is one harvested grant as the client sends it. A misspelt field name fails
// decoding; a field that does not belong to the item's type is ignored.
type uploadItem struct {
	Type        string            `json:"type"`
	FormID      *string           `json:"formId,omitempty"`
	PrepayID    *string           `json:"prepayId,omitempty"`
	CollectedAt string            `json:"collectedAt,omitempty"`
	Key         string            `json:"key,omitempty"`
	Results     map[string]string `json:"results,omitempty"`
}

// Item is one decoded upload item: the grants it yields, or why it yields none.
type Item struct {
	Grants    []minipush.Grant
	Templates []string // subscribe: the accepted templates, in the order of Grants
	Reason    string   // set when the item is rejected or ignored; then Grants is empty
	Ignored   bool     // valid, but not recorded from this source
}

// DecodeGrants decodes and validates an upload body of the user (appID, openID) at now.
// It is pure: no storage, no clock but now. It returns an EMALFORMED error for a body
// that is not the upload JSON, ETOOLARGE for more than MaxBatch items or
// MaxGrantsPerUpload grants, EINVALID for an empty batch, and otherwise one Item per
// uploaded item. Form and prepay grants expire 7 days after collectedAt, which is
// clamped to now when in the future (a client clock cannot extend a grant); one older
// than 7 days is rejected as expired. Subscribe grants are kept for subscribeRetention.
func DecodeGrants(body []byte, appID, openID string, now time.Time, subscribeRetention time.Duration) ([]Item, error) {
	if len(body) > MaxUploadBytes {
		return nil, minipush.Errorf(minipush.ETOOLARGE, "body is %d bytes, over the %d byte limit", len(body), MaxUploadBytes)
	}
	var in uploadBody
	if err := httpapi.Unmarshal(body, &in); err != nil {
		return nil, err
	}
	switch {
	case in.Grants == nil:
		return nil, minipush.Errorf(minipush.EMALFORMED, "grants is required")
	case len(in.Grants) == 0:
		return nil, minipush.Errorf(minipush.EINVALID, "grants is empty")
	case len(in.Grants) > MaxBatch:
		return nil, minipush.Errorf(minipush.ETOOLARGE, "%d grants, at most %d per upload", len(in.Grants), MaxBatch)
	}
	now = now.Truncate(time.Second) // stored with second precision
	items := make([]Item, len(in.Grants))
	total := 0
	for i, it := range in.Grants {
		items[i] = it.validate(appID, openID, now, subscribeRetention)
		total += len(items[i].Grants)
	}
	if total > MaxGrantsPerUpload {
		return nil, minipush.Errorf(minipush.ETOOLARGE, "%d grants, at most %d per upload", total, MaxGrantsPerUpload)
	}
	return items, nil
}

func rejected(reason string) Item { return Item{Reason: reason} }

// checkValue applies the rules shared by every WeChat-issued string.
func checkValue(v string) string {
	switch {
	case strings.TrimSpace(v) == "":
		return ReasonEmpty
	case len(v) > MaxKeyLen:
		return ReasonTooLong
	case v == minipush.MockFormID:
		return ReasonMockFormID
	}
	return ""
}

// checkKeyPart refuses the characters that the storage keys a client-chosen string
// enters use to separate their parts (internal/dynamo, minipush.GrantChannel,
// minipush.GrantID): "#", and every control character, NUL among them.
func checkKeyPart(v string) string {
	for _, r := range v {
		if r == '#' || r < 0x20 || r == 0x7f {
			return ReasonBadCharacters
		}
	}
	return ""
}

func (it uploadItem) validate(appID, openID string, now time.Time, retention time.Duration) Item {
	kind := minipush.GrantKind(it.Type)
	switch kind {
	case minipush.GrantForm, minipush.GrantPrepay:
		v := it.FormID
		if kind == minipush.GrantPrepay {
			v = it.PrepayID
		}
		if v == nil {
			return rejected(ReasonEmpty)
		}
		if r := checkValue(*v); r != "" {
			return rejected(r)
		}
		collected := now
		if it.CollectedAt != "" {
			t, err := time.Parse(time.RFC3339, it.CollectedAt)
			if err != nil {
				return rejected(ReasonBadCollectedAt)
			}
			t = t.Truncate(time.Second)
			if t.Before(collected) {
				collected = t
			}
		}
		expires := collected.Add(minipush.FormGrantValidity)
		if !expires.After(now) {
			return rejected(ReasonExpired)
		}
		return Item{Grants: []minipush.Grant{{
			AppID: appID, OpenID: openID, Kind: kind, ID: minipush.GrantID(kind, *v), Value: *v,
			Uses: kind.Uses(), CollectedAt: collected.UTC(), ExpiresAt: expires.UTC(),
		}}}
	case minipush.GrantSubscribe:
		switch {
		case it.Key == "":
			return rejected(ReasonMissingKey)
		case len(it.Key) > MaxKeyLen:
			return rejected(ReasonTooLong)
		case checkKeyPart(it.Key) != "":
			return rejected(ReasonBadCharacters)
		case len(it.Results) == 0:
			return rejected(ReasonEmpty)
		case len(it.Results) > MaxTemplatesPerItem:
			return rejected(ReasonTooManyTemplates)
		}
		tpls := make([]string, 0, len(it.Results))
		for tpl := range it.Results {
			tpls = append(tpls, tpl)
		}
		sort.Strings(tpls) // map order is random; answers and grant order are not
		var out Item
		for _, tpl := range tpls {
			if r := checkValue(tpl); r != "" {
				return rejected(r)
			}
			if r := checkKeyPart(tpl); r != "" {
				return rejected(r)
			}
			switch it.Results[tpl] {
			case "accept":
				out.Templates = append(out.Templates, tpl)
				out.Grants = append(out.Grants, minipush.Grant{
					AppID: appID, OpenID: openID, Kind: kind, ID: minipush.GrantID(kind, tpl, it.Key),
					TemplateID: tpl, Uses: kind.Uses(), CollectedAt: now.UTC(), ExpiresAt: now.Add(retention).UTC(),
				})
			case "reject", "ban", "filter":
			default:
				return rejected(ReasonBadResult)
			}
		}
		if len(out.Grants) == 0 {
			return rejected(ReasonNotAccepted)
		}
		return out
	}
	return rejected(ReasonUnknownType)
}
