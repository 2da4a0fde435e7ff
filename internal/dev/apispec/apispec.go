// Package apispec checks real answers of the running system against the OpenAPI
// document the admin function serves (internal/admin/openapi.json): each answer's status
// must be documented for its operation and its JSON body must match the documented
// schema, and every documented status must have been seen. A suite records every answer
// it gets (Observe) and calls Check at its end.
//
// The validator is the subset of JSON Schema 2020-12 the document uses (type, enum,
// const, required, properties, additionalProperties, items, maxItems, anyOf, $ref to
// components): small enough to read, and strict where it matters (unknown fields of an
// error answer, missing required fields, wrong types).
package apispec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"mime"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Doc is a parsed OpenAPI document.
type Doc struct {
	raw   map[string]any
	paths map[string]map[string]any // path template -> method (lower case) -> operation
	// AnyRoute are statuses any route may answer (x-any-route): stage throttling,
	// storage throttling, internal errors, which no suite of the local system produces.
	AnyRoute map[int]bool
	// AnyWrite are the answers any POST, PUT or PATCH under /v1/admin/ may give because
	// of its Idempotency-Key (x-admin-writes): checked like an operation's own, and each
	// must be seen on some write.
	AnyWrite map[int]map[string]any

	mu   sync.Mutex
	seen map[string]bool // "METHOD /template status"
}

// anyWriteKey is the Unseen/Observe name of an x-admin-writes status.
const anyWriteKey = "x-admin-writes"

func isAdminWrite(method, path string) bool {
	switch strings.ToUpper(method) {
	case "POST", "PUT", "PATCH":
		return strings.HasPrefix(path, "/v1/admin/")
	}
	return false
}

// Parse reads an OpenAPI document.
func Parse(b []byte) (*Doc, error) {
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("apispec: %w", err)
	}
	d := &Doc{raw: raw, paths: map[string]map[string]any{}, AnyRoute: map[int]bool{}, AnyWrite: map[int]map[string]any{}, seen: map[string]bool{}}
	ps, _ := raw["paths"].(map[string]any)
	for p, item := range ps {
		ops := map[string]any{}
		for m, o := range item.(map[string]any) {
			if m != "parameters" && !strings.HasPrefix(m, "x-") {
				ops[m] = o
			}
		}
		d.paths[p] = ops
	}
	if anyRoute, ok := raw["x-any-route"].(map[string]any); ok {
		for s := range anyRoute {
			n, _ := strconv.Atoi(s)
			d.AnyRoute[n] = true
		}
	}
	if w, ok := raw["x-admin-writes"].(map[string]any); ok {
		rs, _ := w["responses"].(map[string]any)
		for s, r := range rs {
			n, _ := strconv.Atoi(s)
			d.AnyWrite[n], _ = r.(map[string]any)
		}
	}
	return d, nil
}

// Operations lists every documented "METHOD /template".
func (d *Doc) Operations() []string {
	var out []string
	for p, ops := range d.paths {
		for m := range ops {
			out = append(out, strings.ToUpper(m)+" "+p)
		}
	}
	slices.Sort(out)
	return out
}

