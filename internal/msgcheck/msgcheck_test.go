package msgcheck_test

import (
	"errors"
	"strings"
	"testing"

	"minipush/internal/msgcheck"
)

func TestTypeOfKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		key  string
		want msgcheck.FieldType
		ok   bool
	}{
		{"Thing", "thing1", msgcheck.TypeThing, true},
		{"TwoDigits", "character_string12", msgcheck.TypeCharacterString, true},
		{"Time", "time3", msgcheck.TypeTime, true},
		{"PhoneNotNumber", "phone_number4", msgcheck.TypePhoneNumber, true},
		{"CarNotNumber", "car_number2", msgcheck.TypeCarNumber, true},
		{"Number", "number7", msgcheck.TypeNumber, true},
		{"Letter", "letter1", msgcheck.TypeLetter, true},
		{"Symbol", "symbol1", msgcheck.TypeSymbol, true},
		{"Date", "date5", msgcheck.TypeDate, true},
		{"Amount", "amount6", msgcheck.TypeAmount, true},
		{"Name", "name8", msgcheck.TypeName, true},
		{"Phrase", "phrase9", msgcheck.TypePhrase, true},
		{"Enum", "enum10", msgcheck.TypeEnum, true},
		{"MaxNumber", "thing9999", msgcheck.TypeThing, true},
		{"ErrTooBig", "thing10000", "", false},
		{"ErrNoNumber", "thing", "", false},
		{"ErrZero", "thing0", "", false},
		{"ErrLeadingZero", "thing01", "", false},
		{"ErrUpperCase", "Thing1", "", false},
		{"ErrUnknownType", "keyword1", "", false},
		{"ErrSuffix", "thing1a", "", false},
		{"ErrSign", "thing-1", "", false},
		{"ErrPartialPrefix", "string1", "", false},
		{"ErrEmpty", "", "", false},
		{"ErrSpace", "thing 1", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := msgcheck.TypeOfKey(tt.key)
			if got != tt.want || ok != tt.ok {
				t.Errorf("TypeOfKey(%q) = %q, %v; want %q, %v", tt.key, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestValidateValue(t *testing.T) {
	t.Parallel()
	type tc struct {
		name   string
		typ    msgcheck.FieldType
		value  string
		reason string // substring of the reason; "" means valid
	}
	tests := []tc{
		// thing
		{"ThingChinese", msgcheck.TypeThing, "您的订单已发货", ""},
		{"ThingMixed", msgcheck.TypeThing, "Order #12 已发货!", ""},
		{"Thing20Runes", msgcheck.TypeThing, strings.Repeat("中", 20), ""},
		{"ErrThing21Runes", msgcheck.TypeThing, strings.Repeat("中", 21), "longer than 20 characters"},
		{"ErrThing21ASCII", msgcheck.TypeThing, strings.Repeat("a", 21), "longer than 20 characters"},

		// number
		{"Number", msgcheck.TypeNumber, "42", ""},
		{"NumberDecimal", msgcheck.TypeNumber, "3.14", ""},
		{"NumberNegative", msgcheck.TypeNumber, "-7.5", ""},
		{"Number32", msgcheck.TypeNumber, strings.Repeat("9", 32), ""},
		{"ErrNumber33", msgcheck.TypeNumber, strings.Repeat("9", 33), "longer than 32"},
		{"ErrNumberSignCounts", msgcheck.TypeNumber, "-" + strings.Repeat("9", 32), "longer than 32"},
		{"ErrNumberLetters", msgcheck.TypeNumber, "12a", "want digits"},
		{"ErrNumberTwoPoints", msgcheck.TypeNumber, "1.2.3", "want digits"},
		{"ErrNumberTrailingPoint", msgcheck.TypeNumber, "12.", "want digits"},
		{"ErrNumberPlus", msgcheck.TypeNumber, "+1", "want digits"},
		{"ErrNumberFullWidth", msgcheck.TypeNumber, "１２", "want digits"},

		// letter
		{"Letter", msgcheck.TypeLetter, "ABCxyz", ""},
		{"Letter32", msgcheck.TypeLetter, strings.Repeat("a", 32), ""},
		{"ErrLetter33", msgcheck.TypeLetter, strings.Repeat("a", 33), "longer than 32"},
		{"ErrLetterDigit", msgcheck.TypeLetter, "abc1", "ASCII letters only"},
		{"ErrLetterSpace", msgcheck.TypeLetter, "ab cd", "ASCII letters only"},
		{"ErrLetterAccent", msgcheck.TypeLetter, "café", "ASCII letters only"},

		// symbol
		{"Symbol", msgcheck.TypeSymbol, "#$%", ""},
		{"SymbolFullWidth", msgcheck.TypeSymbol, "，。！", ""},
		{"Symbol5", msgcheck.TypeSymbol, "!!!!!", ""},
		{"ErrSymbol6", msgcheck.TypeSymbol, "!!!!!!", "longer than 5"},
		{"ErrSymbolLetter", msgcheck.TypeSymbol, "!a", "symbols only"},
		{"ErrSymbolDigit", msgcheck.TypeSymbol, "1", "symbols only"},
		{"ErrSymbolSpace", msgcheck.TypeSymbol, "! !", "symbols only"},

		// character_string
		{"CharString", msgcheck.TypeCharacterString, "SN-2019_10/01#A", ""},
		{"CharString32", msgcheck.TypeCharacterString, strings.Repeat("x", 32), ""},
		{"ErrCharString33", msgcheck.TypeCharacterString, strings.Repeat("x", 33), "longer than 32"},
		{"ErrCharStringChinese", msgcheck.TypeCharacterString, "订单123", "ASCII"},
		{"ErrCharStringSpace", msgcheck.TypeCharacterString, "AB 12", "no spaces"},

		// time
		{"TimeHM", msgcheck.TypeTime, "15:01", ""},
		{"TimeOneDigitHour", msgcheck.TypeTime, "9:05", ""},
		{"TimeHMS", msgcheck.TypeTime, "15:01:02", ""},
		{"TimeMidnight", msgcheck.TypeTime, "00:00", ""},
		{"TimeWithDate", msgcheck.TypeTime, "2019-10-01 15:01", ""},
		{"TimeWithSlashDate", msgcheck.TypeTime, "2019/10/01 15:01:02", ""},
		{"TimeWithChineseDate", msgcheck.TypeTime, "2019年10月1日 15:01", ""},
		{"TimeWithChineseDateNoSpace", msgcheck.TypeTime, "2019年10月1日15:01", ""},
		{"TimeRange", msgcheck.TypeTime, "15:01~16:30", ""},
		{"TimeRangeSpaced", msgcheck.TypeTime, "2019-10-01 15:01 ~ 2019-10-01 16:01", ""},
		{"TimeRangeMixed", msgcheck.TypeTime, "2019-10-01 15:01~16:01", ""},
		{"ErrTimeDateOnly", msgcheck.TypeTime, "2019-10-01", "24-hour time"},
		{"ErrTime24", msgcheck.TypeTime, "24:00", "24-hour time"},
		{"ErrTimeMinute60", msgcheck.TypeTime, "12:60", "24-hour time"},
		{"ErrTimeSecond60", msgcheck.TypeTime, "12:00:60", "24-hour time"},
		{"ErrTimeAMPM", msgcheck.TypeTime, "3:01 PM", "24-hour time"},
		{"ErrTimeOneDigitMinute", msgcheck.TypeTime, "15:1", "24-hour time"},
		{"ErrTimeThreePoints", msgcheck.TypeTime, "1:00~2:00~3:00", "24-hour time"},
		{"ErrTimeHalfRange", msgcheck.TypeTime, "15:01~", "24-hour time"},
		{"ErrTimeNoSpaceAfterNumericDate", msgcheck.TypeTime, "2019-10-0115:01", "24-hour time"},
		{"ErrTimeBadDate", msgcheck.TypeTime, "2019-02-30 15:01", "24-hour time"},
		{"ErrTimeFullWidthTilde", msgcheck.TypeTime, "15:01～16:01", "24-hour time"},
		{"ErrTimeText", msgcheck.TypeTime, "tomorrow", "24-hour time"},

		// date
		{"DateDash", msgcheck.TypeDate, "2019-10-01", ""},
		{"DateSlash", msgcheck.TypeDate, "2019/10/01", ""},
		{"DateDot", msgcheck.TypeDate, "2019.10.1", ""},
		{"DateChinese", msgcheck.TypeDate, "2019年10月1日", ""},
		{"DateWithTime", msgcheck.TypeDate, "2019-10-01 15:01", ""},
		{"DateChineseWithTime", msgcheck.TypeDate, "2019年10月1日 15:01:02", ""},
		{"DateRange", msgcheck.TypeDate, "2019-10-01~2019-10-07", ""},
		{"DateLeapDay", msgcheck.TypeDate, "2024-02-29", ""},
		{"Date2000LeapDay", msgcheck.TypeDate, "2000-02-29", ""},
		{"ErrDate1900LeapDay", msgcheck.TypeDate, "1900-02-29", "want a date"},
		{"ErrDateNotLeap", msgcheck.TypeDate, "2023-02-29", "want a date"},
		{"ErrDateApril31", msgcheck.TypeDate, "2019-04-31", "want a date"},
		{"ErrDateMonth13", msgcheck.TypeDate, "2019-13-01", "want a date"},
		{"ErrDateDay0", msgcheck.TypeDate, "2019-10-00", "want a date"},
		{"ErrDateMixedSeparators", msgcheck.TypeDate, "2019-10/01", "want a date"},
		{"ErrDateNoYear", msgcheck.TypeDate, "10-01", "want a date"},
		{"ErrDateChineseNoYear", msgcheck.TypeDate, "10月1日", "want a date"},
		{"ErrDateTimeOnly", msgcheck.TypeDate, "15:01", "want a date"},
		{"ErrDateTwoDigitYear", msgcheck.TypeDate, "19-10-01", "want a date"},
		{"ErrDateTrailing", msgcheck.TypeDate, "2019-10-01x", "want a date"},
		{"ErrDateBadTime", msgcheck.TypeDate, "2019-10-01 25:00", "want a date"},

		// amount
		{"AmountPlain", msgcheck.TypeAmount, "100", ""},
		{"AmountYuanSign", msgcheck.TypeAmount, "¥12.50", ""},
		{"AmountFullWidthYuanSign", msgcheck.TypeAmount, "￥12.50", ""},
		{"AmountDollar", msgcheck.TypeAmount, "$5", ""},
		{"AmountEuro", msgcheck.TypeAmount, "€5", ""},
		{"AmountPound", msgcheck.TypeAmount, "£5", ""},
		{"AmountYuanSuffix", msgcheck.TypeAmount, "12.5元", ""},
		{"Amount10Digits", msgcheck.TypeAmount, "¥12345678.90", ""},
		{"ErrAmount11Digits", msgcheck.TypeAmount, "¥123456789.01", "more than 10 digits"},
		{"ErrAmountTwoSymbols", msgcheck.TypeAmount, "¥$5", "currency symbol"},
		{"ErrAmountNegative", msgcheck.TypeAmount, "-5", "currency symbol"},
		{"ErrAmountThousands", msgcheck.TypeAmount, "1,000", "currency symbol"},
		{"ErrAmountSymbolOnly", msgcheck.TypeAmount, "¥", "currency symbol"},
		{"ErrAmountCode", msgcheck.TypeAmount, "CNY5", "currency symbol"},

		// phone_number
		{"Phone", msgcheck.TypePhoneNumber, "13800138000", ""},
		{"PhoneSymbols", msgcheck.TypePhoneNumber, "+86-(010)-1234", ""},
		{"Phone17", msgcheck.TypePhoneNumber, strings.Repeat("1", 17), ""},
		{"ErrPhone18", msgcheck.TypePhoneNumber, strings.Repeat("1", 18), "longer than 17"},
		{"ErrPhoneLetters", msgcheck.TypePhoneNumber, "call 110", "no letters"},
		{"ErrPhoneSpace", msgcheck.TypePhoneNumber, "010 1234", "no letters or spaces"},
		{"ErrPhoneNoDigit", msgcheck.TypePhoneNumber, "+-()", "want digits"},

		// car_number
		{"Car", msgcheck.TypeCarNumber, "粤B12345", ""},
		{"CarNewEnergy", msgcheck.TypeCarNumber, "粤AD12345", ""},
		{"CarChineseLast", msgcheck.TypeCarNumber, "粤B1234学", ""},
		{"CarASCII", msgcheck.TypeCarNumber, "AB12345", ""},
		{"ErrCar9", msgcheck.TypeCarNumber, "粤AD123456", "longer than 8"},
		{"ErrCarChineseMiddle", msgcheck.TypeCarNumber, "粤B12学45", "Chinese allowed only first and last"},
		{"ErrCarSymbol", msgcheck.TypeCarNumber, "粤B-12345", "Chinese allowed only first and last"},
		{"ErrCarSpace", msgcheck.TypeCarNumber, "粤B 1234", "Chinese allowed only first and last"},

		// name
		{"NameChinese", msgcheck.TypeName, "张三", ""},
		{"NameMiddleDot", msgcheck.TypeName, "阿卜杜·热合曼", ""},
		{"NameChinese10", msgcheck.TypeName, strings.Repeat("张", 10), ""},
		{"ErrNameChinese11", msgcheck.TypeName, strings.Repeat("张", 11), "longer than 10"},
		{"NameLatin", msgcheck.TypeName, "John Smith", ""},
		{"NameLatin20", msgcheck.TypeName, strings.Repeat("a", 20), ""},
		{"ErrNameLatin21", msgcheck.TypeName, strings.Repeat("a", 21), "longer than 20"},
		{"NameMixed10", msgcheck.TypeName, "张Johnsonab", ""},
		{"ErrNameMixedCountsAsChinese", msgcheck.TypeName, "张JohnSmiths", "longer than 10"},
		{"ErrNameDigits", msgcheck.TypeName, "R2D2", "digits"},
		{"ErrNameDoubleSpace", msgcheck.TypeName, "John  Smith", "spaces"},
		{"ErrNameLeadingSpace", msgcheck.TypeName, " John", "spaces"},
		{"ErrNameChineseWithSpace", msgcheck.TypeName, "张 三", "Chinese characters, letters or symbols"},

		// phrase
		{"Phrase", msgcheck.TypePhrase, "配送中", ""},
		{"Phrase5", msgcheck.TypePhrase, "已完成配送", ""},
		{"ErrPhrase6", msgcheck.TypePhrase, "已经完成配送", "longer than 5"},
		{"ErrPhraseLatin", msgcheck.TypePhrase, "done", "Chinese characters only"},
		{"ErrPhrasePunct", msgcheck.TypePhrase, "配送中！", "Chinese characters only"},

		// enum
		{"Enum", msgcheck.TypeEnum, "已发货", ""},
		{"Enum20", msgcheck.TypeEnum, strings.Repeat("a", 20), ""},
		{"ErrEnum21", msgcheck.TypeEnum, strings.Repeat("a", 21), "longer than 20"},

		{"ErrUnknownType", msgcheck.FieldType("colour"), "red", "unknown value type"},
	}
	// Rules every type shares.
	for _, typ := range []msgcheck.FieldType{
		msgcheck.TypeThing, msgcheck.TypeNumber, msgcheck.TypeLetter, msgcheck.TypeSymbol,
		msgcheck.TypeCharacterString, msgcheck.TypeTime, msgcheck.TypeDate, msgcheck.TypeAmount,
		msgcheck.TypePhoneNumber, msgcheck.TypeCarNumber, msgcheck.TypeName, msgcheck.TypePhrase,
		msgcheck.TypeEnum,
	} {
		tests = append(tests,
			tc{"ErrEmpty/" + string(typ), typ, "", "empty"},
			tc{"ErrNewline/" + string(typ), typ, "a\nb", "control character U+000A"},
			tc{"ErrTab/" + string(typ), typ, "\t", "control character U+0009"},
			tc{"ErrDEL/" + string(typ), typ, "a\x7f", "control character U+007F"},
			tc{"ErrC1/" + string(typ), typ, "a\u0085", "control character U+0085"},
			tc{"ErrUTF8/" + string(typ), typ, "a\xffb", "not valid UTF-8"},
		)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := msgcheck.ValidateValue(tt.typ, tt.value)
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("ValidateValue(%s, %q) = %v; want nil", tt.typ, tt.value, err)
				}
				return
			}
			var fe *msgcheck.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("ValidateValue(%s, %q) = %v; want a *FieldError", tt.typ, tt.value, err)
			}
			if !strings.Contains(fe.Reason, tt.reason) {
				t.Errorf("ValidateValue(%s, %q).Reason = %q; want it to contain %q", tt.typ, tt.value, fe.Reason, tt.reason)
			}
			if fe.Type != string(tt.typ) || fe.Key != "" {
				t.Errorf("ValidateValue(%s, %q) Type, Key = %q, %q; want %q, empty", tt.typ, tt.value, fe.Type, fe.Key, tt.typ)
			}
		})
	}
}

