package scalemodel

import (
	"encoding/base64"
	"encoding/json"
	"strings"
)

// av is one DynamoDB AttributeValue as the JSON protocol carries it. Binary values
// arrive base64-encoded; encoding/json decodes them into []byte.
type av struct {
	S    *string       `json:"S,omitempty"`
	N    *string       `json:"N,omitempty"`
	B    []byte        `json:"B,omitempty"`
	BOOL *bool         `json:"BOOL,omitempty"`
	NULL *bool         `json:"NULL,omitempty"`
	L    []av          `json:"L,omitempty"`
	M    map[string]av `json:"M,omitempty"`
	SS   []string      `json:"SS,omitempty"`
	NS   []string      `json:"NS,omitempty"`
	BS   [][]byte      `json:"BS,omitempty"`
}

type item map[string]av

// size is an item's size by AWS's rules: the UTF-8 length of each attribute name plus
// the size of its value (numbers: one byte per two significant digits plus one; lists
// and maps: 3 bytes plus one per element). It is what the 400 KB limit and capacity
// units are computed from.
// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html
func (it item) size() int {
	n := 0
	for name, v := range it {
		n += len(name) + v.size()
	}
	return n
}

func (v av) size() int {
	switch {
	case v.S != nil:
		return len(*v.S)
	case v.N != nil:
		return numberSize(*v.N)
	case v.B != nil:
		return len(v.B)
	case v.BOOL != nil, v.NULL != nil:
		return 1
	case v.L != nil:
		n := 3
		for _, e := range v.L {
			n += 1 + e.size()
		}
		return n
	case v.M != nil:
		n := 3
		for k, e := range v.M {
			n += 1 + len(k) + e.size()
		}
		return n
	case v.SS != nil:
		return setSize(v.SS, func(s string) int { return len(s) })
	case v.NS != nil:
		return setSize(v.NS, numberSize)
	case v.BS != nil:
		return setSize(v.BS, func(b []byte) int { return len(b) })
	}
	return 0
}

// setSize is a set's size: its members' sizes, with no overhead for the set itself.
func setSize[T any](members []T, size func(T) int) int {
	n := 0
	for _, m := range members {
		n += size(m)
	}
	return n
}

// numberSize is one byte per two significant digits plus one, leading and trailing
// zeros trimmed.
func numberSize(s string) int {
	s = strings.TrimLeft(s, "+-")
	mant, _, _ := strings.Cut(strings.ToLower(s), "e")
	digits := strings.Replace(mant, ".", "", 1)
	digits = strings.Trim(digits, "0")
	return (len(digits)+1)/2 + 1
}

// keyString renders a key attribute's value as the map key and display form of a
// partition: "S:abc", "N:12", "B:<base64>". Key attributes are scalars.
func (v av) keyString() string {
	switch {
	case v.S != nil:
		return "S:" + *v.S
	case v.N != nil:
		return "N:" + *v.N
	case v.B != nil:
		return "B:" + base64.StdEncoding.EncodeToString(v.B)
	}
	return ""
}

func (v av) present() bool { return v.keyString() != "" }

// decodeItem decodes an item (or key) from its raw JSON; a missing field is an empty item.
func decodeItem(raw json.RawMessage) (item, error) {
	if len(raw) == 0 {
		return item{}, nil
	}
	var it item
	if err := json.Unmarshal(raw, &it); err != nil {
		return nil, err
	}
	return it, nil
}
