package sandbox

import (
	"fmt"
	"strings"
	"time"
)

// AddSubscribeTemplate registers a subscribe template of appID. fields maps each
// data key to its value type ("thing1": "thing"); an empty type is taken from the
// key's prefix. Unknown types become setup errors (see Stats.SetupErrors).
func (s *Sandbox) AddSubscribeTemplate(appID, templateID string, fields map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.addSubscribeTemplateLocked(appID, templateID, fields); err != nil {
		s.setupErrorLocked(err.Error())
	}
}

func (s *Sandbox) addSubscribeTemplateLocked(appID, templateID string, fields map[string]string) error {
	a, ok := s.apps[appID]
	if !ok {
		return fmt.Errorf("AddSubscribeTemplate: unknown appid %q", appID)
	}
	if templateID == "" || len(fields) == 0 {
		return fmt.Errorf("AddSubscribeTemplate: template %q needs an id and fields", templateID)
	}
	typed := make(map[string]string, len(fields))
	for key, typ := range fields {
		if typ == "" {
			typ = strings.TrimRight(key, "0123456789")
		}
		if !knownType(typ) {
			return fmt.Errorf("AddSubscribeTemplate: template %q field %q: unknown type %q", templateID, key, typ)
		}
		typed[key] = typ
	}
	a.subTemplates[templateID] = typed
	return nil
}

// AddFormTemplate registers a legacy template of appID with its keywords
// ("keyword1", "keyword2", ...).
func (s *Sandbox) AddFormTemplate(appID, templateID string, keywords []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.addFormTemplateLocked(appID, templateID, keywords); err != nil {
		s.setupErrorLocked(err.Error())
	}
}

func (s *Sandbox) addFormTemplateLocked(appID, templateID string, keywords []string) error {
	a, ok := s.apps[appID]
	if !ok {
		return fmt.Errorf("AddFormTemplate: unknown appid %q", appID)
	}
	if templateID == "" {
		return fmt.Errorf("AddFormTemplate: empty template id")
	}
	a.formTemplates[templateID] = append([]string(nil), keywords...)
	return nil
}

// SetAllowedPages restricts the page field of appID's sends to these paths (query
// strings are allowed after them). nil restores the default: any "pages/..." path.
func (s *Sandbox) SetAllowedPages(appID string, pages []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.appLocked(appID, "SetAllowedPages")
	if a == nil {
		return
	}
	if pages == nil {
		a.pages = nil
		return
	}
	a.pages = map[string]bool{}
	for _, p := range pages {
		a.pages[p] = true
	}
}

// AddSubscribeGrant records one accept of templateID by the user: one more send.
// Accepts add up, as at WeChat.
func (s *Sandbox) AddSubscribeGrant(appID, openID, templateID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.addSubscribeGrantsLocked(appID, openID, templateID, 1); err != nil {
		s.setupErrorLocked(err.Error())
	}
}

func (s *Sandbox) addSubscribeGrantsLocked(appID, openID, templateID string, n int) error {
	a, ok := s.apps[appID]
	if !ok {
		return fmt.Errorf("AddSubscribeGrant: unknown appid %q", appID)
	}
	u, ok := a.users[openID]
	if !ok {
		return fmt.Errorf("AddSubscribeGrant: unknown openid %q", openID)
	}
	if _, ok := a.subTemplates[templateID]; !ok {
		// WeChat only lets users accept the app's own templates.
		return fmt.Errorf("AddSubscribeGrant: unknown template %q", templateID)
	}
	u.subGrants[templateID] += n
	return nil
}

// Form grant kinds and their uses.
const (
	KindForm   = "form"   // a form submit: 1 send
	KindPrepay = "prepay" // a payment's prepay_id: 3 sends
)

