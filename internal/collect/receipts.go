package collect

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"minipush"
	"minipush/internal/metrics"
)

// Receipts: WeChat's subscribe_msg_sent_event reports, for each message it sent, whether
// an asynchronous failure kept it from the user (ErrorCode 0 means none was reported,
// which is not a read receipt). Each List item names the message by the msgid its send
// was answered with, and the push names the user (FromUserName) and the item the
// template; the sender indexed the delivery by user, template and time, so the receipt
// moves that delivery from sent to delivered or async_failed (dynamo.DB.RecordReceipt):
// the one with the item's msgid, else, for a send whose answer carried no msgid, the
// one candidate of a time window around the push's CreateTime. Several candidates are
// ambiguous: acknowledged, counted (metrics.Receipts, Result=ambiguous), nothing
// changed, as crediting the wrong delivery is worse than crediting none.
//
// Parsing follows what WeChat really sends (WECHAT.md §8), which several SDKs got wrong:
// XML with the SubscribeMsgSentEvent wrapper, JSON without it (and with it, should it
// come), JSON List an object for one item and an array for several, and numbers
// (MsgID above 2^53, ErrorCode) as numbers or strings, never through float64.
//
// A push is validated whole before anything is written: one item that does not parse
// refuses the push (400, so WeChat retries and the log shows it) and applies nothing.
// An item that matches no delivery changes nothing. While the push is fresh
// (CreateTime within ReceiptGrace) it is answered 503 so that WeChat retries it: the
// receipt can overtake the sender's final write, which stores the msgid and the index
// keys (seen locally with a loaded DynamoDB Local), and a retry finds it. The rest of
// such a push is recorded meanwhile and not counted again on the retry. Older ones are
// acknowledged and only counted as unmatched.
//
// https://developers.weixin.qq.com/miniprogram/dev/framework/open-ability/subscribe-message.html

// ReceiptGrace is how long after its CreateTime a receipt whose msgid matches nothing
// is answered 503 (WeChat retries) rather than acknowledged.
const ReceiptGrace = 2 * time.Minute

// maxErrorStatus bounds the ErrorStatus kept on a delivery: WeChat's are short
// ("success", "fail:..."), and the push is not trusted to size our items.
const maxErrorStatus = 256

// maxMsgIDDigits bounds a msgid: WeChat's is an int64, at most 19 digits.
const maxMsgIDDigits = 20

// flexNum is a number field that arrives as a JSON number or a JSON string ("0"), kept
// as its decimal text so that a msgid above 2^53 keeps every digit. XML gives it as
// text.
type flexNum string

func (f *flexNum) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexNum(strings.TrimSpace(s))
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	*f = flexNum(n.String())
	return nil
}

// receiptsOf validates a sent event's List items into receipts of appID, or refuses the
// whole push with EMALFORMED naming the first bad item.
func receiptsOf(appID string, ev pushEvent) ([]minipush.Receipt, error) {
	if len(ev.Items) == 0 {
		return nil, minipush.Errorf(minipush.EMALFORMED, "sent event without List items")
	}
	created, err := strconv.ParseInt(ev.CreateTime, 10, 64)
	if err != nil {
		return nil, minipush.Errorf(minipush.EMALFORMED, "push without a valid CreateTime")
	}
	out := make([]minipush.Receipt, 0, len(ev.Items))
	for i, it := range ev.Items {
		tpl := strings.TrimSpace(it.TemplateID)
		if tpl == "" || checkValue(tpl) != "" {
			return nil, minipush.Errorf(minipush.EMALFORMED, "sent event List[%d]: invalid TemplateId", i)
		}
		msgID := strings.TrimSpace(string(it.MsgID))
		if _, err := strconv.ParseUint(msgID, 10, 64); err != nil || len(msgID) > maxMsgIDDigits || strings.HasPrefix(msgID, "+") {
			return nil, minipush.Errorf(minipush.EMALFORMED, "sent event List[%d]: MsgID %q is not a decimal id", i, truncate(msgID, 32))
		}
		// Keep the msgid as the sender stored it: the canonical decimal.
		n, _ := strconv.ParseUint(msgID, 10, 64)
		msgID = strconv.FormatUint(n, 10)
		code, err := strconv.Atoi(strings.TrimSpace(string(it.ErrorCode)))
		if err != nil {
			return nil, minipush.Errorf(minipush.EMALFORMED, "sent event List[%d]: ErrorCode %q is not a number", i, truncate(string(it.ErrorCode), 32))
		}
		out = append(out, minipush.Receipt{
			AppID: appID, OpenID: ev.OpenID, TemplateID: tpl, MsgID: msgID,
			ErrorCode: code, ErrorStatus: truncate(strings.TrimSpace(it.ErrorStatus), maxErrorStatus),
			At: time.Unix(created, 0).UTC(),
		})
	}
	return out, nil
}

// truncate cuts s to at most n bytes on a character boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// applyReceipts records a validated sent event's receipts one by one. Each record is
// conditional and counted with its write (see dynamo.DB.RecordReceipt), so WeChat's
// retry of a push that failed midway records the rest and counts nothing twice.
//
// An app with receipts off (minipush.App.Receipts) has its pushes acknowledged and
// nothing changed: its sends wrote no index entry, so a lookup would find nothing and,
// while the push is fresh, answer 503 for WeChat to retry in vain; and a delivery
// indexed while the app still had receipts on is left as it is, as the operator asked.
// They are counted (Result=off) so an operator who forgot to turn them on sees them.
func (h *Handler) applyReceipts(ctx context.Context, log *slog.Logger, app minipush.App, ev pushEvent) error {
	rs, err := receiptsOf(app.AppID, ev)
	if err != nil {
		return err // checkEvent validated it: not reached
	}
	rec := metrics.FromContext(ctx)
	if !app.Receipts {
		rec.Add(metrics.Receipts, float64(len(rs)), metrics.Dim{Name: "Result", Value: "off"}, metrics.Dim{Name: "AppId", Value: app.AppID})
		log.Info("receipts off for the app; push acknowledged", "items", len(rs))
		return nil
	}
	var recorded, unmatched, failed, early, ambiguous int
	for _, r := range rs {
		res, err := h.Store.RecordReceipt(ctx, r)
		if err != nil {
			return err
		}
		result := "recorded"
		switch {
		case res == minipush.ReceiptUnknown && h.Now().Sub(r.At) < ReceiptGrace:
			early++
			result = "early"
		case res == minipush.ReceiptAmbiguous:
			// Not retried: the window's candidates stay as many, and one more send in it
			// could only add to them.
			ambiguous++
			result = "ambiguous"
		case res != minipush.ReceiptRecorded:
			unmatched++
			result = "unmatched"
		case r.State() == minipush.ReceiptAsyncFailed:
			recorded++
			failed++
			result = "async_failed"
		default:
			recorded++
		}
		rec.Add(metrics.Receipts, 1, metrics.Dim{Name: "Result", Value: result}, metrics.Dim{Name: "AppId", Value: app.AppID})
	}
	// Unmatched is normal for a replay or WeChat's retry; counts only, no msgid or
	// openid (the user is the pseudonym the caller's logger carries).
	log.Info("receipts", "items", len(rs), "recorded", recorded, "async_failed", failed, "unmatched", unmatched, "early", early, "ambiguous", ambiguous)
	if early > 0 {
		return minipush.Errorf(minipush.EUNAVAILABLE, "%d receipts name a msgid no delivery holds yet: retry", early)
	}
	return nil
}
