package minipush

import (
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Template is one private subscribe template of an app, as WeChat's gettemplate lists
// it, with the fields its content uses and each field's rule: the registry a
// campaign's data is checked against at creation (README, Templates).
type Template struct {
	AppID   string `json:"appId"`
	ID      string `json:"priTmplId"`
	Title   string `json:"title"`
	Content string `json:"content"` // e.g. "会议时间:{{date2.DATA}}\n会议地点:{{thing1.DATA}}\n"
	Example string `json:"example,omitempty"`
	// Type is WeChat's template type: TemplateOneTime or TemplateLongTerm.
	Type   int             `json:"type"`
	Fields []TemplateField `json:"fields"`
	// SyncedAt is when this version was read from WeChat.
	SyncedAt time.Time `json:"syncedAt"`
}

// WeChat's template types.
const (
	TemplateOneTime  = 2
	TemplateLongTerm = 3
)

// TemplateField is one data key a template's content uses.
type TemplateField struct {
	Key  string `json:"key"`            // e.g. "thing1"
	Name string `json:"name,omitempty"` // the label before it in content, e.g. "会议地点"
	// Rule is the value type the key must meet: "enum" when the template lists its
	// values, else the key's type prefix ("thing1" → "thing"), which is how WeChat
	// names keys after the keyword's rule.
	Rule    string   `json:"rule"`
	Example string   `json:"example,omitempty"` // from the template's example text
	Enum    []string `json:"enum,omitempty"`    // the allowed values (keywordEnumValueList)
}

// RuleEnum is the rule of a field whose values the template lists.
const RuleEnum = "enum"

// TemplateRegistry is what the registry knows of one app: its templates and when they
// were last synced (zero: never, so a template id it lacks proves nothing).
type TemplateRegistry struct {
	AppID     string     `json:"appId"`
	SyncedAt  time.Time  `json:"syncedAt,omitzero"`
	Templates []Template `json:"templates"`
}

// Synced reports whether the registry has been synced at least once, i.e. whether a
// template id it lacks is one the app does not have.
func (r TemplateRegistry) Synced() bool { return !r.SyncedAt.IsZero() }

// TemplateSync is the answer of one sync: the templates now registered and what
// changed against the registry before it (ids, sorted).
type TemplateSync struct {
	AppID     string     `json:"appId"`
	SyncedAt  time.Time  `json:"syncedAt"`
	Templates []Template `json:"templates"`
	Added     []string   `json:"added"`
	Changed   []string   `json:"changed"`
	Removed   []string   `json:"removed"`
}

// contentKeyRE finds the placeholders of a template's content: {{thing1.DATA}}.
var contentKeyRE = regexp.MustCompile(`\{\{\s*([A-Za-z_]+[0-9]+)\.DATA\s*\}\}`)

// NewTemplate builds the registry's record of a template from what gettemplate
// answers: the keys come from content (in their order, each once), a key's name from
// the label before it on its line, its example from the example line with the same
// label, and its rule from enums (keyed by data key, e.g. "phrase3") or else from the
// key's prefix.
func NewTemplate(appID, id, title, content, example string, typ int, enums map[string][]string) Template {
	t := Template{AppID: appID, ID: id, Title: title, Content: content, Example: example, Type: typ, Fields: []TemplateField{}}
	examples := map[string]string{}
	for line := range strings.SplitSeq(example, "\n") {
		if label, value, ok := cutLabel(line); ok {
			examples[label] = value
		}
	}
	seen := map[string]bool{}
	for line := range strings.SplitSeq(content, "\n") {
		for _, m := range contentKeyRE.FindAllStringSubmatchIndex(line, -1) {
			key := line[m[2]:m[3]]
			if seen[key] {
				continue
			}
			seen[key] = true
			f := TemplateField{Key: key, Rule: strings.TrimRight(key, "0123456789")}
			if label := labelBefore(line[:m[0]]); label != "" {
				f.Name = label
				f.Example = examples[label]
			}
			if vs := enums[key]; len(vs) > 0 {
				f.Rule, f.Enum = RuleEnum, slices.Clone(vs)
			}
			t.Fields = append(t.Fields, f)
		}
	}
	return t
}

// cutLabel splits "label:value" (ASCII or full-width colon) into its trimmed parts.
func cutLabel(line string) (label, value string, ok bool) {
	i := strings.IndexAny(line, ":：")
	if i < 0 {
		return "", "", false
	}
	_, size := utf8.DecodeRuneInString(line[i:])
	label, value = strings.TrimSpace(line[:i]), strings.TrimSpace(line[i+size:])
	return label, value, label != ""
}

// labelBefore is the label a placeholder follows on its line: the text since the
// previous placeholder, without the colon ("会议地点:" → "会议地点").
func labelBefore(prefix string) string {
	if i := strings.LastIndex(prefix, "}}"); i >= 0 {
		prefix = prefix[i+2:]
	}
	return strings.TrimSpace(strings.TrimRight(strings.TrimSpace(prefix), ":："))
}

// Field returns the field of key.
func (t Template) Field(key string) (TemplateField, bool) {
	i := slices.IndexFunc(t.Fields, func(f TemplateField) bool { return f.Key == key })
	if i < 0 {
		return TemplateField{}, false
	}
	return t.Fields[i], true
}

// Render is the text of a message as the user's card reads it: the content with each
// {{key.DATA}} replaced by its value in data (a key without a value stays as written,
// so a preview shows what is missing).
func (t Template) Render(data map[string]string) string {
	return strings.TrimRight(contentKeyRE.ReplaceAllStringFunc(t.Content, func(ph string) string {
		key := contentKeyRE.FindStringSubmatch(ph)[1]
		if v, ok := data[key]; ok {
			return v
		}
		return ph
	}), "\n")
}

// sameAs reports whether t and u are the same template version (SyncedAt aside).
func (t Template) sameAs(u Template) bool {
	if t.ID != u.ID || t.Title != u.Title || t.Content != u.Content || t.Example != u.Example || t.Type != u.Type || len(t.Fields) != len(u.Fields) {
		return false
	}
	for i, f := range t.Fields {
		g := u.Fields[i]
		if f.Key != g.Key || f.Name != g.Name || f.Rule != g.Rule || f.Example != g.Example || !slices.Equal(f.Enum, g.Enum) {
			return false
		}
	}
	return true
}

// DiffTemplates compares a registry's templates (before) with WeChat's (after) and
// returns the ids added, changed and removed, each sorted.
func DiffTemplates(before, after []Template) (added, changed, removed []string) {
	old := make(map[string]Template, len(before))
	for _, t := range before {
		old[t.ID] = t
	}
	added, changed, removed = []string{}, []string{}, []string{}
	for _, t := range after {
		o, ok := old[t.ID]
		switch {
		case !ok:
			added = append(added, t.ID)
		case !o.sameAs(t):
			changed = append(changed, t.ID)
		}
		delete(old, t.ID)
	}
	for id := range old {
		removed = append(removed, id)
	}
	slices.Sort(added)
	slices.Sort(changed)
	slices.Sort(removed)
	return added, changed, removed
}