// AddFormID records a formId (kind KindForm) or prepay_id (KindPrepay) produced by
// the user at issuedAt; it is valid for FormIDValidity from then.
func (s *Sandbox) AddFormID(appID, openID, formID, kind string, issuedAt time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.addFormIDLocked(appID, openID, formID, kind, issuedAt); err != nil {
		s.setupErrorLocked(err.Error())
	}
}

func (s *Sandbox) addFormIDLocked(appID, openID, formID, kind string, issuedAt time.Time) error {
	a, ok := s.apps[appID]
	if !ok {
		return fmt.Errorf("AddFormID: unknown appid %q", appID)
	}
	if _, ok := a.users[openID]; !ok {
		return fmt.Errorf("AddFormID: unknown openid %q", openID)
	}
	uses := map[string]int{KindForm: 1, KindPrepay: 3}[kind]
	if uses == 0 {
		return fmt.Errorf("AddFormID: kind %q is not %q or %q", kind, KindForm, KindPrepay)
	}
	if formID == "" {
		return fmt.Errorf("AddFormID: empty form id")
	}
	a.forms[formID] = &formGrant{openID: openID, kind: kind, issued: issuedAt, uses: uses}
	return nil
}

// MintFormID creates a fresh random formId (or prepay_id) of kind for the user,
// issued now, and returns it ("" and a setup error on bad input).
func (s *Sandbox) MintFormID(appID, openID, kind string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.mintFormIDLocked(appID, openID, kind)
	if err != nil {
		s.setupErrorLocked(err.Error())
	}
	return v
}

func (s *Sandbox) mintFormIDLocked(appID, openID, kind string) (string, error) {
	v := s.randStringLocked(32, hexChars)
	if kind == KindPrepay {
		v = "wx" + s.randStringLocked(34, hexChars)
	}
	if err := s.addFormIDLocked(appID, openID, v, kind, s.now()); err != nil {
		return "", err
	}
	return v, nil
}

// Config is what a sandbox command loads from a file: apps, templates and pages.
type Config struct {
	Apps      []App            `json:"apps"`
	Templates []TemplateConfig `json:"templates"`
}

// TemplateConfig is one template to register.
type TemplateConfig struct {
	AppID      string            `json:"appid"`
	TemplateID string            `json:"template_id"`
	Kind       string            `json:"kind"`               // "subscribe" (default) or "form"
	Fields     map[string]string `json:"fields,omitempty"`   // subscribe: key -> type
	Keywords   []string          `json:"keywords,omitempty"` // form
	// Subscribe only, for gettemplate (SetTemplateInfo): the title, the public title
	// id, keyword names by key, and the allowed values of enum keys.
	Title string              `json:"title,omitempty"`
	TID   string              `json:"tid,omitempty"`
	Names map[string]string   `json:"names,omitempty"`
	Enums map[string][]string `json:"enums,omitempty"`
}

// Apply registers cfg's apps and templates. Unlike the one-call setup methods it
// returns the first problem, because a bad config file should stop the command.
func (s *Sandbox) Apply(cfg Config) error {
	for _, a := range cfg.Apps {
		if a.AppID == "" || a.Secret == "" {
			return fmt.Errorf("sandbox: config: app needs appid and secret")
		}
		s.AddApp(a.AppID, a.Secret)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range cfg.Templates {
		var err error
		switch t.Kind {
		case "", "subscribe":
			err = s.addSubscribeTemplateLocked(t.AppID, t.TemplateID, t.Fields)
			if err == nil && (t.Title != "" || t.TID != "" || len(t.Names) > 0 || len(t.Enums) > 0) {
				err = s.setTemplateInfoLocked(t.AppID, t.TemplateID, t.Title, t.TID, t.Names, t.Enums)
			}
		case "form":
			err = s.addFormTemplateLocked(t.AppID, t.TemplateID, t.Keywords)
		default:
			err = fmt.Errorf("template %q: kind %q is not subscribe or form", t.TemplateID, t.Kind)
		}
		if err != nil {
			return fmt.Errorf("sandbox: config: %w", err)
		}
	}
	return nil
}
