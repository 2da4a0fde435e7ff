package wechat

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"syscall"
)

// Error is an error answer from WeChat: a non-zero errcode, or a non-2xx status or
// unreadable body (then Code is 0). Match on Code, never on Msg: WeChat appends a
// per-request id to every errmsg.
type Error struct {
	Code       int    // errcode; 0 when the answer had none
	Msg        string // errmsg as sent, with any echoed secret redacted
	RID        string // request id from errmsg ("rid: x" or "hint: [x]"), for WeChat support
	HTTPStatus int
	API        string // URL path of the call, e.g. /cgi-bin/message/subscribe/send
}

// Error implements the error interface.
func (e *Error) Error() string {
	if e.Code != 0 {
		return fmt.Sprintf("wechat: %s: errcode %d: %s", e.API, e.Code, e.Msg)
	}
	return fmt.Sprintf("wechat: %s: http %d: %s", e.API, e.HTTPStatus, e.Msg)
}

// Action is what the caller should do about a failed call. It is decided here, at the
// boundary, so the sender never reads errcodes (WECHAT.md §7).
type Action int

// The actions, from "nothing went wrong" to "nobody can know what happened".
const (
	// OK is Classify(nil).
	OK Action = iota
	// Retry: transient and WeChat proved nothing was done (errcode -1 busy, minute
	// quota, concurrent send) or the request never left this process; back off and try
	// again with the same input.
	Retry
	// Refresh: the access token is stale; get a new one (single-flight) and retry once.
	Refresh
	// NextGrant: this formId or grant was rejected; drop it and try the user's next one.
	NextGrant
	// FailRecipient: this recipient or message cannot succeed; mark it failed.
	FailRecipient
	// Abort: every recipient would fail the same way (bad template, quota, bad
	// credentials, retired API); pause the campaign and alert.
	Abort
	// Unknown: the request left this process and no answer from WeChat itself says
	// what became of it (no answer, a timeout, an unreadable body, an HTTP 5xx or 429
	// from whatever stands in front of WeChat), so a message may or may not have been
	// delivered and the grant may or may not be spent. A send must not be repeated: it
	// is recorded unknown. A call that sends nothing (token, code2Session) may be
	// retried.
	Unknown
)

// String returns the action's name for logs and metrics.
func (a Action) String() string {
	switch a {
	case OK:
		return "ok"
	case Retry:
		return "retry"
	case Refresh:
		return "refresh"
	case NextGrant:
		return "next_grant"
	case FailRecipient:
		return "fail_recipient"
	case Abort:
		return "abort"
	case Unknown:
		return "unknown"
	}
	return "action(" + strconv.Itoa(int(a)) + ")"
}

// rule is how one errcode is handled.
type rule struct {
	action Action
	reason string
}

// rules maps errcodes to actions (WECHAT.md §7). Codes marked UNCONFIRMED there are
// included because treating them wrongly costs more than carrying an extra line.
var rules = map[int]rule{
	-1:    {Retry, "system_busy"},
	45011: {Retry, "minute_quota"},

	40001: {Refresh, "token_invalid"},
	40014: {Refresh, "token_invalid"},
	42001: {Refresh, "token_expired"},
	41001: {Refresh, "token_missing"},

	41028: {NextGrant, "grant_invalid"},
	41029: {NextGrant, "grant_used"},
	41031: {NextGrant, "grant_blocked"},

	43101: {FailRecipient, "user_refused"},
	40003: {FailRecipient, "invalid_openid"},
	47003: {FailRecipient, "data_invalid"},
	41030: {Abort, "page_invalid"}, // every recipient gets the same page: pause, fix the campaign (WECHAT.md §7)
	43107: {Abort, "template_banned"},
	43108: {Retry, "concurrent_send"}, // one send per user at a time; later succeeds
	45168: {FailRecipient, "sensitive_words"},
	40038: {FailRecipient, "long_term_cap"},
	43004: {FailRecipient, "not_following"},
	45015: {FailRecipient, "cs_window_closed"},
	45047: {FailRecipient, "cs_quota"},
	40029: {FailRecipient, "code_invalid"},
	40163: {FailRecipient, "code_used"},
	40226: {FailRecipient, "code_blocked"},
	41008: {FailRecipient, "code_missing"},

	40037: {Abort, "template_invalid"},
	45009: {Abort, "quota_exceeded"},
	48001: {Abort, "api_unauthorized"},
	45103: {Abort, "api_unsupported"},
	45109: {Abort, "api_withdrawn"},
	40013: {Abort, "invalid_appid"},
	40125: {Abort, "invalid_secret"},
	40164: {Abort, "ip_not_whitelisted"},
	40243: {Abort, "secret_frozen"},
	40002: {Abort, "invalid_grant_type"},
	43002: {Abort, "method_invalid"},
	47001: {Abort, "body_invalid"},

	// Template management (gettemplate, getpubtemplatekeywords).
	20001:  {Retry, "system_busy"},
	200001: {Retry, "system_busy"},
	200002: {FailRecipient, "param_invalid"},
	200014: {FailRecipient, "tid_invalid"},
	200100: {Abort, "account_type_invalid"},
}

