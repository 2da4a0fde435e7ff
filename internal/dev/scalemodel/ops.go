package scalemodel

import (
	"context"
	"encoding/json"
	"hash/fnv"
	"math"
	"net/http"
	"slices"

	"minipush/internal/dev/reqcount"
)

// exchange is one client request on its way through the model.
type exchange struct {
	s    *Server
	w    http.ResponseWriter
	r    *http.Request
	body []byte
	req  map[string]json.RawMessage
	op   string

	askedCapacity string // what the client asked for ReturnConsumedCapacity
}

func (x *exchange) ctx() context.Context { return x.r.Context() }

func (x *exchange) str(field string) string {
	var v string
	_ = decodeJSON(x.req[field], &v)
	return v
}

func (x *exchange) set(field string, v any) {
	b, _ := json.Marshal(v)
	x.req[field] = b
}

func strOf(m map[string]json.RawMessage, field string) string {
	var v string
	_ = decodeJSON(m[field], &v)
	return v
}

func boolOf(m map[string]json.RawMessage, field string) bool {
	var v bool
	_ = decodeJSON(m[field], &v)
	return v
}

func namesOf(m map[string]json.RawMessage) map[string]string {
	var v map[string]string
	_ = decodeJSON(m["ExpressionAttributeNames"], &v)
	return v
}

func valuesOf(m map[string]json.RawMessage) map[string]av {
	var v map[string]av
	_ = decodeJSON(m["ExpressionAttributeValues"], &v)
	return v
}

// passThrough hands the request to DynamoDB unchanged: for what the model does not
// understand (a table it cannot describe, a malformed key), DynamoDB's own answer is
// the right one.
func (x *exchange) passThrough() { x.s.pass(x.w, x.r, x.body) }

func (x *exchange) fail(err error) {
	x.s.log.Error("scalemodel: upstream", "op", x.op, "err", err)
	http.Error(x.w, err.Error(), http.StatusBadGateway)
}

func (x *exchange) throttle(d denial) {
	x.s.log.Info("scalemodel: throttled", "op", x.op, "table", d.t.res.table, "index", d.t.res.index, "reason", d.reason().Reason)
	writeThrottle(x.w, d)
}

// send forwards the rewritten request, asking for the consumed capacity per table and
// index; resp is the decoded answer when DynamoDB accepted the request.
func (x *exchange) send() (answer, map[string]json.RawMessage, error) {
	x.askedCapacity = x.str("ReturnConsumedCapacity")
	x.set("ReturnConsumedCapacity", "INDEXES")
	body, err := json.Marshal(x.req)
	if err != nil {
		return answer{}, nil, err
	}
	a, err := x.s.forward(x.ctx(), x.r.Header, body)
	if err != nil || a.status != http.StatusOK {
		return a, nil, err
	}
	resp := map[string]json.RawMessage{}
	if err := json.Unmarshal(a.body, &resp); err != nil {
		return a, nil, err
	}
	return a, resp, nil
}

// admitted reserves the touches of one request; when the limiter refuses one, the
// request is answered throttled at that partition and admitted is false.
func (x *exchange) admitted(sc *schema, touches ...touch) bool {
	if d := x.s.lim.admit(touches); d != nil {
		x.throttle(denial{*d, sc})
		return false
	}
	return true
}

// sendAccepted forwards the request (see send); ok is true only with DynamoDB's
// accepted, decoded answer. Otherwise the client already has its answer: a 502 for an
// upstream failure, or DynamoDB's refusal (a failed condition, a validation error)
// relayed as it is.
func (x *exchange) sendAccepted() (a answer, resp map[string]json.RawMessage, ok bool) {
	a, resp, err := x.send()
	if err != nil {
		x.fail(err)
		return a, nil, false
	}
	if resp == nil {
		x.reply(a, nil)
		return a, nil, false
	}
	return a, resp, true
}

// reply relays an answer as the client asked for it: the consumed capacity dropped or
// cut to its total, and fields the model asked for on its own (strip) removed.
func (x *exchange) reply(a answer, resp map[string]json.RawMessage, strip ...string) {
	if resp == nil {
		writeBody(x.w, a.status, a.header, a.body)
		return
	}
	for _, f := range strip {
		delete(resp, f)
	}
	switch x.askedCapacity {
	case "INDEXES":
	case "TOTAL":
		resp["ConsumedCapacity"] = totalOnly(resp["ConsumedCapacity"])
	default:
		delete(resp, "ConsumedCapacity")
	}
	b, err := json.Marshal(resp)
	if err != nil {
		x.fail(err)
		return
	}
	writeBody(x.w, a.status, a.header, b)
}

