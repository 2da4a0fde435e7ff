// Package msgcheck validates a campaign's message against WeChat's documented
// limits, so that a bad campaign is refused when it is created rather than
// failing with errcode 47003 (or 41030, 40037) for every recipient at send time.
//
// The rules follow WECHAT.md §1 (legacy template message) and §2 (subscribe
// message, value-type table), which paraphrase
// https://developers.weixin.qq.com/miniprogram/dev/OpenApiDoc/mp-message-management/subscribe-message/sendMessage.html.
// Where the official text is vague, the checks lean strict: refusing a campaign
// costs an operator one edit, while accepting a bad one burns a one-time grant
// per recipient, so each such choice is documented on the function that makes it.
//
// Every function is pure and safe for concurrent use. Any non-nil error returned
// here means the input is invalid (callers map it to their "invalid" error code).
package msgcheck

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// FieldError is one problem with one part of a message. Its Error text mimics the
// errmsg WeChat would return (`data.thing3.value is empty`), so an operator who
// has seen WeChat's errors recognises the field at once.
type FieldError struct {
	// Key is the data key, e.g. "thing3" or "keyword1"; empty when the problem is
	// with the data as a whole or with the emphasis keyword.
	Key string
	// Type is Key's subscribe value type, e.g. "thing"; empty when it is not known
	// (template messages, unknown keys, whole-data problems).
	Type string
	// Reason says what is wrong, in words an operator can act on.
	Reason string
	// Field names the part at fault when it is not Key's value: "key" for the key
	// itself, "color" for a template value's colour, or "emphasis_keyword" for the
	// message's emphasis keyword. Empty means Key's value (or, with no Key, the
	// whole data).
	Field string
}

// Field values of FieldError.
const (
	fieldKey      = "key"
	fieldColor    = "color"
	fieldEmphasis = "emphasis_keyword"
)

// Path is where the problem sits in the JSON body WeChat receives, e.g.
// "data.thing3.value", "data.keyword1.color", "data" or "emphasis_keyword".
func (e *FieldError) Path() string {
	switch {
	case e.Field == fieldEmphasis:
		return fieldEmphasis
	case e.Key == "":
		return "data"
	case e.Field == fieldKey:
		return "data." + e.Key
	case e.Field == "":
		return "data." + e.Key + ".value"
	default:
		return "data." + e.Key + "." + e.Field
	}
}

// Error implements the error interface.
func (e *FieldError) Error() string { return e.Path() + ": " + e.Reason }

// Join returns one error holding every error in errs, or nil when there are none,
// for callers that report a validation result as a single error.
func Join(errs []*FieldError) error {
	if len(errs) == 0 {
		return nil
	}
	all := make([]error, len(errs))
	for i, e := range errs {
		all[i] = e
	}
	return errors.Join(all...)
}

// FieldType is a subscribe-message value type. WeChat encodes it in the data key
// (thing1, time2, ...), and each type has its own length and character rules.
type FieldType string

// The subscribe-message value types (WECHAT.md §2).
const (
	TypeThing           FieldType = "thing"
	TypeNumber          FieldType = "number"
	TypeLetter          FieldType = "letter"
	TypeSymbol          FieldType = "symbol"
	TypeCharacterString FieldType = "character_string"
	TypeTime            FieldType = "time"
	TypeDate            FieldType = "date"
	TypeAmount          FieldType = "amount"
	TypePhoneNumber     FieldType = "phone_number"
	TypeCarNumber       FieldType = "car_number"
	TypeName            FieldType = "name"
	TypePhrase          FieldType = "phrase"
	TypeEnum            FieldType = "enum"
)

// fieldTypes lists every type; TypeOfKey relies on it to find the longest prefix.
var fieldTypes = []FieldType{
	TypeThing, TypeNumber, TypeLetter, TypeSymbol, TypeCharacterString, TypeTime,
	TypeDate, TypeAmount, TypePhoneNumber, TypeCarNumber, TypeName, TypePhrase, TypeEnum,
}

