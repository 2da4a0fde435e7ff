package scalemodel

import (
	"encoding/json"
	"maps"
	"slices"

	"minipush/internal/dev/reqcount"
)

// batchEntry is one request of a BatchWriteItem or one item of a TransactWriteItems.
type batchEntry struct {
	table   string
	sc      *schema
	raw     json.RawMessage            // the request as the client sent it
	body    map[string]json.RawMessage // a transaction item's action
	verb    string                     // Put, Delete, Update, ConditionCheck
	item    item                       // the item of a Put
	key     item
	pk      string
	touches []touch // [0] is the table's partition
}

// parseWrite reads one write request: body holds Item (Put) or Key (the others).
func (x *exchange) parseWrite(table, verb string, body map[string]json.RawMessage) (*batchEntry, bool) {
	sc, err := x.s.schemas.get(x.ctx(), table)
	if err != nil {
		return nil, false
	}
	e := &batchEntry{table: table, sc: sc, verb: verb}
	if verb == "Put" {
		if e.item, err = decodeItem(body["Item"]); err != nil {
			return nil, false
		}
		e.key = sc.keyOf(e.item)
	} else if e.key, err = decodeItem(body["Key"]); err != nil {
		return nil, false
	}
	if !e.key[sc.hash].present() {
		return nil, false
	}
	e.pk = e.key[sc.hash].keyString()
	return e, true
}

// tooLarge answers the 400 KB refusal if a Put of entries is over it.
func (x *exchange) tooLarge(entries []*batchEntry) bool {
	for _, e := range entries {
		if e.item != nil && e.item.size() > ItemBytes {
			writeError(x.w, "ValidationException", msgItemTooLarge, nil)
			return true
		}
	}
	return false
}

// collectionFull reports whether a Put of e would take its item collection over the cap.
func (x *exchange) collectionFull(e *batchEntry) bool {
	if !e.sc.hasLSI() || e.verb == "Delete" || e.verb == "ConditionCheck" {
		return false
	}
	total, size := x.s.lim.collection(e.table, e.pk, itemID(e.table, e.sc, e.key))
	if e.verb == "Update" {
		return total >= x.s.collectionCap
	}
	grow := int64(e.sc.collectionSize(e.item)) - int64(size)
	return grow > 0 && total+grow > x.s.collectionCap
}

// chargeByWeight spreads units over the table touches of entries in proportion to what
// was reserved for each.
func (x *exchange) chargeByWeight(entries []*batchEntry, units float64) {
	sum := 0.0
	for _, e := range entries {
		sum += e.touches[0].estimate
	}
	for _, e := range entries {
		x.s.lim.charge(e.touches[0], units*e.touches[0].estimate/sum)
	}
}

