package iamcheck

import (
	"fmt"
	"slices"
	"strings"

	"minipush/internal/dev/samtemplate"
)

// Statement is one statement of a function's policy with its resources resolved.
type Statement struct {
	Function string
	Index    int // position among the function's statements, from 0
	Sid      string
	Effect   string // Allow or Deny
	Actions  []string
	// Resources are ARN patterns (* and ? wildcards), resolved as the template's
	// references resolve on the local stack.
	Resources []string
	// Condition maps an operator (ForAnyValue:StringLike) to condition keys and values.
	Condition map[string]map[string][]string
}

func (s Statement) String() string {
	id := fmt.Sprintf("%s statement %d", s.Function, s.Index+1)
	if s.Sid != "" {
		id += " (" + s.Sid + ")"
	}
	return fmt.Sprintf("%s: %s %s on %s", id, s.Effect, strings.Join(s.Actions, ","), strings.Join(s.Resources, ","))
}

// Policies reads every function's statements from tpl, resolving their resources with
// r (a localstack.Resources), keyed by function logical id. A function without a
// Policies property has no statement, so it may call nothing.
func Policies(tpl *samtemplate.Template, r samtemplate.Resolver) (map[string][]Statement, error) {
	out := map[string][]Statement{}
	for _, id := range tpl.FunctionIDs() {
		out[id] = nil
		for _, p := range tpl.Functions[id].Policies {
			for _, st := range p.Statement {
				s := Statement{Function: id, Index: len(out[id]), Sid: st.Sid, Effect: st.Effect, Actions: st.Action, Condition: st.Condition}
				if s.Effect != "Allow" && s.Effect != "Deny" {
					return nil, fmt.Errorf("iamcheck: %s: effect %q", s, s.Effect)
				}
				for _, v := range st.Resource {
					res, err := v.Resolve(r)
					if err != nil {
						return nil, fmt.Errorf("iamcheck: %s: resource %s: %w", id, v, err)
					}
					if res != "" { // AWS::NoValue
						s.Resources = append(s.Resources, res)
					}
				}
				out[id] = append(out[id], s)
			}
		}
	}
	return out, nil
}

// Decision is what IAM answers one call.
type Decision struct {
	Allowed bool
	// AllowedBy are the indexes of the Allow statements that match the call.
	AllowedBy []int
	// DeniedBy is the index of a Deny statement that matches it, or -1.
	DeniedBy int
	// Err says why a condition could not be evaluated (the call then counts as denied).
	Err error
}

// Evaluate decides c against one function's statements as IAM does for an identity
// policy alone: an explicit Deny that matches wins, else any matching Allow, else the
// implicit deny.
// https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html
func Evaluate(stmts []Statement, c Call) Decision {
	d := Decision{DeniedBy: -1}
	for _, s := range stmts {
		if !matchAny(s.Actions, c.Action, true) || !matchAny(s.Resources, c.Resource, false) {
			continue
		}
		ok, err := conditionHolds(s.Condition, c)
		if err != nil {
			d.Err = fmt.Errorf("%s: %w", s, err)
			continue
		}
		if !ok {
			continue
		}
		if s.Effect == "Deny" && d.DeniedBy < 0 {
			d.DeniedBy = s.Index
		}
		if s.Effect == "Allow" {
			d.AllowedBy = append(d.AllowedBy, s.Index)
		}
	}
	d.Allowed = d.Err == nil && d.DeniedBy < 0 && len(d.AllowedBy) > 0
	return d
}

// Violation is a recorded call the template's policy does not allow.
type Violation struct {
	Call   Call
	Reason string
}

func (v Violation) String() string { return v.Call.String() + ": " + v.Reason }

// Check evaluates every call against its function's statements and returns those
// that IAM would refuse, one per distinct report line (calls that differ only in a
// key the report hides are one).
func Check(policies map[string][]Statement, calls []Call) []Violation {
	var out []Violation
	seen := map[string]bool{}
	add := func(v Violation) {
		if s := v.String(); !seen[s] {
			seen[s] = true
			out = append(out, v)
		}
	}
	for _, c := range calls {
		stmts, known := policies[c.Function]
		d := Evaluate(stmts, c)
		switch {
		case !known:
			add(Violation{c, "no such function in the template"})
		case d.Err != nil:
			add(Violation{c, "cannot evaluate: " + d.Err.Error()})
		case d.DeniedBy >= 0:
			add(Violation{c, fmt.Sprintf("explicitly denied by %s", stmts[d.DeniedBy])})
		case c.Resource == "?":
			add(Violation{c, "the recorder does not model this operation's resource (teach iamcheck)"})
		case !d.Allowed:
			add(Violation{c, "no statement allows it"})
		}
	}
	return out
}

