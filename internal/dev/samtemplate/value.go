package samtemplate

import (
	"fmt"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// Value is a template value that may be a literal or one of the intrinsics the local
// stack understands: Ref, GetAtt, the one-argument form of Sub, and If on a named
// condition between two such values. Anything else (Select, Join, ImportValue, ...) is
// refused when the template is read, because the local stack could not give it the
// meaning CloudFormation would.
type Value struct {
	Literal string
	Ref     string    // logical id or parameter name, for Ref
	GetAtt  [2]string // resource, attribute, for GetAtt
	Sub     string    // template string, for Sub
	If      *IfValue  // for If
	kind    valueKind
}

// IfValue is Fn::If: Then when the named condition holds, else Else.
type IfValue struct {
	Condition  string
	Then, Else Value
}

// noValue is the pseudo parameter that removes a property; it resolves to "".
const noValue = "AWS::NoValue"

type valueKind int

const (
	literalValue valueKind = iota
	refValue
	getAttValue
	subValue
	ifValue
)

// Lit returns a literal Value.
func Lit(s string) Value { return Value{Literal: s} }

// IsSet reports whether the value was present in the template.
func (v Value) IsSet() bool { return v.kind != literalValue || v.Literal != "" }

// String renders the value as it would appear in short form, for messages.
func (v Value) String() string {
	switch v.kind {
	case refValue:
		return "!Ref " + v.Ref
	case getAttValue:
		return "!GetAtt " + v.GetAtt[0] + "." + v.GetAtt[1]
	case subValue:
		return "!Sub " + v.Sub
	case ifValue:
		return "!If [" + v.If.Condition + ", " + v.If.Then.String() + ", " + v.If.Else.String() + "]"
	}
	return v.Literal
}

// UnmarshalYAML reads a scalar, a short-form intrinsic tag or a long-form intrinsic map.
func (v *Value) UnmarshalYAML(n *yaml.Node) error {
	p, err := parseValue(n)
	if err != nil {
		return err
	}
	*v = p
	return nil
}

func parseValue(n *yaml.Node) (Value, error) {
	switch n.Kind {
	case yaml.ScalarNode:
		switch n.Tag {
		case "!Ref":
			return Value{Ref: n.Value, kind: refValue}, nil
		case "!GetAtt":
			return parseGetAtt(n.Value, n.Line)
		case "!Sub":
			return Value{Sub: n.Value, kind: subValue}, nil
		}
		if strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!") {
			return Value{}, fmt.Errorf("line %d: intrinsic %s is not supported by the local stack", n.Line, n.Tag)
		}
		return Value{Literal: n.Value}, nil
	case yaml.MappingNode:
		if len(n.Content) == 2 {
			k, arg := n.Content[0].Value, n.Content[1]
			switch {
			case k == "Ref" && arg.Kind == yaml.ScalarNode:
				return Value{Ref: arg.Value, kind: refValue}, nil
			case k == "Fn::Sub" && arg.Kind == yaml.ScalarNode:
				return Value{Sub: arg.Value, kind: subValue}, nil
			case k == "Fn::GetAtt" && arg.Kind == yaml.ScalarNode:
				return parseGetAtt(arg.Value, arg.Line)
			case k == "Fn::GetAtt" && arg.Kind == yaml.SequenceNode && len(arg.Content) == 2:
				return Value{GetAtt: [2]string{arg.Content[0].Value, arg.Content[1].Value}, kind: getAttValue}, nil
			case k == "Fn::If":
				return parseIf(arg)
			}
			if strings.HasPrefix(k, "Fn::") {
				return Value{}, fmt.Errorf("line %d: intrinsic %s is not supported by the local stack", n.Line, k)
			}
		}
	}
	if n.Kind == yaml.SequenceNode && n.Tag == "!If" {
		return parseIf(n)
	}
	if n.Kind == yaml.SequenceNode && strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!") {
		return Value{}, fmt.Errorf("line %d: intrinsic %s in list form is not supported by the local stack", n.Line, n.Tag)
	}
	return Value{}, fmt.Errorf("line %d: expected a scalar or Ref/GetAtt/Sub, got %s", n.Line, kindName(n.Kind))
}

