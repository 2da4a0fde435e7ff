package collect

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"minipush"
	"minipush/internal/httpapi"
)

// ItemResult is the answer for one uploaded item, in upload order.
type ItemResult struct {
	Index  int    `json:"index"`
	Status string `json:"status"`           // accepted, duplicate, rejected or ignored
	Reason string `json:"reason,omitempty"` // rejected and ignored only
	// Templates answers a subscribe item per accepted template (one item may accept
	// several); the item is accepted when any of them was.
	Templates map[string]string `json:"templates,omitempty"`
}

// UploadAnswer is the body of POST /v1/grants: 200 when any item was valid, and (with
// the error code and message) 422 when none was.
type UploadAnswer struct {
	Code      string       `json:"code,omitempty"`
	Message   string       `json:"message,omitempty"`
	Results   []ItemResult `json:"results"`
	Accepted  int          `json:"accepted"`
	Duplicate int          `json:"duplicate"`
	Rejected  int          `json:"rejected"`
	Ignored   int          `json:"ignored"`
}

// grants stores a batch of harvested grants of the session's user with one AddGrants
// (one DynamoDB transaction): authenticate, decode and validate, rate-limit, store.
// The rate limit counts only uploads that would write: a refused request (400, 401,
// 413, 422) touches no table at all, the rate counter included, and a 429 is a
// conditional update that failed, so it changes nothing either.
func (h *Handler) grants(ctx context.Context, log *slog.Logger, req events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
	appID, openID, err := h.authenticate(req)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	log = log.With("appid", appID, "user", h.userTag(appID, openID))
	body, err := httpapi.Body(req, MaxUploadBytes)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	items, err := DecodeGrants(body, appID, openID, h.Now(), h.SubscribeRetention)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	if app, ok := h.Apps.Find(appID); ok && !app.AcceptsFrom(minipush.SourceClient) {
		ignoreSubscribe(items)
	}
	var all []minipush.Grant
	for _, it := range items {
		all = append(all, it.Grants...)
	}
	if len(all) == 0 && !slices.ContainsFunc(items, func(it Item) bool { return !it.Ignored }) {
		ans := answer(items, nil)
		log.Info("grants ignored", "items", len(items), "ignored", ans.Ignored)
		return httpapi.JSON(http.StatusOK, ans), nil
	}
	if len(all) == 0 {
		ans := answer(items, nil)
		ans.Code, ans.Message = minipush.EINVALID, "no item is a valid grant: "+reasons(items)
		log.Info("grants refused", "items", len(items), "rejected", ans.Rejected)
		return httpapi.JSON(http.StatusUnprocessableEntity, ans), nil
	}
	ok, err := h.Limiter.Allow(ctx, "collect#"+minipush.UserKey(appID, openID), h.RatePerMinute, time.Minute)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	if !ok {
		return events.APIGatewayV2HTTPResponse{}, minipush.Errorf(minipush.ERATELIMIT, "at most %d uploads a minute: queue and retry later", h.RatePerMinute)
	}
	statuses, err := h.Store.AddGrants(ctx, appID, openID, all, h.MaxLiveGrants)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	countHarvested(ctx, appID, all, statuses, minipush.AddAccepted)
	ans := answer(items, statuses)
	log.Info("grants uploaded", "items", len(items), "accepted", ans.Accepted, "duplicate", ans.Duplicate, "rejected", ans.Rejected)
	return httpapi.JSON(http.StatusOK, ans), nil
}

// ignoreSubscribe marks the valid subscribe items ignored: the app records those accepts
// from WeChat's push, which reports the same accept under an id the client cannot know.
func ignoreSubscribe(items []Item) {
	for i, it := range items {
		if len(it.Grants) > 0 && it.Grants[0].Kind == minipush.GrantSubscribe {
			items[i] = Item{Reason: ReasonFromPush, Ignored: true}
		}
	}
}

// reasons lists the distinct rejection reasons of items, in order of first appearance,
// so a refused upload's message says what was wrong without reading every result.
func reasons(items []Item) string {
	var out []string
	for _, it := range items {
		if it.Reason != "" && !it.Ignored && !slices.Contains(out, it.Reason) {
			out = append(out, it.Reason)
		}
	}
	return strings.Join(out, ", ")
}

// answer merges the decoder's verdicts with the store's, which come flat in the order
// of the items' grants.
func answer(items []Item, statuses []minipush.AddStatus) UploadAnswer {
	ans := UploadAnswer{Results: make([]ItemResult, len(items))}
	next := 0
	for i, it := range items {
		r := ItemResult{Index: i, Status: StatusRejected, Reason: it.Reason}
		if it.Ignored {
			r.Status = StatusIgnored
		}
		if it.Reason == "" {
			var accepted, duplicate bool
			for j := range it.Grants {
				st := statuses[next]
				next++
				var s string
				switch st {
				case minipush.AddAccepted:
					accepted, s = true, StatusAccepted
				case minipush.AddDuplicate:
					duplicate, s = true, StatusDuplicate
				default:
					s = string(st)
					r.Reason = string(st)
				}
				if it.Grants[j].Kind == minipush.GrantSubscribe {
					if r.Templates == nil {
						r.Templates = map[string]string{}
					}
					r.Templates[it.Templates[j]] = s
				}
			}
			switch {
			case accepted:
				r.Status, r.Reason = StatusAccepted, ""
			case duplicate:
				r.Status, r.Reason = StatusDuplicate, ""
			}
		}
		switch r.Status {
		case StatusAccepted:
			ans.Accepted++
		case StatusDuplicate:
			ans.Duplicate++
		case StatusIgnored:
			ans.Ignored++
		default:
			ans.Rejected++
		}
		ans.Results[i] = r
	}
	return ans
}
