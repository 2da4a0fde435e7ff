package collect

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"minipush"
)

// Customer-service windows. When a user writes to the mini-program's customer service,
// WeChat pushes the message (MsgType text, image or miniprogrampage) to the same
// message-push URL as the subscribe events, signed and optionally encrypted the same
// way; entering the chat through a contact button pushes the event
// user_enter_tempsession. Either lets the app answer for 48 hours with up to 5 messages
// (WECHAT.md §5; the entry event gave less in older texts, but WeChat's 45015/45047
// then sends the campaign back to the grant channel, so counting it as a full window
// costs a call at worst). collect only records the window on the user's item; it sends
// no reply (the push is answered "success", WeChat's "nothing to say").
//
// https://developers.weixin.qq.com/miniprogram/dev/framework/open-ability/customer-message/receive.html

const eventEnterSession = "user_enter_tempsession"

// csMessageTypes are the user messages that open a window.
var csMessageTypes = map[string]bool{"text": true, "image": true, "miniprogrampage": true}

// opensCSWindow reports whether a push is a user's message to customer service.
func opensCSWindow(ev pushEvent) bool {
	return csMessageTypes[ev.MsgType] || (ev.MsgType == "event" && ev.Event == eventEnterSession)
}

// openCSWindow records the window a user's message opened, from the message's
// CreateTime (not from when the push arrived: a push WeChat retried late opened the
// window when the user wrote). The store never moves a window backwards, so an older
// push arriving after a newer one, or a retried one, changes nothing.
func (h *Handler) openCSWindow(ctx context.Context, log *slog.Logger, app minipush.App, ev pushEvent) error {
	created, _ := strconv.ParseInt(ev.CreateTime, 10, 64) // checkEvent parsed it
	now := h.Now()
	w := minipush.CSWindowFrom(time.Unix(created, 0), now)
	if !now.Before(w.Until) {
		log.Info("customer-service message too old to open a window", "msgtype", ev.MsgType)
		return nil
	}
	opened, err := h.Store.OpenCSWindow(ctx, app.AppID, ev.OpenID, w)
	if err != nil {
		return err
	}
	log.Info("customer-service window", "msgtype", ev.MsgType, "event", ev.Event, "opened", opened, "until", w.Until.UTC())
	return nil
}
