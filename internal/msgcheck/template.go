package msgcheck

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Field is one field of a known subscribe template: its data key, its rule (the
// value type; TypeEnum when the template lists the allowed values) and, for an
// enum, the values WeChat's gettemplate lists in keywordEnumValueList.
type Field struct {
	Key  string
	Type FieldType
	Enum []string
}

// ValidateForTemplate checks data against the fields of the template it is sent
// with, and returns every problem found, ordered by key, or nil: every key the
// template uses must be present, no other key may be, and each value must meet its
// field's rule. Unlike ValidateSubscribe, which only knows what a key's name
// implies, this knows the template, so it also refuses a missing key and a value
// outside an enum's list, each of which WeChat answers 47003 for every recipient.
//
// A field with an enum list accepts exactly the listed values (compared as they
// are, since WeChat's card shows them verbatim), whatever its key's prefix. A field
// whose type this package does not know (a value type WeChat added later) gets only
// the checks every value shares (not empty, valid UTF-8, no control characters),
// so a new type is not refused for want of rules. Every Reason ends with the rule
// broken, e.g. "longer than 20 characters (rule thing)".
func ValidateForTemplate(fields []Field, data map[string]string) []*FieldError {
	byKey := make(map[string]Field, len(fields))
	for _, f := range fields {
		byKey[f.Key] = f
	}
	keys := slices.Sorted(maps.Keys(byKey))
	var errs []*FieldError
	for _, key := range slices.Sorted(maps.Keys(data)) {
		if _, ok := byKey[key]; !ok {
			errs = append(errs, &FieldError{Key: key, Field: fieldKey,
				Reason: fmt.Sprintf("not a field of this template (its fields: %s)", strings.Join(keys, ", "))})
		}
	}
	for _, key := range keys {
		f := byKey[key]
		v, ok := data[key]
		if !ok {
			errs = append(errs, &FieldError{Key: key, Type: string(f.Type), Field: fieldKey,
				Reason: fmt.Sprintf("missing: the template's content uses it (rule %s)", f.Type)})
			continue
		}
		if reason := checkField(f, v); reason != "" {
			errs = append(errs, &FieldError{Key: key, Type: string(f.Type), Reason: fmt.Sprintf("%s (rule %s)", reason, f.Type)})
		}
	}
	slices.SortStableFunc(errs, func(a, b *FieldError) int { return strings.Compare(a.Key, b.Key) })
	return errs
}

// checkField returns why v breaks f's rule, or "" when it does not.
func checkField(f Field, v string) string {
	switch {
	case len(f.Enum) > 0:
		if reason := checkText(v); reason != "" {
			return reason
		}
		if !slices.Contains(f.Enum, v) {
			return fmt.Sprintf("%q is not one of [%s]", v, strings.Join(f.Enum, " "))
		}
		return ""
	case f.Type == TypeEnum:
		// An enum key whose template lists no values: nothing to compare with.
		return checkValue(TypeEnum, v)
	case slices.Contains(fieldTypes, f.Type):
		return checkValue(f.Type, v)
	default:
		return checkText(v)
	}
}
