package samtemplate

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Condition is a named condition of the template: Fn::Equals of two values (literals or
// parameter references), or Fn::Not, Fn::And, Fn::Or of conditions, or a reference to
// another named condition. The local stack evaluates them against the parameter values
// it resolves, which is all a condition may depend on in CloudFormation.
type Condition struct {
	Fn     string       // Equals, Not, And, Or or Condition
	Equals [2]Value     // for Equals
	Subs   []*Condition // for Not, And, Or
	Name   string       // for Condition
}

// ConditionResolver is a Resolver that can also evaluate the template's named
// conditions; Fn::If values need one.
type ConditionResolver interface {
	Resolver
	// Condition reports whether the named condition holds.
	Condition(name string) (bool, error)
}

func (t *Template) parseConditions(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return errors.New("Conditions is not a map")
	}
	for i := 0; i < len(n.Content); i += 2 {
		name := n.Content[i].Value
		c, err := parseCondition(n.Content[i+1])
		if err != nil {
			return fmt.Errorf("Conditions.%s: %w", name, err)
		}
		t.Conditions[name] = c
	}
	// Every reference must name a parameter or another condition, without cycles.
	var errs []error
	names := make([]string, 0, len(t.Conditions))
	for name := range t.Conditions {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := t.checkCondition(t.Conditions[name], map[string]bool{name: true}); err != nil {
			errs = append(errs, fmt.Errorf("Conditions.%s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

func parseCondition(n *yaml.Node) (*Condition, error) {
	fn, arg := "", n
	switch {
	case isCustomTag(n.Tag):
		fn = strings.TrimPrefix(n.Tag, "!")
	case n.Kind == yaml.MappingNode && len(n.Content) == 2:
		fn, arg = strings.TrimPrefix(n.Content[0].Value, "Fn::"), n.Content[1]
	default:
		return nil, fmt.Errorf("line %d: want a condition function", n.Line)
	}
	c := &Condition{Fn: fn}
	switch fn {
	case "Equals":
		if arg.Kind != yaml.SequenceNode || len(arg.Content) != 2 {
			return nil, fmt.Errorf("line %d: Equals takes two values", arg.Line)
		}
		for i, a := range arg.Content {
			v, err := parseValue(a)
			if err != nil {
				return nil, err
			}
			if v.kind != literalValue && v.kind != refValue {
				return nil, fmt.Errorf("line %d: Equals compares literals and Refs only", a.Line)
			}
			c.Equals[i] = v
		}
	case "Not", "And", "Or":
		if arg.Kind != yaml.SequenceNode || len(arg.Content) == 0 || (fn == "Not" && len(arg.Content) != 1) {
			return nil, fmt.Errorf("line %d: %s takes a list of conditions", arg.Line, fn)
		}
		for _, a := range arg.Content {
			sub, err := parseCondition(a)
			if err != nil {
				return nil, err
			}
			c.Subs = append(c.Subs, sub)
		}
	case "Condition":
		if arg.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("line %d: Condition takes a name", arg.Line)
		}
		c.Name = arg.Value
	default:
		return nil, fmt.Errorf("line %d: condition function %s is not supported by the local stack", n.Line, fn)
	}
	return c, nil
}

func (t *Template) checkCondition(c *Condition, seen map[string]bool) error {
	switch c.Fn {
	case "Equals":
		for _, v := range c.Equals {
			if v.kind == refValue {
				if _, ok := t.Parameters[v.Ref]; !ok && !pseudoParameters[v.Ref] {
					return fmt.Errorf("Ref %s: conditions may refer to parameters only", v.Ref)
				}
			}
		}
	case "Condition":
		sub, ok := t.Conditions[c.Name]
		if !ok {
			return fmt.Errorf("no condition %s", c.Name)
		}
		if seen[c.Name] {
			return fmt.Errorf("condition %s refers to itself", c.Name)
		}
		next := map[string]bool{c.Name: true}
		for k := range seen {
			next[k] = true
		}
		return t.checkCondition(sub, next)
	default:
		for _, s := range c.Subs {
			if err := t.checkCondition(s, seen); err != nil {
				return err
			}
		}
	}
	return nil
}

// EvalCondition evaluates a named condition with parameter values from r.
func (t *Template) EvalCondition(name string, r Resolver) (bool, error) {
	c, ok := t.Conditions[name]
	if !ok {
		return false, fmt.Errorf("samtemplate: no condition %s", name)
	}
	return t.eval(c, r)
}

func (t *Template) eval(c *Condition, r Resolver) (bool, error) {
	switch c.Fn {
	case "Equals":
		a, err := c.Equals[0].Resolve(r)
		if err != nil {
			return false, err
		}
		b, err := c.Equals[1].Resolve(r)
		return a == b, err
	case "Condition":
		return t.EvalCondition(c.Name, r) // checkCondition refused cycles
	case "Not":
		v, err := t.eval(c.Subs[0], r)
		return !v, err
	}
	for _, s := range c.Subs { // And, Or
		v, err := t.eval(s, r)
		if err != nil {
			return false, err
		}
		if v == (c.Fn == "Or") {
			return v, nil
		}
	}
	return c.Fn == "And", nil
}
