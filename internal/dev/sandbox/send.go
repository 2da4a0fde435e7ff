package sandbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"slices"
	"strings"
)

// strictDecode decodes one JSON object and rejects unknown fields, so a misspelt
// field in our request fails loudly instead of being ignored as WeChat would.
func strictDecode(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// checkPageLocked applies the app's page rule: the configured set, else any
// "pages/..." path. A query string is allowed either way.
func checkPage(a *app, page string) *wxError {
	path, _, _ := strings.Cut(page, "?")
	okPage := rePagePath.MatchString(path)
	if a.pages != nil {
		okPage = a.pages[path]
	}
	if !okPage {
		return errc(41030, "invalid page %q", page)
	}
	return nil
}

// subscribeSend serves POST /cgi-bin/message/subscribe/send.
func (s *Sandbox) subscribeSend(r *http.Request, body []byte) reply {
	a, e := s.authLocked(r)
	if e != nil {
		return failReply(e)
	}
	var b struct {
		ToUser     string `json:"touser"`
		TemplateID string `json:"template_id"`
		Page       string `json:"page"`
		// Data items are decoded apart: WeChat is strict about the body's own fields
		// but ignores unknown fields inside a data item, and widely used clients rely
		// on it (silenceper/wechat/v2 sends "color": "" in every item).
		Data             map[string]json.RawMessage `json:"data"`
		MiniprogramState string                     `json:"miniprogram_state"`
		Lang             string                     `json:"lang"`
	}
	if err := strictDecode(body, &b); err != nil {
		return failReply(errc(47001, "data format error: %v", err))
	}
	type dataItem struct {
		Value *string `json:"value"`
	}
	items := make(map[string]dataItem, len(b.Data))
	for key, raw := range b.Data {
		var it dataItem
		if err := json.Unmarshal(raw, &it); err != nil {
			return failReply(errc(47001, "data format error: data.%s: %v", key, err))
		}
		items[key] = it
	}
	u, ok := a.users[b.ToUser]
	if !ok {
		return failReply(errc(40003, ""))
	}
	fields, ok := a.subTemplates[b.TemplateID]
	if !ok {
		return failReply(errc(40037, ""))
	}
	if b.Page != "" {
		if e := checkPage(a, b.Page); e != nil {
			return failReply(e)
		}
	}
	data := map[string]string{}
	for _, key := range slices.Sorted(maps.Keys(fields)) {
		v := ""
		if f := items[key].Value; f != nil {
			v = *f
		}
		if p := a.checkField(b.TemplateID, key, fields[key], v); p != "" {
			return failReply(errc(47003, "argument invalid! data.%s.value %s", key, p))
		}
		data[key] = v
	}
	for _, key := range slices.Sorted(maps.Keys(b.Data)) {
		if _, ok := fields[key]; !ok {
			return failReply(errc(47003, "argument invalid! data.%s is not a field of template", key))
		}
	}
	if b.MiniprogramState != "" && !slices.Contains([]string{"developer", "trial", "formal"}, b.MiniprogramState) {
		return failReply(errc(47003, "argument invalid! miniprogram_state %q", b.MiniprogramState))
	}
	if b.Lang != "" && !slices.Contains([]string{"zh_CN", "en_US", "zh_HK", "zh_TW"}, b.Lang) {
		return failReply(errc(47003, "argument invalid! lang %q", b.Lang))
	}
	if u.subGrants[b.TemplateID] <= 0 {
		return failReply(errc(43101, ""))
	}
	if e := s.takeQuotaLocked(a.id); e != nil {
		return failReply(e) // quota.go: refused, so the user's grant stays
	}
	u.subGrants[b.TemplateID]--
	id := MsgIDBase + int64(len(s.accepted))
	rep := acceptedReply(s.recordLocked(Message{
		AppID: a.id, API: PathSubscribeSend, ToUser: b.ToUser, TemplateID: b.TemplateID,
		Page: b.Page, Data: data, MsgID: id,
	}))
	rep.body.(map[string]any)["msgid"] = id
	s.queueReceiptLocked(a.id, b.ToUser, b.TemplateID, id) // receipts.go: off unless configured
	return rep
}

// MsgIDBase is the msgid of a sandbox's first accepted message; the n-th (from 0) is
// MsgIDBase+n, so ids are unique within a sandbox. Real msgids are above 2^53, where
// a client that decodes them through float64 rounds them; so are these, from the
// first, so such a client fails here too.
const MsgIDBase int64 = 1<<53 + 1

// templateSend serves POST /cgi-bin/message/wxopen/template/send (the retired
// formId channel).
func (s *Sandbox) templateSend(r *http.Request, body []byte) reply {
	a, e := s.authLocked(r)
	if e != nil {
		return failReply(e)
	}
	var b struct {
		ToUser     string `json:"touser"`
		TemplateID string `json:"template_id"`
		Page       string `json:"page"`
		FormID     string `json:"form_id"`
		Data       map[string]*struct {
			Value *string `json:"value"`
			Color string  `json:"color"`
		} `json:"data"`
		EmphasisKeyword string `json:"emphasis_keyword"`
		Color           string `json:"color"`
	}
	if err := strictDecode(body, &b); err != nil {
		return failReply(errc(47001, "data format error: %v", err))
	}
	if _, ok := a.users[b.ToUser]; !ok {
		return failReply(errc(40003, ""))
	}
	keywords, ok := a.formTemplates[b.TemplateID]
	if !ok {
		return failReply(errc(40037, ""))
	}
	if b.Page != "" {
		if e := checkPage(a, b.Page); e != nil {
			return failReply(e)
		}
	}
	data := map[string]string{}
	for _, key := range slices.Sorted(maps.Keys(b.Data)) {
		f := b.Data[key]
		switch {
		case !slices.Contains(keywords, key):
			return failReply(errc(47003, "argument invalid! data.%s is not a keyword of template", key))
		case f == nil || f.Value == nil:
			return failReply(errc(47003, "argument invalid! data.%s.value is missing", key))
		case strings.IndexFunc(*f.Value, isControl) >= 0:
			return failReply(errc(47003, "argument invalid! data.%s.value contains a control character", key))
		case f.Color != "" && !reColor.MatchString(f.Color):
			return failReply(errc(47003, "argument invalid! data.%s.color %q", key, f.Color))
		}
		data[key] = *f.Value
	}
	if b.Color != "" && !reColor.MatchString(b.Color) {
		return failReply(errc(47003, "argument invalid! color %q", b.Color))
	}
	if k := b.EmphasisKeyword; k != "" {
		kw, suffix := strings.CutSuffix(k, ".DATA")
		if !suffix || !slices.Contains(keywords, kw) {
			return failReply(errc(47003, "argument invalid! emphasis_keyword %q", k))
		}
	}
	f, ok := a.forms[b.FormID]
	switch {
	case b.FormID == "" || !ok:
		return failReply(errc(41028, ""))
	case f.openID != b.ToUser:
		return failReply(errc(41028, "invalid form id, it belongs to another user"))
	case !s.now().Before(f.issued.Add(FormIDValidity)):
		return failReply(errc(41028, "invalid form id, expired"))
	case f.uses <= 0:
		return failReply(errc(41029, ""))
	}
	f.uses--
	return acceptedReply(s.recordLocked(Message{
		AppID: a.id, API: PathTemplateSend, ToUser: b.ToUser, TemplateID: b.TemplateID,
		FormID: b.FormID, Page: b.Page, Data: data,
	}))
}

func isControl(r rune) bool { return r < 0x20 || r >= 0x7f && r < 0xa0 }

// recordLocked stores an accepted message and returns its index.
func (s *Sandbox) recordLocked(m Message) int {
	m.At = s.now()
	s.accepted = append(s.accepted, m)
	return len(s.accepted) - 1
}
