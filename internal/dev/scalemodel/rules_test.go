package scalemodel

import (
	"encoding/json"
	"testing"
)

func sv(v string) av { return av{S: &v} }
func nv(v string) av { return av{N: &v} }

// TestItemSize checks item sizes against the examples of AWS's rules: names count,
// numbers take one byte per two significant digits plus one, lists and maps 3 bytes
// plus one per element.
// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html
func TestItemSize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		json string
		want int
	}{
		{"string", `{"pk":{"S":"abc"}}`, 2 + 3},
		{"utf8", `{"n":{"S":"é"}}`, 1 + 2},
		{"number", `{"n":{"N":"12345"}}`, 1 + 3 + 1},
		{"number zeros trimmed", `{"n":{"N":"-0012300.000"}}`, 1 + 2 + 1},
		{"binary raw bytes", `{"b":{"B":"AAEC"}}`, 1 + 3},
		{"bool and null", `{"t":{"BOOL":true},"z":{"NULL":true}}`, 1 + 1 + 1 + 1},
		{"list", `{"l":{"L":[{"S":"ab"},{"N":"1"}]}}`, 1 + 3 + (1 + 2) + (1 + 2)},
		{"map", `{"m":{"M":{"k":{"S":"v"}}}}`, 1 + 3 + (1 + 1 + 1)},
		{"empty map", `{"m":{"M":{}}}`, 1 + 3},
		{"string set", `{"s":{"SS":["a","bc"]}}`, 1 + 3},
	} {
		var it item
		if err := json.Unmarshal([]byte(tc.json), &it); err != nil {
			t.Fatal(err)
		}
		if got := it.size(); got != tc.want {
			t.Errorf("%s: size %d, want %d", tc.name, got, tc.want)
		}
	}
}

// TestPredictKeys: the index keys an UpdateExpression sets, removes or leaves.
func TestPredictKeys(t *testing.T) {
	t.Parallel()
	old := item{"status": sv("draft"), "dueShard": sv("0")}
	values := map[string]av{":s": sv("sending"), ":d": sv("1"), ":z": nv("0"), ":one": nv("1")}
	names := map[string]string{"#status": "status"}
	attrs := []string{"status", "dueShard", "dueAt"}
	for _, tc := range []struct {
		name, expr string
		want       item
	}{
		{"set by placeholder", "SET #status = :s, updatedAt = :z", item{"status": sv("sending"), "dueShard": sv("0")}},
		{"remove", "SET #status = :s REMOVE dueShard, dueAt", item{"status": sv("sending")}},
		{"if_not_exists keeps a present value", "SET dueShard = if_not_exists(dueShard, :d)", old},
		{"if_not_exists sets a missing one", "set dueAt = if_not_exists(dueAt, :z)", item{"status": sv("draft"), "dueShard": sv("0"), "dueAt": nv("0")}},
		{"arithmetic leaves the old value", "SET rev = if_not_exists(rev, :z) + :one, dueShard = dueShard", old},
	} {
		got := predictKeys(tc.expr, names, values, old, attrs)
		if len(got) != len(tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
			continue
		}
		for k, v := range tc.want {
			if got[k].keyString() != v.keyString() {
				t.Errorf("%s: %s = %s, want %s", tc.name, k, got[k].keyString(), v.keyString())
			}
		}
	}
}

// TestHashValue: the partition key value of a KeyConditionExpression, whatever range
// condition comes with it.
func TestHashValue(t *testing.T) {
	t.Parallel()
	values := map[string]av{":pk": sv("run#1"), ":a": nv("1"), ":b": nv("9"), ":p": sv("x")}
	names := map[string]string{"#pk": "pk", "#o": "outcome"}
	for _, tc := range []struct {
		expr string
		ok   bool
	}{
		{"pk = :pk", true},
		{"#pk=:pk AND begins_with(sk, :p)", true},
		{":pk = pk", true},
		{"#o BETWEEN :a AND :b AND #pk = :pk", true},
		{"(pk = :pk) AND sk >= :a", true},
		{"sk = :pk", false},
		{"pk <= :pk", false},
	} {
		v, ok := hashValue(tc.expr, names, values, "pk")
		if ok != tc.ok || (ok && v.keyString() != "S:run#1") {
			t.Errorf("%q: %s %v, want found=%v", tc.expr, v.keyString(), ok, tc.ok)
		}
	}
}
