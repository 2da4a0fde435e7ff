package msgcheck

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxFields caps the number of data fields in one message. WeChat documents no
// maximum; real templates have a handful of fields, so 30 leaves room for any
// template while stopping a runaway payload before it reaches storage.
const MaxFields = 30

// SubscribeData is the data of a subscribe message: key (thing1, time2, ...) to
// value. WeChat's body wraps each value as {"value": ...}; the wrapper carries
// nothing else, so it is left to the sender.
type SubscribeData map[string]string

// Validate is ValidateSubscribe(d).
func (d SubscribeData) Validate() []*FieldError { return ValidateSubscribe(d) }

// ValidateSubscribe checks the data of a subscribe message and returns every
// problem found, ordered by key, or nil when there is none. Data is required for
// subscribe messages, so empty data is an error; so are more than MaxFields
// fields and keys that do not name a value type (see TypeOfKey).
//
// Whether the keys match the template (which keys it has, and an enum's list)
// cannot be known here: the template lives in the WeChat console.
func ValidateSubscribe(data map[string]string) []*FieldError {
	if len(data) == 0 {
		return []*FieldError{{Reason: "empty: a subscribe message needs at least one field"}}
	}
	var errs []*FieldError
	if len(data) > MaxFields {
		errs = append(errs, &FieldError{Reason: fmt.Sprintf("%d fields, more than %d", len(data), MaxFields)})
	}
	for _, key := range slices.Sorted(maps.Keys(data)) {
		t, ok := TypeOfKey(key)
		if !ok {
			errs = append(errs, &FieldError{
				Key: key, Field: fieldKey,
				Reason: "unknown key: want a value type and a number, like thing1 or character_string2",
			})
			continue
		}
		if reason := checkValue(t, data[key]); reason != "" {
			errs = append(errs, &FieldError{Key: key, Type: string(t), Reason: reason})
		}
	}
	return errs
}

// TemplateValue is one field of a legacy template message.
type TemplateValue struct {
	Value string
	Color string // optional text colour, "#RRGGBB"
}

// maxTemplateValue bounds a template value. The legacy template doc gives no
// limit; 200 characters is far more than a card line shows, and bounds storage.
const maxTemplateValue = 200

var (
	keywordRE = regexp.MustCompile(`^keyword[1-9][0-9]{0,3}$`)
	colorRE   = regexp.MustCompile(`^#[0-9A-Fa-f]{6}$`)
)

// ValidateTemplate checks the data and emphasis keyword of a legacy template
// message (WECHAT.md §1) and returns every problem found, ordered by key, or nil.
//
// Keys must be keyword1 … keywordN. The official-account template fields
// "first" and "remark" are refused: mini-program templates never had them, so
// their presence means a campaign was written for the wrong channel. Empty data
// is accepted because WeChat sends such a template empty. Values must be
// non-empty, at most 200 characters and free of control characters; a colour,
// when given, must be #RRGGBB. The emphasis keyword, when given, must be
// "keywordN.DATA" naming a key present in data.
func ValidateTemplate(data map[string]TemplateValue, emphasisKeyword string) []*FieldError {
	var errs []*FieldError
	if len(data) > MaxFields {
		errs = append(errs, &FieldError{Reason: fmt.Sprintf("%d fields, more than %d", len(data), MaxFields)})
	}
	for _, key := range slices.Sorted(maps.Keys(data)) {
		if !keywordRE.MatchString(key) {
			errs = append(errs, &FieldError{Key: key, Field: fieldKey, Reason: "unknown key: want keyword1, keyword2, …"})
			continue
		}
		v := data[key]
		if reason := checkText(v.Value); reason != "" {
			errs = append(errs, &FieldError{Key: key, Reason: reason})
		} else if reason := maxLen(utf8.RuneCountInString(v.Value), maxTemplateValue); reason != "" {
			errs = append(errs, &FieldError{Key: key, Reason: reason})
		}
		if v.Color != "" && !colorRE.MatchString(v.Color) {
			errs = append(errs, &FieldError{Key: key, Field: fieldColor, Reason: fmt.Sprintf("%q is not a colour like #173177", v.Color)})
		}
	}
	if emphasisKeyword != "" {
		key, ok := strings.CutSuffix(emphasisKeyword, ".DATA")
		switch {
		case !ok || !keywordRE.MatchString(key):
			errs = append(errs, &FieldError{Field: fieldEmphasis, Reason: fmt.Sprintf("%q: want keywordN.DATA, like keyword1.DATA", emphasisKeyword)})
		default:
			if _, present := data[key]; !present {
				errs = append(errs, &FieldError{Key: key, Field: fieldEmphasis, Reason: fmt.Sprintf("%q names %s, which is not in data", emphasisKeyword, key)})
			}
		}
	}
	return errs
}