// tokenAPIs are the calls where 40001 means a wrong AppSecret, not a stale token, so
// refreshing would loop.
var tokenAPIs = map[string]bool{pathToken: true, pathStableToken: true}

// Classify says what to do about err from a Client method. Errcodes map by the table
// in WECHAT.md §7; an errcode not in the table is Abort, because a new code is more
// likely a config or API change than a per-user problem and pausing is recoverable
// while failing every recipient is not. Transport failures are Retry when the request
// was never fully written and Unknown once it was.
//
// An HTTP 5xx or 429 without an errcode is Unknown, not Retry: WeChat answers its own
// errors (busy, quotas) as errcode JSON, so a bare 502/503/504/429 comes from a gateway,
// load balancer or proxy on the way, and none of them proves the request was not
// forwarded (a 504 is by definition an upstream that did not answer in time; a 502 may
// follow an upstream that processed the request and then dropped the connection; a
// proxy's 429 may come from its own upstream). WeChat has no idempotency key, so
// retrying such a send can message the user twice (DESIGN.md, "Only a definite answer
// is retried"). An errcode in the body still wins over the status (errcode -1 with a
// 5xx is Retry). Other non-2xx are Abort (a wrong base URL or path: nothing reached the
// API); an unreadable 2xx answer is Unknown. Any other error (not from this package)
// is Unknown.
func Classify(err error) Action {
	return classify(err).action
}

// Reason returns a short machine-readable reason for err, for metrics and the
// delivery record: the rule's name (e.g. "user_refused", "grant_used",
// "quota_exceeded"), "errcode_N" for an unlisted errcode, "http_N", "timeout",
// "canceled", "connection_refused", "dns", "network", "no_answer",
// "bad_response", or "" for nil.
func Reason(err error) string {
	return classify(err).reason
}

func classify(err error) rule {
	if err == nil {
		return rule{OK, ""}
	}
	var we *Error
	if errors.As(err, &we) {
		switch {
		case we.Code == 40001 && tokenAPIs[we.API]:
			return rule{Abort, "invalid_secret"}
		case we.Code != 0:
			if r, ok := rules[we.Code]; ok {
				return r
			}
			return rule{Abort, "errcode_" + strconv.Itoa(we.Code)}
		case we.HTTPStatus >= 500 || we.HTTPStatus == 429:
			// No proof that nothing was sent: see Classify.
			return rule{Unknown, "http_" + strconv.Itoa(we.HTTPStatus)}
		case we.HTTPStatus >= 200 && we.HTTPStatus < 300:
			return rule{Unknown, "bad_response"}
		default:
			return rule{Abort, "http_" + strconv.Itoa(we.HTTPStatus)}
		}
	}
	var re *RequestError
	if errors.As(err, &re) {
		reason := transportReason(re.Err, re.Written)
		if re.Written {
			return rule{Unknown, reason}
		}
		return rule{Retry, reason}
	}
	return rule{Unknown, "unclassified"}
}

// transportReason names a transport failure.
func transportReason(err error, written bool) string {
	var dnsErr *net.DNSError
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection_refused"
	case errors.As(err, &dnsErr):
		return "dns"
	case written:
		return "no_answer"
	}
	return "network"
}

// ridPatterns find the request id WeChat appends to errmsg: "rid: 64f7-..." in newer
// answers, "hint: [xxxx]" (sometimes "hints: [ req_id: xxxx ]") in older ones.
var ridPatterns = []*regexp.Regexp{
	regexp.MustCompile(`rid:\s*([0-9A-Za-z_-]+)`),
	regexp.MustCompile(`hints?:\s*\[\s*(?:req_id:\s*)?([^\]\s]+)\s*\]`),
}

// ExtractRID returns the request id in a WeChat errmsg, or "" if it has none.
func ExtractRID(errmsg string) string {
	for _, p := range ridPatterns {
		if m := p.FindStringSubmatch(errmsg); m != nil {
			return m[1]
		}
	}
	return ""
}
