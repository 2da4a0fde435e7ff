package wechat

import (
	"context"
	"errors"
)

const pathCustomSend = "/cgi-bin/message/custom/send"

// Customer-service message types a mini-program may send (image needs an uploaded
// media id and is not offered).
const (
	CustomText            = "text"
	CustomLink            = "link"
	CustomMiniprogramPage = "miniprogrampage"
)

// CustomMessage is the body of a customer-service send: MsgType and exactly the one
// matching part.
type CustomMessage struct {
	ToUser          string          `json:"touser"`
	MsgType         string          `json:"msgtype"`
	Text            *CustomTextBody `json:"text,omitempty"`
	Link            *CustomLinkBody `json:"link,omitempty"`
	MiniprogramPage *CustomPageBody `json:"miniprogrampage,omitempty"`
}

// CustomTextBody is a text message.
type CustomTextBody struct {
	Content string `json:"content"`
}

// CustomLinkBody is a link (图文链接).
type CustomLinkBody struct {
	Title       string `json:"title"`
	Description string `json:"description"`
	URL         string `json:"url"`
	ThumbURL    string `json:"thumb_url"`
}

// CustomPageBody is a mini-program page card.
type CustomPageBody struct {
	Title        string `json:"title"`
	PagePath     string `json:"pagepath"`
	ThumbMediaID string `json:"thumb_media_id"`
}

// SendCustom sends a customer-service message. It needs no grant, only an open window
// of the user's (a message to customer service in the last 48 hours, 5 messages per
// window): 45015 (window closed) classifies as FailRecipient with reason
// "cs_window_closed", 45047 (count used up) as "cs_quota"; the caller falls back to a
// grant message on either (WECHAT.md §5). Token errors are Refresh, like every send's.
//
// https://developers.weixin.qq.com/miniprogram/dev/api-backend/open-api/customer-message/customerServiceMessage.send.html
func (c *Client) SendCustom(ctx context.Context, token string, m CustomMessage) error {
	return c.send(ctx, pathCustomSend, token, m, nil)
}

// CSRefused reports whether err is WeChat saying the customer-service channel is not
// open for this user now (45015 window closed, 45047 count used up): nothing was sent,
// and a grant message is the way to reach them.
func CSRefused(err error) bool {
	var we *Error
	return errors.As(err, &we) && (we.Code == 45015 || we.Code == 45047)
}