// maxKeyNumber bounds the number after the type prefix. Real templates number
// their keys from 1 upwards and hold far fewer fields; the bound only stops an
// absurd key from looking valid.
const maxKeyNumber = 9999

// TypeOfKey derives the value type from a subscribe data key such as "thing1",
// "character_string12" or "phone_number4": a type name followed by a positive
// number without leading zeros (WeChat numbers keys from 1). The longest matching
// prefix wins, so that a future type whose name extends another still resolves.
// Keys are case-sensitive, as in the templates WeChat shows.
func TypeOfKey(key string) (FieldType, bool) {
	var best FieldType
	for _, t := range fieldTypes {
		if len(t) > len(best) && strings.HasPrefix(key, string(t)) && isKeyNumber(key[len(t):]) {
			best = t
		}
	}
	return best, best != ""
}

// isKeyNumber reports whether s is a number from 1 to maxKeyNumber written
// without sign or leading zeros.
func isKeyNumber(s string) bool {
	if s == "" || s[0] == '0' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	n, err := strconv.Atoi(s)
	return err == nil && n <= maxKeyNumber
}

// ValidateValue checks v against the rules of type t (WECHAT.md §2). Lengths
// count characters (runes), not bytes. For every type an empty value, invalid
// UTF-8 and any control character (newline and tab included) are refused,
// because WeChat rejects control characters in every field.
//
// Choices where WeChat's table is vague (all lean strict):
//   - number: at most 32 characters in total (sign and decimal point included),
//     an optional leading minus and at most one decimal point.
//   - letter: ASCII letters only.
//   - symbol: Unicode punctuation or symbols (so full-width ，and ￥ count); no
//     letters, digits or spaces.
//   - character_string: printable ASCII without spaces (digits, letters and
//     ASCII symbols); Chinese and full-width characters are refused.
//   - time: "15:01", "9:05", "15:01:02", optionally after a date in the forms
//     date accepts; a time of day is required.
//   - date: year-month-day with "-", "/" or "." (the same separator twice), or
//     "2019年10月1日"; the year is required; optionally followed by a time after
//     a space (the space may be left out after 日). Dates must exist in the
//     calendar (no 2019-02-30).
//   - time and date ranges: exactly two points joined by "~" (ASCII), spaces
//     around "~" allowed; each point is checked alone and their order is not.
//   - amount: an optional currency symbol (¥ ￥ $ € £), at most 10 digits in
//     total (decimals included), an optional "元" at the end; no minus sign and
//     no thousands separators.
//   - phone_number: at most 17 characters of ASCII digits and ASCII symbols
//     (+ - ( ) # * ...), at least one digit; spaces are refused because the
//     table lists only digits and symbols; use "-" to group.
//   - car_number: at most 8 characters; the first and the last may be Chinese,
//     the rest ASCII letters or digits.
//   - name: any Chinese character makes the whole value count as Chinese, so
//     at most 10 characters; otherwise at most 20 letters or symbols, with single
//     spaces allowed between words (English names need them; UNCONFIRMED at
//     WeChat). Digits are refused in both forms.
//   - phrase: at most 5 Chinese characters and nothing else.
//   - enum: non-empty and at most 20 characters. The template's enum list lives
//     in the WeChat console and is not known here, so membership cannot be
//     checked; a value outside the list still fails at send.
//
// The returned error, if any, is a *FieldError with an empty Key.
func ValidateValue(t FieldType, v string) error {
	if reason := checkValue(t, v); reason != "" {
		return &FieldError{Type: string(t), Reason: reason}
	}
	return nil
}