// maxPage bounds a page path. WeChat documents no limit; 1024 characters holds
// any real path with its query string.
const maxPage = 1024

var pageSegmentRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// ValidatePage checks the mini-program page a message opens, like
// "pages/index/index" or "pages/a/b?x=1&y=2". An empty page is valid: the field
// is optional and a message without it opens nothing.
//
// A leading "/" is accepted (and not stripped; WeChat's examples use both
// forms). The path is one or more segments of [A-Za-z0-9_-] separated by
// single slashes; an optional non-empty query string may follow "?". No
// whitespace or control characters anywhere, and at most 1024 characters.
// Whether the page exists in the released version (errcode 41030) cannot be
// checked here.
func ValidatePage(page string) error {
	if page == "" {
		return nil
	}
	if !utf8.ValidString(page) {
		return errors.New("page: not valid UTF-8")
	}
	if n := utf8.RuneCountInString(page); n > maxPage {
		return fmt.Errorf("page: %d characters, more than %d", n, maxPage)
	}
	if strings.ContainsFunc(page, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
		return fmt.Errorf("page %q: contains whitespace or a control character", page)
	}
	path, query, hasQuery := strings.Cut(page, "?")
	if hasQuery && query == "" {
		return fmt.Errorf("page %q: empty query string after \"?\"", page)
	}
	path = strings.TrimPrefix(path, "/")
	if path == "" {
		return fmt.Errorf("page %q: no path", page)
	}
	for seg := range strings.SplitSeq(path, "/") {
		if !pageSegmentRE.MatchString(seg) {
			return fmt.Errorf("page %q: path segment %q: want letters, digits, _ or - only", page, seg)
		}
	}
	return nil
}

// ValidateState checks miniprogram_state: developer, trial, formal, or empty for
// WeChat's default (formal).
func ValidateState(s string) error {
	switch s {
	case "", "developer", "trial", "formal":
		return nil
	}
	return fmt.Errorf("miniprogram_state %q: want developer, trial or formal", s)
}

// ValidateLang checks lang: zh_CN, en_US, zh_HK, zh_TW, or empty for WeChat's
// default (zh_CN).
func ValidateLang(l string) error {
	switch l {
	case "", "zh_CN", "en_US", "zh_HK", "zh_TW":
		return nil
	}
	return fmt.Errorf("lang %q: want zh_CN, en_US, zh_HK or zh_TW", l)
}

// maxTemplateID bounds a template id. Real ids are 43 characters; 128 leaves
// room for a format change without admitting arbitrary text.
const maxTemplateID = 128

var templateIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// ValidateTemplateID checks a template id: non-empty, at most 128 characters of
// [A-Za-z0-9_-]. Whether the id exists (errcode 40037) cannot be checked here.
func ValidateTemplateID(id string) error {
	switch {
	case id == "":
		return errors.New("template_id: empty")
	case len(id) > maxTemplateID:
		return fmt.Errorf("template_id: %d characters, more than %d", len(id), maxTemplateID)
	case !templateIDRE.MatchString(id):
		return fmt.Errorf("template_id %q: want letters, digits, _ or - only", id)
	}
	return nil
}
