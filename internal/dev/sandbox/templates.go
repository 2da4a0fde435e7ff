package sandbox

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// Template management endpoints (WECHAT.md §8): the app's private subscribe templates
// as gettemplate lists them, and the keywords of a public template title.
const (
	PathGetTemplate            = "/wxaapi/newtmpl/gettemplate"
	PathGetPubTemplateKeywords = "/wxaapi/newtmpl/getpubtemplatekeywords"
)

func init() {
	endpoints[PathGetTemplate] = endpoint{http.MethodGet, false, (*Sandbox).getTemplate}
	endpoints[PathGetPubTemplateKeywords] = endpoint{http.MethodGet, false, (*Sandbox).getPubTemplateKeywords}
}

// templateInfo is what gettemplate tells of a subscribe template beyond its fields'
// types: its title, the public title (tid) it was chosen from, each field's name and
// the allowed values of its enum fields, which a send must then keep to.
type templateInfo struct {
	title string
	tid   string
	names map[string]string   // key -> keyword name; default typeNames
	enums map[string][]string // key -> allowed values
}

// typeNames label a field in a template's content when its name was not configured,
// as WeChat's public keywords are named after what they hold.
var typeNames = map[string]string{
	"thing": "事项", "number": "数量", "letter": "字母", "symbol": "符号", "character_string": "编号",
	"time": "时间", "date": "日期", "amount": "金额", "phone_number": "电话", "car_number": "车牌",
	"name": "姓名", "phrase": "状态",
}

// typeExamples are the example values gettemplate shows, one valid value per type.
var typeExamples = map[string]string{
	"thing": "会议室A", "number": "3", "letter": "ABC", "symbol": "%", "character_string": "A1024",
	"time": "2019-10-01 15:01", "date": "2019年10月1日", "amount": "¥12.50", "phone_number": "+86-0766-66888866",
	"car_number": "粤A8Z888挂", "name": "张三", "phrase": "配送中",
}

// SetTemplateInfo describes subscribe template templateID of appID for gettemplate:
// its title, the public title id it came from (tid; "" gives one derived from the
// id), keyword names by key, and the allowed values of its enum keys (a send with
// another value answers 47003, as WeChat does). Unknown apps, templates or keys are
// setup errors.
func (s *Sandbox) SetTemplateInfo(appID, templateID, title, tid string, names map[string]string, enums map[string][]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.setTemplateInfoLocked(appID, templateID, title, tid, names, enums); err != nil {
		s.setupErrorLocked(err.Error())
	}
}

func (s *Sandbox) setTemplateInfoLocked(appID, templateID, title, tid string, names map[string]string, enums map[string][]string) error {
	a, ok := s.apps[appID]
	if !ok {
		return fmt.Errorf("SetTemplateInfo: unknown appid %q", appID)
	}
	fields, ok := a.subTemplates[templateID]
	if !ok {
		return fmt.Errorf("SetTemplateInfo: unknown subscribe template %q", templateID)
	}
	for key := range maps.Keys(names) {
		if _, ok := fields[key]; !ok {
			return fmt.Errorf("SetTemplateInfo: template %q has no field %q", templateID, key)
		}
	}
	for key, vs := range enums {
		if _, ok := fields[key]; !ok || len(vs) == 0 {
			return fmt.Errorf("SetTemplateInfo: template %q: enum %q is not a field or lists no values", templateID, key)
		}
	}
	if a.tmplInfo == nil {
		a.tmplInfo = map[string]*templateInfo{}
	}
	a.tmplInfo[templateID] = &templateInfo{title: title, tid: tid, names: maps.Clone(names), enums: maps.Clone(enums)}
	return nil
}

// info returns a template's description, with defaults for what was not configured.
func (a *app) info(templateID string) templateInfo {
	var in templateInfo
	if p := a.tmplInfo[templateID]; p != nil {
		in = *p
	}
	if in.title == "" {
		in.title = templateID
	}
	if in.tid == "" {
		// A stable number per template id, like WeChat's tids.
		h := 0
		for _, r := range templateID {
			h = (h*31 + int(r)) % 90000
		}
		in.tid = strconv.Itoa(10000 + h)
	}
	return in
}

