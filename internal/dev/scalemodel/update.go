package scalemodel

import (
	"strings"
)

// predictKeys returns the values that an UpdateExpression gives the attributes in
// attrs, starting from old (the item before the update, possibly empty): what the
// proxy needs before forwarding a write to know which index keys it will touch, so a
// throttled index throttles the write before it is applied. It understands the forms
// a key attribute is written with — "SET a = :v", "SET a = if_not_exists(a, :v)",
// "REMOVE a" — and leaves an attribute set any other way (arithmetic, list functions)
// at its old value; the charge after the write uses the real new image.
func predictKeys(expr string, names map[string]string, values map[string]av, old item, attrs []string) item {
	out := item{}
	for _, a := range attrs {
		if v, ok := old[a]; ok {
			out[a] = v
		}
	}
	want := map[string]bool{}
	for _, a := range attrs {
		want[a] = true
	}
	resolve := func(p string) string {
		p = strings.TrimSpace(p)
		if n, ok := names[p]; ok {
			return n
		}
		return p
	}
	for _, clause := range clauses(expr) {
		switch clause.verb {
		case "SET":
			for _, action := range splitTop(clause.body, ',') {
				lhs, rhs, ok := strings.Cut(action, "=")
				if !ok {
					continue
				}
				attr := resolve(lhs)
				if !want[attr] {
					continue
				}
				rhs = strings.TrimSpace(rhs)
				if v, ok := values[rhs]; ok {
					out[attr] = v
					continue
				}
				if args, ok := call(rhs, "if_not_exists"); ok && len(args) == 2 {
					if _, exists := old[attr]; !exists {
						if v, ok := values[strings.TrimSpace(args[1])]; ok {
							out[attr] = v
						}
					}
				}
			}
		case "REMOVE":
			for _, p := range splitTop(clause.body, ',') {
				delete(out, resolve(p))
			}
		}
	}
	return out
}

type clause struct{ verb, body string }

// clauses splits an UpdateExpression into its SET / REMOVE / ADD / DELETE clauses.
func clauses(expr string) []clause {
	var out []clause
	fields := strings.Fields(expr)
	var cur *clause
	for _, f := range fields {
		switch up := strings.ToUpper(f); up {
		case "SET", "REMOVE", "ADD", "DELETE":
			out = append(out, clause{verb: up})
			cur = &out[len(out)-1]
			continue
		}
		if cur != nil {
			cur.body += " " + f
		}
	}
	return out
}

// splitTop splits s at sep outside parentheses.
func splitTop(s string, sep byte) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '(':
			depth++
		case ')':
			depth--
		case sep:
			if depth == 0 {
				out = append(out, strings.TrimSpace(s[start:i]))
				start = i + 1
			}
		}
	}
	return append(out, strings.TrimSpace(s[start:]))
}

// call matches "fn(args...)" and returns its top-level arguments.
func call(s, fn string) ([]string, bool) {
	s = strings.TrimSpace(s)
	rest, ok := strings.CutPrefix(s, fn)
	if !ok {
		return nil, false
	}
	rest = strings.TrimSpace(rest)
	if !strings.HasPrefix(rest, "(") || !strings.HasSuffix(rest, ")") {
		return nil, false
	}
	return splitTop(rest[1:len(rest)-1], ','), true
}

// hashValue finds the value a KeyConditionExpression gives the partition key attribute
// (always an equality, "pk = :v", possibly among "AND"ed range conditions).
func hashValue(expr string, names map[string]string, values map[string]av, hash string) (av, bool) {
	for _, term := range splitAnd(expr) {
		lhs, rhs, ok := strings.Cut(term, "=")
		if !ok || strings.ContainsAny(rhs, "<>=") || strings.HasSuffix(strings.TrimSpace(lhs), "<") || strings.HasSuffix(strings.TrimSpace(lhs), ">") {
			continue
		}
		l, r := strings.Trim(strings.TrimSpace(lhs), "()"), strings.Trim(strings.TrimSpace(rhs), "()")
		if n, ok := names[l]; ok {
			l = n
		}
		if n, ok := names[r]; ok {
			r = n
		}
		if l == hash {
			if v, ok := values[r]; ok {
				return v, true
			}
		}
		if r == hash {
			if v, ok := values[l]; ok {
				return v, true
			}
		}
	}
	return av{}, false
}

// splitAnd splits a key condition at its top-level AND, keeping BETWEEN's own AND.
func splitAnd(expr string) []string {
	var out []string
	fields := strings.Fields(expr)
	cur, between := "", false
	for _, f := range fields {
		up := strings.ToUpper(f)
		if up == "BETWEEN" {
			between = true
		}
		if up == "AND" {
			if between {
				between = false
			} else {
				out = append(out, cur)
				cur = ""
				continue
			}
		}
		cur += " " + f
	}
	return append(out, cur)
}