// batchWrite models BatchWriteItem: the requests whose partitions are throttled come
// back in UnprocessedItems and the rest is written; if none can be written, the whole
// call is throttled, as AWS answers.
// https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchWriteItem.html
func (x *exchange) batchWrite() {
	var requests map[string][]json.RawMessage
	if err := decodeJSON(x.req["RequestItems"], &requests); err != nil {
		x.passThrough()
		return
	}
	var entries []*batchEntry
	for _, table := range slices.Sorted(maps.Keys(requests)) {
		for _, raw := range requests[table] {
			var wr struct{ PutRequest, DeleteRequest map[string]json.RawMessage }
			if err := json.Unmarshal(raw, &wr); err != nil {
				x.passThrough()
				return
			}
			verb, body := "Put", wr.PutRequest
			if body == nil {
				verb, body = "Delete", wr.DeleteRequest
			}
			e, ok := x.parseWrite(table, verb, body)
			if !ok {
				x.passThrough()
				return
			}
			e.raw = raw
			entries = append(entries, e)
		}
	}
	if x.tooLarge(entries) {
		return
	}
	for _, e := range entries {
		if x.collectionFull(e) {
			writeError(x.w, "ItemCollectionSizeLimitExceededException", msgCollection, nil)
			return
		}
	}
	admitted, unprocessed := map[string][]json.RawMessage{}, map[string][]json.RawMessage{}
	var done []*batchEntry
	var first *denial
	for _, e := range entries {
		est := 1.0
		if e.item != nil {
			est = writeUnits(e.item.size())
		}
		// A batch reads no old image, so a delete reserves no index partition.
		e.touches = append([]touch{{res: resource{table: e.table}, key: e.pk, kind: write, estimate: est}}, gsiTouches(e.sc, nil, e.item, 1)...)
		if d := x.s.lim.admit(e.touches); d != nil {
			unprocessed[e.table] = append(unprocessed[e.table], e.raw)
			if first == nil {
				first = &denial{*d, e.sc}
			}
			continue
		}
		admitted[e.table] = append(admitted[e.table], e.raw)
		done = append(done, e)
	}
	a, resp, ok := sendAdmitted(x, admitted, first)
	if !ok {
		return
	}
	var upstream map[string][]json.RawMessage
	_ = decodeJSON(resp["UnprocessedItems"], &upstream)
	for t, list := range upstream {
		unprocessed[t] = append(unprocessed[t], list...)
	}
	caps := capacities(resp["ConsumedCapacity"])
	for _, table := range slices.Sorted(maps.Keys(admitted)) {
		of := entriesOf(done, table)
		tableUnits, lsiUnits, gsiUnits := caps[table].units()
		x.chargeByWeight(of, tableUnits)
		for name, u := range lsiUnits {
			x.s.lim.book(resource{table, name}, write, u)
		}
		var gsi []touch
		for _, e := range of {
			gsi = append(gsi, e.touches[1:]...)
		}
		chargeSpread(x, gsi, gsiUnits)
		for _, e := range of {
			if e.sc.hasLSI() {
				x.s.lim.resize(e.table, e.pk, itemID(e.table, e.sc, e.key), -1, e.sc.collectionSize(e.item))
			}
		}
	}
	b, _ := json.Marshal(unprocessed)
	resp["UnprocessedItems"] = b
	x.reply(a, resp)
}

// sendAdmitted forwards a batch call cut to its admitted requests (by table); the
// rest the caller returns as unprocessed. With nothing admitted the call is throttled
// whole at its first denial, as AWS does. ok is as for sendAccepted.
func sendAdmitted[R any](x *exchange, admitted map[string]R, first *denial) (a answer, resp map[string]json.RawMessage, ok bool) {
	if len(admitted) == 0 {
		x.throttle(*first)
		return a, nil, false
	}
	x.set("RequestItems", admitted)
	return x.sendAccepted()
}

// entriesOf is the entries that write to table, in their order.
func entriesOf(entries []*batchEntry, table string) []*batchEntry {
	var of []*batchEntry
	for _, e := range entries {
		if e.table == table {
			of = append(of, e)
		}
	}
	return of
}

// chargeSpread books each index's units evenly over the touches of that index.
func chargeSpread(x *exchange, touches []touch, units map[string]float64) {
	n := map[string]int{}
	for _, t := range touches {
		n[t.res.index]++
	}
	for _, t := range touches {
		x.s.lim.charge(t, units[t.res.index]/float64(n[t.res.index]))
	}
}