func totalOnly(raw json.RawMessage) json.RawMessage {
	cut := func(m map[string]json.RawMessage) {
		delete(m, "Table")
		delete(m, "LocalSecondaryIndexes")
		delete(m, "GlobalSecondaryIndexes")
	}
	var list []map[string]json.RawMessage
	if json.Unmarshal(raw, &list) == nil {
		for _, m := range list {
			cut(m)
		}
		b, _ := json.Marshal(list)
		return b
	}
	var one map[string]json.RawMessage
	if json.Unmarshal(raw, &one) == nil && one != nil {
		cut(one)
		b, _ := json.Marshal(one)
		return b
	}
	return raw
}

// capacity is one ConsumedCapacity entry of an answer.
type capacity struct {
	TableName              string
	CapacityUnits          float64
	Table                  *struct{ CapacityUnits float64 }
	LocalSecondaryIndexes  map[string]struct{ CapacityUnits float64 }
	GlobalSecondaryIndexes map[string]struct{ CapacityUnits float64 }
}

// units splits an entry into the units that land on the table's partitions (the
// table's own and its LSIs'), the LSIs' share of them, and each GSI's.
func (c capacity) units() (table float64, lsi, gsi map[string]float64) {
	lsi, gsi = map[string]float64{}, map[string]float64{}
	rest := c.CapacityUnits
	for n, u := range c.LocalSecondaryIndexes {
		lsi[n] = u.CapacityUnits
	}
	for n, u := range c.GlobalSecondaryIndexes {
		gsi[n] = u.CapacityUnits
		rest -= u.CapacityUnits
	}
	if c.Table != nil {
		table = c.Table.CapacityUnits
		for _, u := range lsi {
			table += u
		}
		return table, lsi, gsi
	}
	return rest, lsi, gsi
}

func capacities(raw json.RawMessage) map[string]capacity {
	out := map[string]capacity{}
	var list []capacity
	if json.Unmarshal(raw, &list) == nil {
		for _, c := range list {
			out[c.TableName] = c
		}
		return out
	}
	var one capacity
	if json.Unmarshal(raw, &one) == nil && one.TableName != "" {
		out[one.TableName] = one
	}
	return out
}

// readUnitsOf is what an accepted read of table cost: DynamoDB Local's report, but
// never below the least AWS bills for a read.
func readUnitsOf(resp map[string]json.RawMessage, table string, consistent bool) float64 {
	return max(capacities(resp["ConsumedCapacity"])[table].CapacityUnits, reqcount.MinimumRead(consistent))
}

// writeUnits is what a write of size bytes costs: 1 WCU per started KB.
func writeUnits(size int) float64 { return max(1, math.Ceil(float64(size)/1024)) }

// readUnits is what reading size bytes costs: 1 RCU per started 4 KB strongly
// consistent, half that eventually consistent.
func readUnits(size int, consistent bool) float64 {
	u := max(1, math.Ceil(float64(size)/4096))
	if consistent {
		return u
	}
	return u / 2
}

// itemID identifies an item (its table and primary key) in the collection sizes.
func itemID(table string, sc *schema, key item) uint64 {
	h := fnv.New64a()
	h.Write([]byte(table))
	h.Write([]byte{0})
	h.Write([]byte(key[sc.hash].keyString()))
	if sc.rangeKey != "" {
		h.Write([]byte{0})
		h.Write([]byte(key[sc.rangeKey].keyString()))
	}
	return h.Sum64()
}

// indexed reports whether an item has an entry in an index (sparse indexes hold only
// items with their key attributes).
func indexed(ix index, it item) bool {
	return it[ix.hash].present() && (ix.rangeKey == "" || it[ix.rangeKey].present())
}

