package minipush

import "time"

// The customer-service channel (客服消息, WECHAT.md §5). A user who writes to the
// mini-program's customer service opens a window in which the app may send them a few
// messages through cgi-bin/message/custom/send without any grant. A campaign that says
// what to send there (Message.CustomerService) reaches such users through it and keeps
// their grants; users outside a window, or whose window WeChat reports closed (45015) or
// used up (45047), get the campaign's grant message in the same attempt.
//
// https://developers.weixin.qq.com/miniprogram/dev/api-backend/open-api/customer-message/customerServiceMessage.send.html
const (
	// CSWindow is how long a user's message to customer service lets the app answer.
	CSWindow = 48 * time.Hour
	// CSWindowMessages is how many messages one window allows. Counts do not add up:
	// each new message of the user resets the window and the count to these maximums.
	CSWindowMessages = 5
)

// Delivery channels: the API a delivery's message went out through (Delivery.Channel).
// A grant message's channel is its message kind, "subscribe" or "template".
const ChannelCustomerService = "customer_service"

// CustomerService is what a campaign sends on the customer-service channel: exactly one
// of a text, a link (图文链接) or a mini-program page card. WeChat's own field names are
// snake_case; these follow the operator API's camelCase.
type CustomerService struct {
	Text            *CSText            `json:"text,omitempty"`
	Link            *CSLink            `json:"link,omitempty"`
	MiniprogramPage *CSMiniprogramPage `json:"miniprogrampage,omitempty"`
}

// CSText is a text message.
type CSText struct {
	Content string `json:"content"`
}

// CSLink is a link with a title, a description and a thumbnail (JPG or PNG).
type CSLink struct {
	Title       string `json:"title"`
	Description string `json:"description"`
	URL         string `json:"url"`
	ThumbURL    string `json:"thumbUrl"`
}

// CSMiniprogramPage is a card opening a page of the mini-program; its cover is an image
// uploaded to WeChat beforehand (its media_id).
type CSMiniprogramPage struct {
	Title        string `json:"title"`
	PagePath     string `json:"pagepath"`
	ThumbMediaID string `json:"thumbMediaId"`
}

// CSWindowState is a user's customer-service window as minipush last learnt it: open
// until Until with Left messages. WeChat is the authority (it answers 45015/45047);
// this copy only decides whether trying the channel is worth a call.
type CSWindowState struct {
	Until time.Time
	Left  int
}

// Open reports whether the window allows a message at now.
func (w CSWindowState) Open(now time.Time) bool {
	return w.Left > 0 && now.Before(w.Until)
}

// CSWindowFrom is the window a user's message to customer service at sentAt opens. A
// sentAt after now (a clock ahead of ours) counts as now, so a window never outlives
// the 48 hours WeChat grants.
func CSWindowFrom(sentAt, now time.Time) CSWindowState {
	if sentAt.After(now) {
		sentAt = now
	}
	return CSWindowState{Until: sentAt.Add(CSWindow), Left: CSWindowMessages}
}

// CountChannel adds one final recipient's use of the customer-service channel to c: a
// message sent there saved a grant; a recipient WeChat refused there (window closed or
// used up) fell back to the grant channel, whatever its outcome then.
func (c *Counters) CountChannel(outcome Outcome, channel, csFallback string) {
	if outcome == OutcomeSent && channel == ChannelCustomerService {
		c.GrantsSaved++
	}
	if csFallback != "" {
		c.CSFallbacks++
	}
}