// orderedKeys sorts a template's keys by their number, as WeChat numbers keywords in
// the order they appear (thing1, time2, phrase3).
func orderedKeys(fields map[string]string) []string {
	keys := slices.Collect(maps.Keys(fields))
	num := func(k string) int {
		n, _ := strconv.Atoi(k[len(strings.TrimRight(k, "0123456789")):])
		return n
	}
	slices.SortFunc(keys, func(x, y string) int {
		if d := num(x) - num(y); d != 0 {
			return d
		}
		return strings.Compare(x, y)
	})
	return keys
}

// checkField applies a subscribe field's rule: its enum list when it has one (WeChat
// compares the value with the list), else its type's.
func (a *app) checkField(templateID, key, typ, v string) string {
	if vs := a.info(templateID).enums[key]; len(vs) > 0 {
		if v == "" {
			return "is empty"
		}
		if !slices.Contains(vs, v) {
			return "is not one of the template's enum values"
		}
		return ""
	}
	return ValidateValue(typ, v)
}

// getTemplate serves GET /wxaapi/newtmpl/gettemplate: the app's subscribe templates
// with content ("名称:{{thing1.DATA}}\n" per field), example and enum lists.
func (s *Sandbox) getTemplate(r *http.Request, _ []byte) reply {
	a, e := s.authLocked(r)
	if e != nil {
		return failReply(e)
	}
	data := []map[string]any{}
	for _, id := range slices.Sorted(maps.Keys(a.subTemplates)) {
		fields, in := a.subTemplates[id], a.info(id)
		var content, example strings.Builder
		enums := []map[string]any{}
		for _, key := range orderedKeys(fields) {
			name := in.names[key]
			if name == "" {
				name = typeNames[fields[key]]
			}
			ex := typeExamples[fields[key]]
			if vs := in.enums[key]; len(vs) > 0 {
				ex = vs[0]
				enums = append(enums, map[string]any{"keywordCode": key + ".DATA", "enumValueList": vs})
			}
			fmt.Fprintf(&content, "%s:{{%s.DATA}}\n", name, key)
			fmt.Fprintf(&example, "%s:%s\n", name, ex)
		}
		data = append(data, map[string]any{
			"priTmplId": id, "title": in.title, "content": content.String(), "example": example.String(),
			"type": 2, "keywordEnumValueList": enums,
		})
	}
	return okReply(map[string]any{"errcode": 0, "errmsg": "ok", "data": data})
}

// getPubTemplateKeywords serves GET /wxaapi/newtmpl/getpubtemplatekeywords?tid=: the
// keywords of the public title one of the app's templates was chosen from. A missing
// tid answers 200002 and an unknown one 200014, as WeChat's doc lists.
func (s *Sandbox) getPubTemplateKeywords(r *http.Request, _ []byte) reply {
	a, e := s.authLocked(r)
	if e != nil {
		return failReply(e)
	}
	tid := r.URL.Query().Get("tid")
	if tid == "" {
		return failReply(errc(200002, "invalid args: tid is empty"))
	}
	for _, id := range slices.Sorted(maps.Keys(a.subTemplates)) {
		in := a.info(id)
		if in.tid != tid {
			continue
		}
		fields := a.subTemplates[id]
		data := []map[string]any{}
		for i, key := range orderedKeys(fields) {
			typ := fields[key]
			name := in.names[key]
			if name == "" {
				name = typeNames[typ]
			}
			ex := typeExamples[typ]
			if vs := in.enums[key]; len(vs) > 0 {
				ex = vs[0]
			}
			data = append(data, map[string]any{"kid": i + 1, "name": name, "example": ex, "rule": typ})
		}
		return okReply(map[string]any{"errcode": 0, "errmsg": "ok", "count": len(data), "data": data})
	}
	return failReply(errc(200014, "invalid tid %q", tid))
}
