package sandbox

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ValueTypes are the subscribe-message value types and their rules (WECHAT.md §2,
// from the sendMessage doc). "enum" is left out: it needs the template's value list,
// which the sandbox does not model.
var ValueTypes = []string{
	"thing", "number", "letter", "symbol", "character_string", "time", "date",
	"amount", "phone_number", "car_number", "name", "phrase",
}

var (
	reDate     = `(?:\d{4}-\d{1,2}-\d{1,2}|\d{4}/\d{1,2}/\d{1,2}|\d{4}\.\d{1,2}\.\d{1,2}|\d{4}年\d{1,2}月\d{1,2}日)`
	reClock    = `(?:[01]?\d|2[0-3]):[0-5]\d(?::[0-5]\d)?`
	reTimePt   = regexp.MustCompile(`^(?:` + reDate + `\s*)?` + reClock + `$`)
	reDatePt   = regexp.MustCompile(`^` + reDate + `(?:\s*` + reClock + `)?$`)
	reNumber   = regexp.MustCompile(`^(\d+)(?:\.(\d+))?$`)
	reAmount   = regexp.MustCompile(`^[¥￥$€£]?(\d+)(?:\.\d+)?元?$`)
	reLetters  = regexp.MustCompile(`^[A-Za-z]+$`)
	reColor    = regexp.MustCompile(`^#[0-9A-Fa-f]{6}$`)
	rePagePath = regexp.MustCompile(`^pages/[A-Za-z0-9_\-]+(?:/[A-Za-z0-9_\-]+)*$`)
)

func knownType(t string) bool {
	for _, v := range ValueTypes {
		if v == t {
			return true
		}
	}
	return false
}

// ValidateValue checks v against the rules of subscribe value type typ. It returns ""
// when v is valid, else a problem phrased to follow "data.<key>.value " in an errmsg
// (e.g. "is empty", "exceeds 20 characters").
func ValidateValue(typ, v string) string {
	if v == "" {
		return "is empty"
	}
	if !utf8.ValidString(v) {
		return "is not valid utf-8"
	}
	for _, r := range v {
		if unicode.IsControl(r) {
			return "contains a control character"
		}
	}
	n := utf8.RuneCountInString(v)
	invalid := "invalid for type " + typ
	switch typ {
	case "thing":
		return maxRunes(n, 20)
	case "number":
		m := reNumber.FindStringSubmatch(v)
		if m == nil {
			return invalid
		}
		if len(m[1])+len(m[2]) > 32 {
			return "exceeds 32 digits"
		}
	case "letter":
		if !reLetters.MatchString(v) {
			return invalid
		}
		return maxRunes(n, 32)
	case "symbol":
		if !all(v, isSymbol) {
			return invalid
		}
		return maxRunes(n, 5)
	case "character_string":
		if !all(v, func(r rune) bool { return r < utf8.RuneSelf && (isASCIIAlnum(r) || isSymbol(r)) }) {
			return invalid
		}
		return maxRunes(n, 32)
	case "time":
		return matchRange(v, reTimePt, invalid)
	case "date":
		return matchRange(v, reDatePt, invalid)
	case "amount":
		m := reAmount.FindStringSubmatch(v)
		if m == nil {
			return invalid
		}
		if len(m[1]) > 10 {
			return "exceeds 10 digits"
		}
	case "phone_number":
		if !all(v, func(r rune) bool { return unicode.IsDigit(r) || isSymbol(r) || r == ' ' }) {
			return invalid
		}
		return maxRunes(n, 17)
	case "car_number":
		rs := []rune(v)
		for i, r := range rs {
			edge := i == 0 || i == len(rs)-1
			if !(isASCIIAlnum(r) || edge && unicode.Is(unicode.Han, r)) {
				return invalid
			}
		}
		return maxRunes(n, 8)
	case "name":
		if !all(v, func(r rune) bool { return unicode.Is(unicode.Han, r) || unicode.IsLetter(r) || isSymbol(r) || r == ' ' }) {
			return invalid
		}
		// Mixed text counts as Chinese.
		if strings.IndexFunc(v, func(r rune) bool { return unicode.Is(unicode.Han, r) }) >= 0 {
			return maxRunes(n, 10)
		}
		return maxRunes(n, 20)
	case "phrase":
		if !all(v, func(r rune) bool { return unicode.Is(unicode.Han, r) }) {
			return invalid
		}
		return maxRunes(n, 5)
	default:
		return "has unknown type " + typ
	}
	return ""
}

func maxRunes(n, limit int) string {
	if n > limit {
		return fmt.Sprintf("exceeds %d characters", limit)
	}
	return ""
}

// matchRange accepts one point or two joined by "~".
func matchRange(v string, re *regexp.Regexp, invalid string) string {
	parts := strings.Split(v, "~")
	if len(parts) > 2 {
		return invalid
	}
	for _, p := range parts {
		if !re.MatchString(strings.TrimSpace(p)) {
			return invalid
		}
	}
	return ""
}

func all(s string, f func(rune) bool) bool {
	for _, r := range s {
		if !f(r) {
			return false
		}
	}
	return true
}

func isSymbol(r rune) bool { return unicode.IsPunct(r) || unicode.IsSymbol(r) }

func isASCIIAlnum(r rune) bool {
	return r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
}
