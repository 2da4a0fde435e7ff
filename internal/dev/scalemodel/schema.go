package scalemodel

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
)

// schema is what the model needs of a table: its keys, indexes, ARNs and billing mode,
// read once through DescribeTable and forgotten when the table is created, updated or
// deleted through the proxy.
type schema struct {
	name, arn      string
	onDemand       bool
	hash, rangeKey string
	lsis, gsis     []index
}

type index struct {
	name, arn      string
	hash, rangeKey string
	projection     string   // ALL, KEYS_ONLY or INCLUDE
	nonKey         []string // INCLUDE's attributes
}

func (s *schema) hasLSI() bool { return len(s.lsis) > 0 }

// gsiKeyAttrs are the attributes that place an item in its GSIs.
func (s *schema) gsiKeyAttrs() []string {
	var out []string
	for _, ix := range s.gsis {
		out = append(out, ix.hash)
		if ix.rangeKey != "" {
			out = append(out, ix.rangeKey)
		}
	}
	return out
}

func (s *schema) index(name string) (index, bool) {
	for _, ix := range append(append([]index{}, s.lsis...), s.gsis...) {
		if ix.name == name {
			return ix, true
		}
	}
	return index{}, false
}

func (s *schema) isLSI(name string) bool {
	for _, ix := range s.lsis {
		if ix.name == name {
			return true
		}
	}
	return false
}

// keyOf is the table's primary key of an item.
func (s *schema) keyOf(it item) item {
	k := item{s.hash: it[s.hash]}
	if s.rangeKey != "" {
		k[s.rangeKey] = it[s.rangeKey]
	}
	return k
}

// entrySize is the size an index entry of it takes: the projected attributes, the
// table's and the index's keys, and AWS's 100 bytes of per-item overhead; zero when the
// item lacks the index's key (a sparse index holds no entry for it).
// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/LSI.html#LSI.StorageConsiderations
func (s *schema) entrySize(ix index, it item) int {
	if !it[ix.hash].present() || (ix.rangeKey != "" && !it[ix.rangeKey].present()) {
		return 0
	}
	if ix.projection == "ALL" {
		return it.size() + overhead
	}
	proj := item{}
	for _, a := range append([]string{s.hash, s.rangeKey, ix.hash, ix.rangeKey}, ix.nonKey...) {
		if v, ok := it[a]; ok && a != "" {
			proj[a] = v
		}
	}
	return proj.size() + overhead
}

// collectionSize is what one item adds to its item collection: the item and its
// entries in every local secondary index.
func (s *schema) collectionSize(it item) int {
	if len(it) == 0 {
		return 0
	}
	n := it.size() + overhead
	for _, ix := range s.lsis {
		n += s.entrySize(ix, it)
	}
	return n
}

// overhead is the storage AWS adds to each item and index entry.
// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html
const overhead = 100

type schemas struct {
	mu     sync.Mutex
	tables map[string]*schema
	call   func(ctx context.Context, target string, body any, out any) error
}

func (c *schemas) get(ctx context.Context, table string) (*schema, error) {
	c.mu.Lock()
	s := c.tables[table]
	c.mu.Unlock()
	if s != nil {
		return s, nil
	}
	var out struct {
		Table struct {
			TableName, TableArn    string
			KeySchema              []keyElement
			BillingModeSummary     *struct{ BillingMode string }
			LocalSecondaryIndexes  []indexDesc
			GlobalSecondaryIndexes []indexDesc
		}
	}
	if err := c.call(ctx, "DescribeTable", map[string]string{"TableName": table}, &out); err != nil {
		return nil, fmt.Errorf("scalemodel: describe table %s: %w", table, err)
	}
	t := out.Table
	s = &schema{name: t.TableName, arn: t.TableArn, onDemand: t.BillingModeSummary == nil || t.BillingModeSummary.BillingMode != "PROVISIONED"}
	s.hash, s.rangeKey = keys(t.KeySchema)
	for i, list := range [][]indexDesc{t.LocalSecondaryIndexes, t.GlobalSecondaryIndexes} {
		for _, d := range list {
			ix := index{name: d.IndexName, arn: d.IndexArn, projection: d.Projection.ProjectionType, nonKey: d.Projection.NonKeyAttributes}
			ix.hash, ix.rangeKey = keys(d.KeySchema)
			if ix.arn == "" {
				ix.arn = s.arn + "/index/" + ix.name
			}
			if i == 0 {
				s.lsis = append(s.lsis, ix)
			} else {
				s.gsis = append(s.gsis, ix)
			}
		}
	}
	c.mu.Lock()
	if c.tables == nil {
		c.tables = map[string]*schema{}
	}
	c.tables[table] = s
	c.mu.Unlock()
	return s, nil
}

func (c *schemas) forget(table string) {
	c.mu.Lock()
	delete(c.tables, table)
	c.mu.Unlock()
}

type keyElement struct{ AttributeName, KeyType string }

type indexDesc struct {
	IndexName, IndexArn string
	KeySchema           []keyElement
	Projection          struct {
		ProjectionType   string
		NonKeyAttributes []string
	}
}

func keys(ks []keyElement) (hash, rangeKey string) {
	for _, k := range ks {
		if k.KeyType == "HASH" {
			hash = k.AttributeName
		} else {
			rangeKey = k.AttributeName
		}
	}
	return hash, rangeKey
}

// decodeJSON is json.Unmarshal with an empty input meaning nothing to decode.
func decodeJSON(raw json.RawMessage, v any) error {
	if len(raw) == 0 {
		return nil
	}
	return json.Unmarshal(raw, v)
}
