package msgcheck_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"minipush/internal/msgcheck"
)

// errorTexts renders errs so a whole result can be compared at once, order included.
func errorTexts(errs []*msgcheck.FieldError) []string {
	var out []string
	for _, e := range errs {
		out = append(out, e.Error())
	}
	return out
}

func TestValidateSubscribe(t *testing.T) {
	t.Parallel()
	tooMany := map[string]string{}
	for i := 1; i <= msgcheck.MaxFields+1; i++ {
		tooMany[fmt.Sprintf("thing%d", i)] = "ok"
	}
	atCap := map[string]string{}
	for i := 1; i <= msgcheck.MaxFields; i++ {
		atCap[fmt.Sprintf("thing%d", i)] = "ok"
	}
	tests := []struct {
		name string
		data map[string]string
		want []string
	}{
		{"OK", map[string]string{
			"thing1":             "您的订单已发货",
			"time2":              "2019-10-01 15:01",
			"character_string3":  "SN123",
			"amount4":            "¥12.50",
			"phone_number5":      "13800138000",
			"car_number6":        "粤B12345",
			"phrase7":            "配送中",
			"number8":            "3",
			"date9":              "2019年10月1日",
			"name10":             "张三",
			"letter11":           "ABC",
			"symbol12":           "#",
			"enum13":             "已发货",
			"character_string14": "A-1",
		}, nil},
		{"AtCap", atCap, nil},
		{"ErrNil", nil, []string{"data: empty: a subscribe message needs at least one field"}},
		{"ErrEmpty", map[string]string{}, []string{"data: empty: a subscribe message needs at least one field"}},
		{"ErrTooMany", tooMany, []string{"data: 31 fields, more than 30"}},
		{"ErrValues", map[string]string{
			"thing3": strings.Repeat("长", 21),
			"time1":  "",
			"thing2": "fine",
		}, []string{
			"data.thing3.value: longer than 20 characters",
			"data.time1.value: empty",
		}},
		{"ErrUnknownKey", map[string]string{
			"keyword1": "x",
			"thing1":   "x",
		}, []string{"data.keyword1: unknown key: want a value type and a number, like thing1 or character_string2"}},
		{"ErrControl", map[string]string{"thing1": "line1\nline2"}, []string{"data.thing1.value: contains control character U+000A"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := msgcheck.ValidateSubscribe(tt.data)
			if !slices.Equal(errorTexts(got), tt.want) {
				t.Errorf("ValidateSubscribe = %q; want %q", errorTexts(got), tt.want)
			}
			if tt.want == nil && got != nil {
				t.Errorf("ValidateSubscribe = %#v; want nil so callers can test for it", got)
			}
		})
	}
}

func TestValidateSubscribeFields(t *testing.T) {
	t.Parallel()
	errs := msgcheck.SubscribeData{"thing3": "", "foo": "x"}.Validate()
	want := []msgcheck.FieldError{
		{Key: "foo", Field: "key", Reason: "unknown key: want a value type and a number, like thing1 or character_string2"},
		{Key: "thing3", Type: "thing", Reason: "empty"},
	}
	if len(errs) != len(want) {
		t.Fatalf("Validate = %q; want %d errors", errorTexts(errs), len(want))
	}
	for i := range want {
		if *errs[i] != want[i] {
			t.Errorf("error %d = %+v; want %+v", i, *errs[i], want[i])
		}
	}
}