// Unused lists, per Allow statement, each action on each resource pattern that no
// recorded call used: candidates for a human to trim. A call the workload did not
// make (a replay, a rare error path) may still need one.
func Unused(policies map[string][]Statement, calls []Call) []string {
	used := map[string]bool{} // function/statement/action/resource
	for _, c := range calls {
		stmts := policies[c.Function]
		d := Evaluate(stmts, c)
		if !d.Allowed {
			continue
		}
		for _, i := range d.AllowedBy {
			s := stmts[i]
			for _, a := range s.Actions {
				if !match(a, c.Action, true) {
					continue
				}
				for _, r := range s.Resources {
					if match(r, c.Resource, false) {
						used[fmt.Sprint(c.Function, i, a, r)] = true
					}
				}
			}
		}
	}
	var out []string
	for _, fn := range sortedKeys(policies) {
		for _, s := range policies[fn] {
			if s.Effect != "Allow" {
				continue
			}
			for _, a := range s.Actions {
				for _, r := range s.Resources {
					if !used[fmt.Sprint(fn, s.Index, a, r)] {
						out = append(out, fmt.Sprintf("%s statement %d: %s on %s", fn, s.Index+1, a, r))
					}
				}
			}
		}
	}
	return out
}

// Without returns policies with one statement of one function removed, for showing
// that the check depends on it.
func Without(policies map[string][]Statement, function string, index int) map[string][]Statement {
	out := make(map[string][]Statement, len(policies))
	for fn, stmts := range policies {
		out[fn] = stmts
	}
	out[function] = slices.DeleteFunc(slices.Clone(policies[function]), func(s Statement) bool { return s.Index == index })
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func matchAny(patterns []string, s string, fold bool) bool {
	return slices.ContainsFunc(patterns, func(p string) bool { return match(p, s, fold) })
}

// match reports whether s matches an IAM pattern: * any run of characters, ? any one.
// Actions compare case-insensitively, resource ARNs case-sensitively.
// https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_resource.html
func match(pattern, s string, fold bool) bool {
	if fold {
		pattern, s = strings.ToLower(pattern), strings.ToLower(s)
	}
	// Iterative glob with backtracking to the last '*'.
	p, i, star, mark := 0, 0, -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[i]):
			p++
			i++
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// conditionHolds evaluates a statement's Condition block on a call. It knows the one
// condition key minipush's policies use, dynamodb:LeadingKeys, with the string
// operators and their ForAnyValue/ForAllValues set forms; anything else is an error,
// so a policy this package cannot read fails the check instead of passing it.
// https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-single-vs-multi-valued-context-keys.html
func conditionHolds(cond map[string]map[string][]string, c Call) (bool, error) {
	for op, keys := range cond {
		set, base, _ := strings.Cut(op, ":")
		if base == "" {
			set, base = "", op
		}
		var test func(v string, patterns []string) bool
		switch base {
		case "StringEquals":
			test = func(v string, ps []string) bool { return slices.Contains(ps, v) }
		case "StringNotEquals":
			test = func(v string, ps []string) bool { return !slices.Contains(ps, v) }
		case "StringLike":
			test = func(v string, ps []string) bool { return matchAny(ps, v, false) }
		case "StringNotLike":
			test = func(v string, ps []string) bool { return !matchAny(ps, v, false) }
		default:
			return false, fmt.Errorf("condition operator %s is not modelled", op)
		}
		for key, patterns := range keys {
			if key != "dynamodb:LeadingKeys" {
				return false, fmt.Errorf("condition key %s is not modelled", key)
			}
			if c.KeyUnknown {
				return false, fmt.Errorf("the call's partition key was not read")
			}
			var values []string
			if c.Keyed {
				values = []string{c.LeadingKey}
			}
			var holds bool
			switch set {
			case "ForAnyValue":
				holds = slices.ContainsFunc(values, func(v string) bool { return test(v, patterns) })
			case "ForAllValues":
				holds = !slices.ContainsFunc(values, func(v string) bool { return !test(v, patterns) })
			case "":
				// A single-valued operator on a missing key is false (the key's absence is
				// only true for the negated operators' IfExists forms, not used here).
				holds = len(values) == 1 && test(values[0], patterns)
			default:
				return false, fmt.Errorf("condition set operator %s is not modelled", set)
			}
			if !holds {
				return false, nil
			}
		}
	}
	return true, nil
}

// CheckTemplate checks calls against the policies of tpl resolved by r: Policies, then
// Check.
func CheckTemplate(tpl *samtemplate.Template, r samtemplate.Resolver, calls []Call) ([]Violation, error) {
	policies, err := Policies(tpl, r)
	if err != nil {
		return nil, err
	}
	return Check(policies, calls), nil
}