// checkValue returns why v breaks t's rules, or "" when it does not.
func checkValue(t FieldType, v string) string {
	if !slices.Contains(fieldTypes, t) {
		return fmt.Sprintf("unknown value type %q", t)
	}
	if reason := checkText(v); reason != "" {
		return reason
	}
	n := utf8.RuneCountInString(v)
	switch t {
	case TypeThing:
		return maxLen(n, 20)
	case TypeNumber:
		if !numberRE.MatchString(v) {
			return "want digits with an optional leading minus and decimal point, like -12.5"
		}
		return maxLen(n, 32)
	case TypeLetter:
		if !all(v, isASCIILetter) {
			return "want ASCII letters only"
		}
		return maxLen(n, 32)
	case TypeSymbol:
		if !all(v, isSymbol) {
			return "want symbols only, no letters, digits or spaces"
		}
		return maxLen(n, 5)
	case TypeCharacterString:
		if !all(v, isASCIIGraphic) {
			return "want ASCII digits, letters and symbols only, no spaces or Chinese"
		}
		return maxLen(n, 32)
	case TypeTime:
		if !validRange(v, TypeTime) {
			return `want a 24-hour time, optionally after a date, like 15:01 or 2019-10-01 15:01, or two joined by "~"`
		}
		return ""
	case TypeDate:
		if !validRange(v, TypeDate) {
			return `want a date with year, month and day, like 2019-10-01, 2019/10/01 or 2019年10月1日, optionally with a time, or two joined by "~"`
		}
		return ""
	case TypeAmount:
		return checkAmount(v)
	case TypePhoneNumber:
		if !all(v, isPhoneRune) || !strings.ContainsFunc(v, isASCIIDigit) {
			return "want digits and symbols like + - ( ) only, no letters or spaces"
		}
		return maxLen(n, 17)
	case TypeCarNumber:
		return checkCarNumber(v, n)
	case TypeName:
		return checkName(v, n)
	case TypePhrase:
		if !all(v, isHan) {
			return "want Chinese characters only"
		}
		return maxLen(n, 5)
	case TypeEnum:
		return maxLen(n, 20)
	}
	return ""
}

var (
	numberRE = regexp.MustCompile(`^-?[0-9]+(\.[0-9]+)?$`)
	amountRE = regexp.MustCompile(`^[¥￥$€£]?([0-9]+)(?:\.([0-9]+))?元?$`)
)

// checkText applies the rules every value shares.
func checkText(v string) string {
	if v == "" {
		return "empty"
	}
	if !utf8.ValidString(v) {
		return "not valid UTF-8"
	}
	if i := strings.IndexFunc(v, unicode.IsControl); i >= 0 {
		r, _ := utf8.DecodeRuneInString(v[i:])
		return fmt.Sprintf("contains control character %U", r)
	}
	return ""
}

func maxLen(n, limit int) string {
	if n > limit {
		return fmt.Sprintf("longer than %d characters", limit)
	}
	return ""
}

func checkAmount(v string) string {
	m := amountRE.FindStringSubmatch(v)
	if m == nil {
		return "want an optional currency symbol (¥ $ € £) and digits with an optional decimal point and 元, like ¥12.50"
	}
	if len(m[1])+len(m[2]) > 10 {
		return "more than 10 digits"
	}
	return ""
}

func checkCarNumber(v string, n int) string {
	if n > 8 {
		return "longer than 8 characters"
	}
	i := 0
	for _, r := range v {
		edge := i == 0 || i == n-1
		if !isASCIILetter(r) && !isASCIIDigit(r) && !(edge && isHan(r)) {
			return "want ASCII letters and digits, with Chinese allowed only first and last, like 粤B12345"
		}
		i++
	}
	return ""
}

func checkName(v string, n int) string {
	if strings.ContainsFunc(v, unicode.IsDigit) {
		return "digits are not allowed in a name"
	}
	if strings.ContainsFunc(v, isHan) {
		// WeChat counts mixed text as Chinese, so the tighter limit applies.
		if !all(v, func(r rune) bool { return isHan(r) || unicode.IsLetter(r) || isSymbol(r) }) {
			return "want Chinese characters, letters or symbols only"
		}
		if n > 10 {
			return "longer than 10 characters (text with Chinese characters is limited to 10)"
		}
		return ""
	}
	for word := range strings.SplitSeq(v, " ") {
		if word == "" {
			return "spaces allowed only singly between words"
		}
		if !all(word, func(r rune) bool { return unicode.IsLetter(r) || isSymbol(r) }) {
			return "want letters or symbols only"
		}
	}
	return maxLen(n, 20)
}