func TestValidateTemplate(t *testing.T) {
	t.Parallel()
	ok := msgcheck.TemplateValue{Value: "ok"}
	tooMany := map[string]msgcheck.TemplateValue{}
	for i := 1; i <= msgcheck.MaxFields+1; i++ {
		tooMany[fmt.Sprintf("keyword%d", i)] = ok
	}
	tests := []struct {
		name     string
		data     map[string]msgcheck.TemplateValue
		emphasis string
		want     []string
	}{
		{"OK", map[string]msgcheck.TemplateValue{
			"keyword1": {Value: "订单已发货", Color: "#173177"},
			"keyword2": {Value: "2019-10-01 15:01", Color: "#abcdef"},
			"keyword3": {Value: strings.Repeat("字", 200)},
		}, "keyword1.DATA", nil},
		{"OKEmptyData", nil, "", nil},
		{"OKNoEmphasis", map[string]msgcheck.TemplateValue{"keyword1": ok}, "", nil},
		{"ErrTooMany", tooMany, "", []string{"data: 31 fields, more than 30"}},
		{"ErrFirstRemark", map[string]msgcheck.TemplateValue{"first": ok, "remark": ok, "keyword1": ok}, "", []string{
			"data.first: unknown key: want keyword1, keyword2, …",
			"data.remark: unknown key: want keyword1, keyword2, …",
		}},
		{"ErrKeywordZero", map[string]msgcheck.TemplateValue{"keyword0": ok}, "", []string{"data.keyword0: unknown key: want keyword1, keyword2, …"}},
		{"ErrKeywordUpper", map[string]msgcheck.TemplateValue{"Keyword1": ok}, "", []string{"data.Keyword1: unknown key: want keyword1, keyword2, …"}},
		{"ErrEmptyValue", map[string]msgcheck.TemplateValue{"keyword1": {}}, "", []string{"data.keyword1.value: empty"}},
		{"ErrLongValue", map[string]msgcheck.TemplateValue{"keyword1": {Value: strings.Repeat("字", 201)}}, "", []string{"data.keyword1.value: longer than 200 characters"}},
		{"ErrControl", map[string]msgcheck.TemplateValue{"keyword1": {Value: "a\tb"}}, "", []string{"data.keyword1.value: contains control character U+0009"}},
		{"ErrColorShort", map[string]msgcheck.TemplateValue{"keyword1": {Value: "x", Color: "#fff"}}, "", []string{`data.keyword1.color: "#fff" is not a colour like #173177`}},
		{"ErrColorName", map[string]msgcheck.TemplateValue{"keyword1": {Value: "x", Color: "red"}}, "", []string{`data.keyword1.color: "red" is not a colour like #173177`}},
		{"ErrColorNotHex", map[string]msgcheck.TemplateValue{"keyword1": {Value: "x", Color: "#12345G"}}, "", []string{`data.keyword1.color: "#12345G" is not a colour like #173177`}},
		{"ErrValueAndColor", map[string]msgcheck.TemplateValue{"keyword1": {Color: "#1234567"}}, "", []string{
			"data.keyword1.value: empty",
			`data.keyword1.color: "#1234567" is not a colour like #173177`,
		}},
		{"ErrEmphasisMissingKey", map[string]msgcheck.TemplateValue{"keyword1": ok}, "keyword2.DATA", []string{`emphasis_keyword: "keyword2.DATA" names keyword2, which is not in data`}},
		{"ErrEmphasisNoSuffix", map[string]msgcheck.TemplateValue{"keyword1": ok}, "keyword1", []string{`emphasis_keyword: "keyword1": want keywordN.DATA, like keyword1.DATA`}},
		{"ErrEmphasisLowerSuffix", map[string]msgcheck.TemplateValue{"keyword1": ok}, "keyword1.data", []string{`emphasis_keyword: "keyword1.data": want keywordN.DATA, like keyword1.DATA`}},
		{"ErrEmphasisNotKeyword", map[string]msgcheck.TemplateValue{"keyword1": ok}, "first.DATA", []string{`emphasis_keyword: "first.DATA": want keywordN.DATA, like keyword1.DATA`}},
		{"ErrEmphasisEmptyData", nil, "keyword1.DATA", []string{`emphasis_keyword: "keyword1.DATA" names keyword1, which is not in data`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := msgcheck.ValidateTemplate(tt.data, tt.emphasis)
			if !slices.Equal(errorTexts(got), tt.want) {
				t.Errorf("ValidateTemplate = %q; want %q", errorTexts(got), tt.want)
			}
		})
	}
}

// checkErr fails t unless err is nil exactly when wantErr is empty, and
// otherwise contains wantErr.
func checkErr(t *testing.T, call string, err error, wantErr string) {
	t.Helper()
	switch {
	case wantErr == "" && err != nil:
		t.Errorf("%s = %v; want nil", call, err)
	case wantErr != "" && err == nil:
		t.Errorf("%s = nil; want an error containing %q", call, wantErr)
	case wantErr != "" && !strings.Contains(err.Error(), wantErr):
		t.Errorf("%s = %v; want an error containing %q", call, err, wantErr)
	}
}

