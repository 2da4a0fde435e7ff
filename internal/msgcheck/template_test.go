package msgcheck

import (
	"strings"
	"testing"
)

func TestValidateForTemplate(t *testing.T) {
	fields := []Field{{Key: "thing1", Type: TypeThing}, {Key: "phrase2", Type: TypeEnum, Enum: []string{"已发货", "未发货"}}, {Key: "newtype3", Type: "newtype"}}
	for _, tc := range []struct {
		name string
		data map[string]string
		want string // joined errors; "" for none
	}{
		{"OK", map[string]string{"thing1": "键盘", "phrase2": "已发货", "newtype3": "x"}, ""},
		{"BadEnum", map[string]string{"thing1": "键盘", "phrase2": "已签收", "newtype3": "x"}, `data.phrase2.value: "已签收" is not one of [已发货 未发货] (rule enum)`},
		{"ThingTooLong", map[string]string{"thing1": strings.Repeat("长", 21), "phrase2": "已发货", "newtype3": "x"}, "data.thing1.value: longer than 20 characters (rule thing)"},
		{"Missing", map[string]string{"thing1": "键盘", "newtype3": "x"}, "data.phrase2: missing: the template's content uses it (rule enum)"},
		{"Unknown", map[string]string{"thing1": "键盘", "phrase2": "已发货", "newtype3": "x", "thing9": "y"}, "data.thing9: not a field of this template (its fields: newtype3, phrase2, thing1)"},
		{"NewTypeStillNoControl", map[string]string{"thing1": "键盘", "phrase2": "已发货", "newtype3": "a\nb"}, "data.newtype3.value: contains control character U+000A (rule newtype)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, e := range ValidateForTemplate(fields, tc.data) {
				got = append(got, e.Error())
			}
			if g := strings.Join(got, "; "); g != tc.want {
				t.Fatalf("got %q, want %q", g, tc.want)
			}
		})
	}
}