// gsiTouches are the index partitions a write of an item from before to after touches:
// the old entry's key (deleted) and the new one's (written), once if they are equal.
func gsiTouches(sc *schema, before, after item, estimate float64) []touch {
	var out []touch
	for _, ix := range sc.gsis {
		var keys []string
		for _, it := range []item{before, after} {
			if it != nil && indexed(ix, it) {
				if k := it[ix.hash].keyString(); !slices.Contains(keys, k) {
					keys = append(keys, k)
				}
			}
		}
		for _, k := range keys {
			out = append(out, touch{res: resource{sc.name, ix.name}, key: k, kind: write, estimate: estimate})
		}
	}
	return out
}

// chargeGSI books each GSI's units on the keys the write really touched (before and
// after images), evenly, and returns what admit reserved on keys it did not touch.
func (x *exchange) chargeGSI(sc *schema, reserved []touch, actual []touch, units map[string]float64) {
	perIndex := map[string]int{}
	for _, t := range actual {
		perIndex[t.res.index]++
	}
	for _, t := range actual {
		t.estimate = 0
		for _, r := range reserved {
			if r.res == t.res && r.key == t.key {
				t.estimate = r.estimate
			}
		}
		x.s.lim.charge(t, units[t.res.index]/float64(perIndex[t.res.index]))
	}
	for _, r := range reserved {
		if !slices.ContainsFunc(actual, func(t touch) bool { return t.res == r.res && t.key == r.key }) {
			x.s.lim.charge(r, 0)
		}
	}
}

// itemWrite models PutItem, UpdateItem and DeleteItem.
func (x *exchange) itemWrite() {
	ctx := x.ctx()
	table := x.str("TableName")
	sc, err := x.s.schemas.get(ctx, table)
	if err != nil {
		x.passThrough()
		return
	}
	var newItem, key item
	if x.op == "PutItem" {
		if newItem, err = decodeItem(x.req["Item"]); err == nil {
			key = sc.keyOf(newItem)
		}
	} else {
		key, err = decodeItem(x.req["Key"])
	}
	if err != nil || !key[sc.hash].present() {
		x.passThrough()
		return
	}
	pk := key[sc.hash].keyString()
	if newItem != nil && newItem.size() > ItemBytes {
		writeError(x.w, "ValidationException", msgItemTooLarge, nil)
		return
	}
	// A table with GSIs: read the item first, so the index keys it leaves are known
	// before the write (a throttled index refuses the table's write too).
	var old item
	if len(sc.gsis) > 0 {
		if old, err = x.s.image(ctx, table, key); err != nil {
			x.fail(err)
			return
		}
	}
	var predicted item
	switch x.op {
	case "PutItem":
		predicted = newItem
	case "UpdateItem":
		predicted = predictKeys(x.str("UpdateExpression"), namesOf(x.req), valuesOf(x.req), old, sc.gsiKeyAttrs())
	}
	id := itemID(table, sc, key)
	if sc.hasLSI() && x.op != "DeleteItem" {
		total, size := x.s.lim.collection(table, pk, id)
		grow := int64(sc.collectionSize(newItem)) - int64(size)
		if (x.op == "PutItem" && grow > 0 && total+grow > x.s.collectionCap) || (x.op == "UpdateItem" && total >= x.s.collectionCap) {
			writeError(x.w, "ItemCollectionSizeLimitExceededException", msgCollection, nil)
			return
		}
	}
	est := 1.0
	if newItem != nil {
		est = writeUnits(newItem.size())
	}
	tableTouch := touch{res: resource{table: table}, key: pk, kind: write, estimate: est}
	gsiReserved := gsiTouches(sc, old, predicted, 1)
	if !x.admitted(sc, append([]touch{tableTouch}, gsiReserved...)...) {
		return
	}

	// Ask for the image the model lacks: the old one of a put or delete (its size leaves
	// the item collection), the new one of an update.
	rv, forced := x.str("ReturnValues"), false
	if (sc.hasLSI() || len(sc.gsis) > 0) && (rv == "" || rv == "NONE") {
		forced = true
		if x.op == "UpdateItem" {
			rv = "ALL_NEW"
		} else {
			rv = "ALL_OLD"
		}
		x.set("ReturnValues", rv)
	}
	// Refused by DynamoDB (a failed condition), AWS still charges the write: the
	// reservation stands.
	a, resp, ok := x.sendAccepted()
	if !ok {
		return
	}
	var attrs item
	_ = decodeJSON(resp["Attributes"], &attrs)
	var before, after item
	oldKnown := false
	switch x.op {
	case "PutItem":
		after = newItem
		before, oldKnown = attrs, rv == "ALL_OLD"
	case "DeleteItem":
		before, oldKnown = attrs, rv == "ALL_OLD"
	case "UpdateItem":
		after = attrs
		if rv != "ALL_NEW" && (sc.hasLSI() || len(sc.gsis) > 0) {
			if after, err = x.s.image(ctx, table, key); err != nil {
				x.fail(err)
				return
			}
		}
	}
	if len(sc.gsis) > 0 {
		before = old
	}
	tableUnits, lsiUnits, gsiUnits := capacities(resp["ConsumedCapacity"])[table].units()
	x.s.lim.charge(tableTouch, tableUnits)
	for name, u := range lsiUnits {
		x.s.lim.book(resource{table, name}, write, u)
	}
	x.chargeGSI(sc, gsiReserved, gsiTouches(sc, before, after, 0), gsiUnits)
	if sc.hasLSI() {
		oldSize := -1
		if oldKnown {
			oldSize = sc.collectionSize(before)
		}
		x.s.lim.resize(table, pk, id, oldSize, sc.collectionSize(after))
	}
	if forced {
		x.reply(a, resp, "Attributes")
		return
	}
	x.reply(a, resp)
}