func TestValidatePage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		page    string
		wantErr string
	}{
		{"Empty", "", ""},
		{"Index", "pages/index/index", ""},
		{"OneSegment", "index", ""},
		{"LeadingSlash", "/pages/index/index", ""},
		{"Query", "pages/a/b?x=1&y=2", ""},
		{"QueryUnicode", "index?name=张三", ""},
		{"QueryEncoded", "index?q=a%20b", ""},
		{"DashUnderscore", "pkg-a/my_page/Index2", ""},
		{"MaxLength", strings.Repeat("a", 1024), ""},
		{"ErrTooLong", strings.Repeat("a", 1025), "more than 1024"},
		{"ErrSpace", "pages/index/index?x=a b", "whitespace"},
		{"ErrNewline", "pages/index\n", "whitespace"},
		{"ErrControl", "pages/\x00index", "control"},
		{"ErrUTF8", "pages/\xff", "UTF-8"},
		{"ErrEmptyQuery", "pages/index?", "empty query"},
		{"ErrOnlyQuery", "?x=1", "no path"},
		{"ErrOnlySlash", "/", "no path"},
		{"ErrDoubleSlash", "pages//index", `segment ""`},
		{"ErrTrailingSlash", "pages/index/", `segment ""`},
		{"ErrDotDot", "pages/../index", `segment ".."`},
		{"ErrExtension", "pages/index.html", `segment "index.html"`},
		{"ErrURL", "https://example.com", `segment "https:"`},
		{"ErrChinese", "pages/首页", `segment "首页"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkErr(t, fmt.Sprintf("ValidatePage(%q)", tt.page), msgcheck.ValidatePage(tt.page), tt.wantErr)
		})
	}
}

func TestValidateEnums(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		fn      func(string) error
		in      string
		wantErr string
	}{
		{"StateEmpty", msgcheck.ValidateState, "", ""},
		{"StateDeveloper", msgcheck.ValidateState, "developer", ""},
		{"StateTrial", msgcheck.ValidateState, "trial", ""},
		{"StateFormal", msgcheck.ValidateState, "formal", ""},
		{"ErrStateCase", msgcheck.ValidateState, "Formal", `miniprogram_state "Formal"`},
		{"ErrStateUnknown", msgcheck.ValidateState, "release", `miniprogram_state "release"`},
		{"LangEmpty", msgcheck.ValidateLang, "", ""},
		{"LangZhCN", msgcheck.ValidateLang, "zh_CN", ""},
		{"LangEnUS", msgcheck.ValidateLang, "en_US", ""},
		{"LangZhHK", msgcheck.ValidateLang, "zh_HK", ""},
		{"LangZhTW", msgcheck.ValidateLang, "zh_TW", ""},
		{"ErrLangDash", msgcheck.ValidateLang, "zh-CN", `lang "zh-CN"`},
		{"ErrLangLower", msgcheck.ValidateLang, "zh_cn", `lang "zh_cn"`},
		{"ErrLangUnknown", msgcheck.ValidateLang, "fr_FR", `lang "fr_FR"`},
		{"TemplateID", msgcheck.ValidateTemplateID, "iPk5sOIt5X_flOVKn5GrTFpncEYTojx6ddbt8WYoV5s", ""},
		{"TemplateIDDash", msgcheck.ValidateTemplateID, "a-b_c", ""},
		{"TemplateIDMax", msgcheck.ValidateTemplateID, strings.Repeat("a", 128), ""},
		{"ErrTemplateIDEmpty", msgcheck.ValidateTemplateID, "", "template_id: empty"},
		{"ErrTemplateIDLong", msgcheck.ValidateTemplateID, strings.Repeat("a", 129), "more than 128"},
		{"ErrTemplateIDSpace", msgcheck.ValidateTemplateID, "abc def", `template_id "abc def"`},
		{"ErrTemplateIDSlash", msgcheck.ValidateTemplateID, "abc/def", `template_id "abc/def"`},
		{"ErrTemplateIDUnicode", msgcheck.ValidateTemplateID, "模板", `template_id "模板"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkErr(t, fmt.Sprintf("%s(%q)", tt.name, tt.in), tt.fn(tt.in), tt.wantErr)
		})
	}
}