// validRange reports whether v is one point of type t or two joined by "~".
func validRange(v string, t FieldType) bool {
	points := strings.Split(v, "~")
	if len(points) > 2 {
		return false
	}
	for _, p := range points {
		if !validPoint(strings.Trim(p, " "), t) {
			return false
		}
	}
	return true
}

var (
	dateRE    = regexp.MustCompile(`^([0-9]{4})([-/.])([0-9]{1,2})([-/.])([0-9]{1,2})`)
	cnDateRE  = regexp.MustCompile(`^([0-9]{4})年([0-9]{1,2})月([0-9]{1,2})日`)
	clockRE   = regexp.MustCompile(`^([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?$`)
	errNoDate = errors.New("no date")
)

// validPoint reports whether p is a single time (t == TypeTime) or date
// (t == TypeDate) point.
func validPoint(p string, t FieldType) bool {
	rest, chinese, err := cutDate(p)
	switch {
	case errors.Is(err, errNoDate):
		return t == TypeTime && validClock(p)
	case err != nil:
		return false
	case rest == "":
		return t == TypeDate
	}
	if after, ok := strings.CutPrefix(rest, " "); ok {
		rest = after
	} else if !chinese {
		return false
	}
	return validClock(rest)
}

// cutDate parses the date at the start of p and returns what follows it. The
// error is errNoDate when p does not start with something shaped like a date.
func cutDate(p string) (rest string, chinese bool, err error) {
	var y, mo, d string
	if m := dateRE.FindStringSubmatch(p); m != nil {
		if m[2] != m[4] {
			return "", false, errors.New("mixed separators")
		}
		y, mo, d, rest = m[1], m[3], m[5], p[len(m[0]):]
	} else if m := cnDateRE.FindStringSubmatch(p); m != nil {
		y, mo, d, rest, chinese = m[1], m[2], m[3], p[len(m[0]):], true
	} else {
		return "", false, errNoDate
	}
	if !validDate(atoi(y), atoi(mo), atoi(d)) {
		return "", false, errors.New("no such day")
	}
	return rest, chinese, nil
}

func validClock(s string) bool {
	m := clockRE.FindStringSubmatch(s)
	if m == nil {
		return false
	}
	sec := 0
	if m[3] != "" {
		sec = atoi(m[3])
	}
	return atoi(m[1]) <= 23 && atoi(m[2]) <= 59 && sec <= 59
}

func validDate(y, m, d int) bool {
	if y < 1 || m < 1 || m > 12 || d < 1 {
		return false
	}
	return d <= daysIn(y, m)
}

func daysIn(y, m int) int {
	switch m {
	case 2:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// atoi converts a string the regexps above have already limited to a few
// ASCII digits, so it cannot fail.
func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func all(s string, ok func(rune) bool) bool {
	return !strings.ContainsFunc(s, func(r rune) bool { return !ok(r) })
}

func isASCIILetter(r rune) bool  { return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' }
func isASCIIDigit(r rune) bool   { return r >= '0' && r <= '9' }
func isASCIIGraphic(r rune) bool { return r > ' ' && r < 0x7f }
func isHan(r rune) bool          { return unicode.Is(unicode.Han, r) }

// isSymbol reports whether r is punctuation or a symbol in Unicode's sense,
// which covers ASCII symbols as well as full-width Chinese punctuation.
func isSymbol(r rune) bool { return unicode.IsPunct(r) || unicode.IsSymbol(r) }

func isPhoneRune(r rune) bool { return isASCIIGraphic(r) && !isASCIILetter(r) }