// batchGet models BatchGetItem: throttled keys come back in UnprocessedKeys, and the
// call is throttled whole if no key can be read.
// https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchGetItem.html
func (x *exchange) batchGet() {
	var requests map[string]map[string]json.RawMessage
	if err := decodeJSON(x.req["RequestItems"], &requests); err != nil {
		x.passThrough()
		return
	}
	type tableKeys struct {
		sc                  *schema
		consistent          bool
		admitted, throttled []json.RawMessage
		touches             []touch
	}
	tables := map[string]*tableKeys{}
	var first *denial
	for _, table := range slices.Sorted(maps.Keys(requests)) {
		ka := requests[table]
		sc, err := x.s.schemas.get(x.ctx(), table)
		var keys []json.RawMessage
		if err != nil || decodeJSON(ka["Keys"], &keys) != nil {
			x.passThrough()
			return
		}
		tk := &tableKeys{sc: sc, consistent: boolOf(ka, "ConsistentRead")}
		tables[table] = tk
		for _, raw := range keys {
			key, err := decodeItem(raw)
			if err != nil || !key[sc.hash].present() {
				x.passThrough()
				return
			}
			t := touch{res: resource{table: table}, key: key[sc.hash].keyString(), kind: read, estimate: reqcount.MinimumRead(tk.consistent)}
			if d := x.s.lim.admit([]touch{t}); d != nil {
				tk.throttled = append(tk.throttled, raw)
				if first == nil {
					first = &denial{*d, sc}
				}
				continue
			}
			tk.admitted = append(tk.admitted, raw)
			tk.touches = append(tk.touches, t)
		}
	}
	admitted, unprocessed := map[string]map[string]json.RawMessage{}, map[string]map[string]json.RawMessage{}
	with := func(ka map[string]json.RawMessage, keys []json.RawMessage) map[string]json.RawMessage {
		out := maps.Clone(ka)
		b, _ := json.Marshal(keys)
		out["Keys"] = b
		return out
	}
	for table, tk := range tables {
		if len(tk.admitted) > 0 {
			admitted[table] = with(requests[table], tk.admitted)
		}
		if len(tk.throttled) > 0 {
			unprocessed[table] = with(requests[table], tk.throttled)
		}
	}
	a, resp, ok := sendAdmitted(x, admitted, first)
	if !ok {
		return
	}
	var responses map[string][]json.RawMessage
	var upstream map[string]struct{ Keys []json.RawMessage }
	_ = decodeJSON(resp["Responses"], &responses)
	_ = decodeJSON(resp["UnprocessedKeys"], &upstream)
	caps := capacities(resp["ConsumedCapacity"])
	for table, tk := range tables {
		if len(tk.touches) == 0 {
			continue
		}
		left := upstream[table].Keys
		units := caps[table].CapacityUnits + reqcount.MissingReads(len(tk.touches), len(responses[table]), len(left), tk.consistent)
		for _, t := range tk.touches {
			x.s.lim.charge(t, units/float64(len(tk.touches)))
		}
		if len(left) > 0 {
			if unprocessed[table] == nil {
				unprocessed[table] = with(requests[table], nil)
			}
			var keys []json.RawMessage
			_ = decodeJSON(unprocessed[table]["Keys"], &keys)
			b, _ := json.Marshal(append(keys, left...))
			unprocessed[table]["Keys"] = b
		}
	}
	b, _ := json.Marshal(unprocessed)
	resp["UnprocessedKeys"] = b
	x.reply(a, resp)
}