func TestFieldErrorError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  *msgcheck.FieldError
		want string
	}{
		{"Value", &msgcheck.FieldError{Key: "thing3", Type: "thing", Reason: "longer than 20 characters"}, "data.thing3.value: longer than 20 characters"},
		{"Key", &msgcheck.FieldError{Key: "foo", Field: "key", Reason: "unknown key"}, "data.foo: unknown key"},
		{"Color", &msgcheck.FieldError{Key: "keyword1", Field: "color", Reason: "bad"}, "data.keyword1.color: bad"},
		{"WholeData", &msgcheck.FieldError{Reason: "empty"}, "data: empty"},
		{"Emphasis", &msgcheck.FieldError{Key: "keyword2", Field: "emphasis_keyword", Reason: "missing"}, "emphasis_keyword: missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q; want %q", got, tt.want)
			}
		})
	}
}

func TestJoin(t *testing.T) {
	t.Parallel()
	t.Run("Nil", func(t *testing.T) {
		t.Parallel()
		if err := msgcheck.Join(nil); err != nil {
			t.Errorf("Join(nil) = %v; want nil", err)
		}
	})
	t.Run("Two", func(t *testing.T) {
		t.Parallel()
		a := &msgcheck.FieldError{Key: "thing1", Reason: "empty"}
		b := &msgcheck.FieldError{Key: "time2", Reason: "bad"}
		err := msgcheck.Join([]*msgcheck.FieldError{a, b})
		if want := "data.thing1.value: empty\ndata.time2.value: bad"; err == nil || err.Error() != want {
			t.Fatalf("Join = %v; want %q", err, want)
		}
		var fe *msgcheck.FieldError
		if !errors.As(err, &fe) || fe != a {
			t.Errorf("errors.As(Join) = %v; want the first FieldError", fe)
		}
	})
}