// Statuses lists the documented statuses of an operation ("METHOD /template").
func (d *Doc) Statuses(op string) []int {
	o := d.op(op)
	var out []int
	for s := range o.responses() {
		n, _ := strconv.Atoi(s)
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

type operation map[string]any

func (o operation) responses() map[string]any {
	r, _ := o["responses"].(map[string]any)
	return r
}

func (d *Doc) op(key string) operation {
	m, p, _ := strings.Cut(key, " ")
	o, _ := d.paths[p][strings.ToLower(m)].(map[string]any)
	return o
}

// Match returns the documented "METHOD /template" a request reaches: an exact path
// before one with {parameters}, each of which is one segment, except that a last
// parameter of a path whose x-template-path ends in {proxy+} takes the rest.
func (d *Doc) Match(method, path string) (string, bool) {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	best, bestScore := "", -1
	for p, ops := range d.paths {
		if _, ok := ops[strings.ToLower(method)]; !ok {
			continue
		}
		ts := strings.Split(strings.Trim(p, "/"), "/")
		greedy := false
		if o, ok := ops[strings.ToLower(method)].(map[string]any); ok {
			tp, _ := o["x-template-path"].(string)
			greedy = strings.HasSuffix(tp, "{proxy+}")
		}
		score, ok := matchSegs(ts, segs, greedy)
		if ok && score > bestScore {
			best, bestScore = strings.ToUpper(method)+" "+p, score
		}
	}
	return best, bestScore >= 0
}

func matchSegs(ts, segs []string, greedy bool) (int, bool) {
	if len(ts) != len(segs) && !(greedy && len(segs) > len(ts)) {
		return 0, false
	}
	score := 0
	for i, t := range ts {
		switch {
		case strings.HasPrefix(t, "{"):
			if segs[i] == "" {
				return 0, false
			}
		case t == segs[i]:
			score++
		default:
			return 0, false
		}
	}
	return score, true
}

// Observe checks one answer against the document and records its status as seen. It
// returns an error naming the request when the route, the status or the body shape is
// undocumented. An answer the gateway itself gives for an unknown route (404 with
// {message}) has no operation and is not checked.
func (d *Doc) Observe(method, path string, status int, contentType string, body []byte) error {
	key, ok := d.Match(method, path)
	if !ok {
		if status == 404 || status == 405 {
			return nil // no such route: nothing documented answers it
		}
		return fmt.Errorf("%s %s answered %d but no documented operation matches it", method, path, status)
	}
	d.mu.Lock()
	d.seen[key+" "+strconv.Itoa(status)] = true
	d.mu.Unlock()
	resp, ok := d.op(key).responses()[strconv.Itoa(status)].(map[string]any)
	if w, isWrite := d.AnyWrite[status]; !ok && isWrite && isAdminWrite(method, path) {
		resp, ok = w, true
		d.mu.Lock()
		d.seen[anyWriteKey+" "+strconv.Itoa(status)] = true
		d.mu.Unlock()
	}
	if !ok {
		if d.AnyRoute[status] {
			return nil
		}
		return fmt.Errorf("%s (%s %s) answered %d, which the document does not list for it: %.200s", key, method, path, status, body)
	}
	content, _ := resp["content"].(map[string]any)
	if len(content) == 0 {
		return nil
	}
	mt, _, _ := mime.ParseMediaType(contentType)
	media, ok := content[mt].(map[string]any)
	if !ok {
		return fmt.Errorf("%s answered %d as %q; the document lists %v", key, status, contentType, slices.Sorted(maps.Keys(content)))
	}
	if mt != "application/json" {
		return nil
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("%s answered %d with a body that is not JSON: %.200s", key, status, body)
	}
	if err := d.validate(media["schema"], v, "body"); err != nil {
		return fmt.Errorf("%s answered %d: %w: %.300s", key, status, err, body)
	}
	return nil
}

// Unseen lists the documented "METHOD /template status" no observed answer produced,
// and "x-admin-writes status" for an Idempotency-Key answer no write produced.
func (d *Doc) Unseen() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, s := range slices.Sorted(maps.Keys(d.AnyWrite)) {
		if k := anyWriteKey + " " + strconv.Itoa(s); !d.seen[k] {
			out = append(out, k)
		}
	}
	for _, op := range d.Operations() {
		for _, s := range d.Statuses(op) {
			if k := op + " " + strconv.Itoa(s); !d.seen[k] {
				out = append(out, k)
			}
		}
	}
	return out
}

func (d *Doc) resolve(schema any) (map[string]any, error) {
	s, _ := schema.(map[string]any)
	for range 10 {
		r, ok := s["$ref"].(string)
		if !ok {
			return s, nil
		}
		name, ok := strings.CutPrefix(r, "#/components/schemas/")
		if !ok {
			return nil, fmt.Errorf("unsupported $ref %s", r)
		}
		comps, _ := d.raw["components"].(map[string]any)
		schemas, _ := comps["schemas"].(map[string]any)
		if s, ok = schemas[name].(map[string]any); !ok {
			return nil, fmt.Errorf("$ref %s: no such schema", r)
		}
	}
	return nil, fmt.Errorf("$ref loop")
}

func (d *Doc) validate(schema any, v any, at string) error {
	s, err := d.resolve(schema)
	if err != nil || s == nil {
		return err
	}
	if c, ok := s["const"]; ok && fmt.Sprint(c) != fmt.Sprint(v) {
		return fmt.Errorf("%s: %v, want %v", at, v, c)
	}
	if e, ok := s["enum"].([]any); ok && !slices.ContainsFunc(e, func(x any) bool { return fmt.Sprint(x) == fmt.Sprint(v) }) {
		return fmt.Errorf("%s: %v is not one of %v", at, v, e)
	}
	if alts, ok := s["anyOf"].([]any); ok {
		var errs []string
		for _, alt := range alts {
			err := d.validate(alt, v, at)
			if err == nil {
				errs = nil
				break
			}
			errs = append(errs, err.Error())
		}
		if errs != nil {
			return fmt.Errorf("%s matches none of anyOf: %s", at, strings.Join(errs, "; "))
		}
	}
	if t, ok := s["type"]; ok {
		var types []string
		switch t := t.(type) {
		case string:
			types = []string{t}
		case []any:
			for _, x := range t {
				types = append(types, x.(string))
			}
		}
		if !slices.ContainsFunc(types, func(t string) bool { return isType(t, v) }) {
			return fmt.Errorf("%s: %s, want %s", at, kind(v), strings.Join(types, " or "))
		}
	}
	switch v := v.(type) {
	case map[string]any:
		props, _ := s["properties"].(map[string]any)
		req, _ := s["required"].([]any)
		for _, r := range req {
			if _, ok := v[r.(string)]; !ok {
				return fmt.Errorf("%s: required field %s missing", at, r)
			}
		}
		for _, k := range slices.Sorted(maps.Keys(v)) {
			sub, ok := props[k]
			if !ok {
				switch ap := s["additionalProperties"].(type) {
				case bool:
					if !ap {
						return fmt.Errorf("%s: field %s is not documented", at, k)
					}
					continue
				case nil:
					continue
				default:
					sub = ap
				}
			}
			if err := d.validate(sub, v[k], at+"."+k); err != nil {
				return err
			}
		}
	case []any:
		if m, ok := s["maxItems"].(float64); ok && float64(len(v)) > m {
			return fmt.Errorf("%s: %d items, at most %v", at, len(v), m)
		}
		for i, x := range v {
			if err := d.validate(s["items"], x, at+"["+strconv.Itoa(i)+"]"); err != nil {
				return err
			}
		}
	}
	return nil
}

func isType(t string, v any) bool {
	switch v := v.(type) {
	case nil:
		return t == "null"
	case bool:
		return t == "boolean"
	case string:
		return t == "string"
	case json.Number:
		if t == "number" {
			return true
		}
		f, err := v.Float64()
		return t == "integer" && err == nil && f == math.Trunc(f)
	case []any:
		return t == "array"
	case map[string]any:
		return t == "object"
	}
	return false
}

func kind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case []any:
		return "an array"
	}
	return "an object"
}