// transactWrite models TransactWriteItems: all or nothing, so one throttled partition
// cancels the transaction with a ThrottlingError reason at its item (AWS's answer; the
// SDK does not retry TransactionCanceledException). Units are doubled, as AWS bills
// transactions, by calibrating DynamoDB Local's report (reqcount.TransactScaleOf).
// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html#transaction-capacity-handling
func (x *exchange) transactWrite() {
	var items []map[string]map[string]json.RawMessage
	if err := decodeJSON(x.req["TransactItems"], &items); err != nil {
		x.passThrough()
		return
	}
	var entries []*batchEntry
	for _, ti := range items {
		var e *batchEntry
		for _, verb := range []string{"Put", "Update", "Delete", "ConditionCheck"} {
			if body, ok := ti[verb]; ok {
				var ok2 bool
				if e, ok2 = x.parseWrite(strOf(body, "TableName"), verb, body); !ok2 {
					x.passThrough()
					return
				}
				e.body = body
			}
		}
		if e == nil {
			x.passThrough()
			return
		}
		entries = append(entries, e)
	}
	if x.tooLarge(entries) {
		return
	}
	for i, e := range entries {
		if x.collectionFull(e) {
			writeCanceled(x.w, len(entries), i, "ItemCollectionSizeLimitExceeded", msgCollection)
			return
		}
	}
	var all []touch
	owner := []int{}
	for i, e := range entries {
		est := 2.0
		if e.item != nil {
			est = 2 * writeUnits(e.item.size())
		}
		e.touches = []touch{{res: resource{table: e.table}, key: e.pk, kind: write, estimate: est}}
		if e.verb != "ConditionCheck" && len(e.sc.gsis) > 0 {
			old, err := x.s.image(x.ctx(), e.table, e.key)
			if err != nil {
				x.fail(err)
				return
			}
			after := e.item
			if e.verb == "Update" {
				after = predictKeys(strOf(e.body, "UpdateExpression"), namesOf(e.body), valuesOf(e.body), old, e.sc.gsiKeyAttrs())
			}
			e.touches = append(e.touches, gsiTouches(e.sc, old, after, 2)...)
		}
		for range e.touches {
			owner = append(owner, i)
		}
		all = append(all, e.touches...)
	}
	if d := x.s.lim.admit(all); d != nil {
		at := owner[slices.IndexFunc(all, func(t touch) bool { return t == *d })]
		den := denial{*d, entries[at].sc}
		x.s.log.Info("scalemodel: throttled", "op", x.op, "table", d.res.table, "index", d.res.index, "reason", den.reason().Reason)
		writeCanceled(x.w, len(entries), at, den.cancelCode(), den.message())
		return
	}
	a, resp, ok := x.sendAccepted()
	if !ok {
		return
	}
	caps := capacities(resp["ConsumedCapacity"])
	for _, table := range slices.Sorted(maps.Keys(caps)) {
		of := entriesOf(entries, table)
		if len(of) == 0 {
			continue
		}
		// DynamoDB Local reports a transaction's units as one table figure; the index
		// partitions keep what was reserved for them.
		x.chargeByWeight(of, caps[table].CapacityUnits*x.s.transactScale)
	}
	for _, e := range entries {
		for _, t := range e.touches[1:] {
			x.s.lim.charge(t, t.estimate)
		}
		if !e.sc.hasLSI() || e.verb == "ConditionCheck" {
			continue
		}
		after := e.item
		if e.verb == "Update" {
			var err error
			if after, err = x.s.image(x.ctx(), e.table, e.key); err != nil {
				x.fail(err)
				return
			}
		}
		x.s.lim.resize(e.table, e.pk, itemID(e.table, e.sc, e.key), -1, e.sc.collectionSize(after))
	}
	x.reply(a, resp)
}

// transactGet models TransactGetItems: 2 RCU per started 4 KB of each item, and one
// throttled partition cancels it.
func (x *exchange) transactGet() {
	var items []struct{ Get map[string]json.RawMessage }
	if err := decodeJSON(x.req["TransactItems"], &items); err != nil {
		x.passThrough()
		return
	}
	var all []touch
	var scs []*schema
	for _, ti := range items {
		table := strOf(ti.Get, "TableName")
		sc, err := x.s.schemas.get(x.ctx(), table)
		key, err2 := decodeItem(ti.Get["Key"])
		if err != nil || err2 != nil || !key[sc.hash].present() {
			x.passThrough()
			return
		}
		all = append(all, touch{res: resource{table: table}, key: key[sc.hash].keyString(), kind: read, estimate: 2 * reqcount.MinimumRead(true)})
		scs = append(scs, sc)
	}
	if d := x.s.lim.admit(all); d != nil {
		at := slices.IndexFunc(all, func(t touch) bool { return t == *d })
		den := denial{*d, scs[at]}
		writeCanceled(x.w, len(all), at, den.cancelCode(), den.message())
		return
	}
	a, resp, ok := x.sendAccepted()
	if !ok {
		return
	}
	var responses []struct{ Item item }
	_ = decodeJSON(resp["Responses"], &responses)
	for i, t := range all {
		units := 2 * reqcount.MinimumRead(true)
		if i < len(responses) && len(responses[i].Item) > 0 {
			units = 2 * readUnits(responses[i].Item.size(), true)
		}
		x.s.lim.charge(t, units)
	}
	x.reply(a, resp)
}