// getItem models GetItem: a read of one partition.
func (x *exchange) getItem() {
	table := x.str("TableName")
	sc, err := x.s.schemas.get(x.ctx(), table)
	if err != nil {
		x.passThrough()
		return
	}
	key, err := decodeItem(x.req["Key"])
	if err != nil || !key[sc.hash].present() {
		x.passThrough()
		return
	}
	consistent := boolOf(x.req, "ConsistentRead")
	t := touch{res: resource{table: table}, key: key[sc.hash].keyString(), kind: read, estimate: reqcount.MinimumRead(consistent)}
	if !x.admitted(sc, t) {
		return
	}
	a, resp, ok := x.sendAccepted()
	if !ok {
		return
	}
	x.s.lim.charge(t, readUnitsOf(resp, table, consistent))
	x.reply(a, resp)
}

// query models Query (a read of one partition of the table, an LSI or a GSI) and Scan
// (which reads every partition in turn, so it is counted but charged to no key).
func (x *exchange) query() {
	table, indexName := x.str("TableName"), x.str("IndexName")
	sc, err := x.s.schemas.get(x.ctx(), table)
	if err != nil {
		x.passThrough()
		return
	}
	res, hash := resource{table: table}, sc.hash
	if indexName != "" {
		ix, ok := sc.index(indexName)
		if !ok {
			x.passThrough()
			return
		}
		hash = ix.hash
		if !sc.isLSI(indexName) {
			res.index = indexName
		}
	}
	consistent := boolOf(x.req, "ConsistentRead")
	if x.op == "Scan" {
		x.s.lim.countRequest(res)
		a, resp, ok := x.sendAccepted()
		if !ok {
			return
		}
		x.s.lim.book(res, read, readUnitsOf(resp, table, consistent))
		x.reply(a, resp)
		return
	}
	v, ok := hashValue(x.str("KeyConditionExpression"), namesOf(x.req), valuesOf(x.req), hash)
	if !ok {
		var legacy map[string]struct {
			AttributeValueList []av
			ComparisonOperator string
		}
		_ = decodeJSON(x.req["KeyConditions"], &legacy)
		if c, found := legacy[hash]; found && c.ComparisonOperator == "EQ" && len(c.AttributeValueList) == 1 {
			v, ok = c.AttributeValueList[0], true
		}
	}
	if !ok || !v.present() {
		x.passThrough()
		return
	}
	t := touch{res: res, key: v.keyString(), kind: read, estimate: reqcount.MinimumRead(consistent)}
	if !x.admitted(sc, t) {
		return
	}
	a, resp, ok := x.sendAccepted()
	if !ok {
		return
	}
	u := readUnitsOf(resp, table, consistent)
	x.s.lim.charge(t, u)
	if indexName != "" && res.index == "" {
		x.s.lim.book(resource{table, indexName}, read, u)
	}
	x.reply(a, resp)
}
