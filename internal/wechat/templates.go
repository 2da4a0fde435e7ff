package wechat

import (
	"context"
	"net/http"
	"net/url"
)

// Template management paths (WECHAT.md §8).
const (
	pathGetTemplate         = "/wxaapi/newtmpl/gettemplate"
	pathGetPubTemplateWords = "/wxaapi/newtmpl/getpubtemplatekeywords"
)

// PrivateTemplate is one of the app's private subscribe templates as gettemplate
// answers it. It carries no tid: WeChat does not say which public title it came from.
type PrivateTemplate struct {
	PriTmplID string `json:"priTmplId"`
	Title     string `json:"title"`
	// Content names the data keys: "会议时间:{{date2.DATA}}\n会议地点:{{thing1.DATA}}\n".
	Content string `json:"content"`
	Example string `json:"example"`
	Type    int    `json:"type"` // 2 one-time, 3 long-term
	// KeywordEnumValueList lists the allowed values of the template's enum keys.
	KeywordEnumValueList []KeywordEnumValues `json:"keywordEnumValueList"`
}

// KeywordEnumValues are the allowed values of one enum key; KeywordCode is the key
// with its ".DATA" suffix, e.g. "phrase3.DATA".
type KeywordEnumValues struct {
	KeywordCode   string   `json:"keywordCode"`
	EnumValueList []string `json:"enumValueList"`
}

// Keyword is one keyword of a public template title (getpubtemplatekeywords).
type Keyword struct {
	KID     int    `json:"kid"`
	Name    string `json:"name"`
	Example string `json:"example"`
	Rule    string `json:"rule"` // the value type, e.g. "thing", "phrase"
}

// GetTemplates lists the app's private subscribe templates. Token errors (40001,
// 42001) classify as Refresh, -1 as Retry, 200100 (not a mini-program account) as
// Abort.
//
// https://developers.weixin.qq.com/miniprogram/dev/server/API/mp-message-management/subscribe-message/api_getwxapubnewtemplate.html
func (c *Client) GetTemplates(ctx context.Context, token string) ([]PrivateTemplate, error) {
	var out struct {
		Data []PrivateTemplate `json:"data"`
	}
	err := c.do(ctx, call{
		method:  http.MethodGet,
		path:    pathGetTemplate,
		query:   url.Values{"access_token": {token}},
		secrets: []string{token},
	}, &out)
	if err != nil {
		return nil, err
	}
	return out.Data, nil
}

// GetPubTemplateKeywords lists the keywords of public template title tid with their
// rules. 200014 (no such tid) and 200002 (bad parameter) classify as FailRecipient:
// that tid cannot succeed, others may.
//
// https://developers.weixin.qq.com/miniprogram/dev/server/API/mp-message-management/subscribe-message/api_getpubnewtemplatekeywords.html
func (c *Client) GetPubTemplateKeywords(ctx context.Context, token, tid string) ([]Keyword, error) {
	var out struct {
		Data []Keyword `json:"data"`
	}
	err := c.do(ctx, call{
		method:  http.MethodGet,
		path:    pathGetPubTemplateWords,
		query:   url.Values{"access_token": {token}, "tid": {tid}},
		secrets: []string{token},
	}, &out)
	if err != nil {
		return nil, err
	}
	return out.Data, nil
}