// parseIf reads the arguments of Fn::If: [condition name, value if true, value if false].
func parseIf(n *yaml.Node) (Value, error) {
	if n.Kind != yaml.SequenceNode || len(n.Content) != 3 || n.Content[0].Kind != yaml.ScalarNode {
		return Value{}, fmt.Errorf("line %d: If takes [condition, value, value]", n.Line)
	}
	then, err := parseValue(n.Content[1])
	if err != nil {
		return Value{}, err
	}
	els, err := parseValue(n.Content[2])
	if err != nil {
		return Value{}, err
	}
	return Value{If: &IfValue{Condition: n.Content[0].Value, Then: then, Else: els}, kind: ifValue}, nil
}

func parseGetAtt(s string, line int) (Value, error) {
	res, attr, ok := strings.Cut(s, ".")
	if !ok || res == "" || attr == "" {
		return Value{}, fmt.Errorf("line %d: GetAtt %q is not Resource.Attribute", line, s)
	}
	return Value{GetAtt: [2]string{res, attr}, kind: getAttValue}, nil
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.ScalarNode:
		return "a scalar"
	case yaml.MappingNode:
		return "a map"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	return "a document"
}

// Resolver gives references their local meaning: physical names, ARNs, URLs and
// parameter values.
type Resolver interface {
	// Ref returns what Ref name means: a parameter's value or a resource's physical id.
	Ref(name string) (string, error)
	// GetAtt returns an attribute of a resource.
	GetAtt(resource, attribute string) (string, error)
}

// conditionRef prefixes a condition's name among a value's references.
const conditionRef = "Condition "

var subVar = regexp.MustCompile(`\$\{([^}]*)\}`)

// Resolve evaluates v against r. AWS::NoValue resolves to "", which callers read as the
// property being absent; If needs r to be a ConditionResolver.
func (v Value) Resolve(r Resolver) (string, error) {
	switch v.kind {
	case refValue:
		if v.Ref == noValue {
			return "", nil
		}
		return r.Ref(v.Ref)
	case ifValue:
		cr, ok := r.(ConditionResolver)
		if !ok {
			return "", fmt.Errorf("samtemplate: %s needs a resolver of conditions", v)
		}
		holds, err := cr.Condition(v.If.Condition)
		if err != nil {
			return "", err
		}
		if holds {
			return v.If.Then.Resolve(r)
		}
		return v.If.Else.Resolve(r)
	case getAttValue:
		return r.GetAtt(v.GetAtt[0], v.GetAtt[1])
	case subValue:
		var firstErr error
		out := subVar.ReplaceAllStringFunc(v.Sub, func(m string) string {
			name := m[2 : len(m)-1]
			if strings.HasPrefix(name, "!") { // ${!Literal} escapes a dollar-brace
				return "${" + name[1:] + "}"
			}
			var s string
			var err error
			if res, attr, ok := strings.Cut(name, "."); ok {
				s, err = r.GetAtt(res, attr)
			} else {
				s, err = r.Ref(name)
			}
			if err != nil && firstErr == nil {
				firstErr = err
			}
			return s
		})
		return out, firstErr
	}
	return v.Literal, nil
}

// references lists the names a value points at, as Ref targets, "Resource.Attribute",
// or conditionRef+name for the condition of an If.
func (v Value) references() []string {
	switch v.kind {
	case ifValue:
		return append(append([]string{conditionRef + v.If.Condition}, v.If.Then.references()...), v.If.Else.references()...)
	case refValue:
		return []string{v.Ref}
	case getAttValue:
		return []string{v.GetAtt[0] + "." + v.GetAtt[1]}
	case subValue:
		var out []string
		for _, m := range subVar.FindAllStringSubmatch(v.Sub, -1) {
			if !strings.HasPrefix(m[1], "!") {
				out = append(out, m[1])
			}
		}
		return out
	}
	return nil
}
