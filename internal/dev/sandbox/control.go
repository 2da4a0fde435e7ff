package sandbox

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// ControlRoutes lists the JSON control API, for the command's help and for callers
// in other languages. Errors answer 4xx with {"error":"..."}.
var ControlRoutes = []string{
	`POST   /_sandbox/apps                {"appid","secret"}`,
	`POST   /_sandbox/users               {"appid"} -> {"openid"}`,
	`POST   /_sandbox/codes               {"appid","openid"?} -> {"openid","code"} (new user when openid is empty)`,
	`POST   /_sandbox/templates           {"appid","template_id","kind":"subscribe"|"form","fields"?,"keywords"?}`,
	`POST   /_sandbox/pages               {"appid","pages":[...]|null}`,
	`POST   /_sandbox/grants/subscribe    {"appid","openid","template_id","count"?}`,
	`POST   /_sandbox/grants/form         {"appid","openid","kind":"form"|"prepay","form_id"?,"issued_at"?} -> {"form_id"}`,
	`POST   /_sandbox/tokens/invalidate   {"appid"}`,
	`GET    /_sandbox/accepted            -> [Message]`,
	`GET    /_sandbox/stats               -> Stats`,
	`GET    /_sandbox/faults              -> [Fault]`,
	`POST   /_sandbox/faults              Fault {"path","appid","kind","errcode","rate","times","latency_ms","stall_ms"}`,
	`DELETE /_sandbox/faults              (reset faults)`,
	`POST   /_sandbox/receipts            {"appid","url","token","encoding_aes_key"?,"format":"xml"|"json","batch"?,"delay_ms"?,"fail_rate"?,"fail_openids"?,"errcode"?} (subscribe_msg_sent_event pushes; empty url: off)`,
}

// errBadRequest marks a control request the caller got wrong.
var errBadRequest = errors.New("bad request")

func (s *Sandbox) controlMux() *http.ServeMux {
	m := http.NewServeMux()
	handle := func(pattern string, f func(r *http.Request) (any, error)) {
		m.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			out, err := f(r)
			if err != nil {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
				return
			}
			if out == nil {
				out = map[string]any{}
			}
			writeJSON(w, http.StatusOK, out)
		})
	}
	handle("POST /_sandbox/apps", func(r *http.Request) (any, error) {
		var b App
		if err := decodeControl(r, &b); err != nil {
			return nil, err
		}
		if b.AppID == "" || b.Secret == "" {
			return nil, fmt.Errorf("%w: appid and secret are required", errBadRequest)
		}
		s.AddApp(b.AppID, b.Secret)
		return nil, nil
	})
	handle("POST /_sandbox/users", func(r *http.Request) (any, error) {
		var b struct {
			AppID string `json:"appid"`
		}
		if err := decodeControl(r, &b); err != nil {
			return nil, err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		a, err := s.controlAppLocked(b.AppID)
		if err != nil {
			return nil, err
		}
		return map[string]string{"openid": s.newUserLocked(a)}, nil
	})
	handle("POST /_sandbox/codes", func(r *http.Request) (any, error) {
		var b struct {
			AppID  string `json:"appid"`
			OpenID string `json:"openid"`
		}
		if err := decodeControl(r, &b); err != nil {
			return nil, err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		a, err := s.controlAppLocked(b.AppID)
		if err != nil {
			return nil, err
		}
		if b.OpenID == "" {
			b.OpenID = s.newUserLocked(a)
		} else if _, ok := a.users[b.OpenID]; !ok {
			return nil, fmt.Errorf("%w: unknown openid %q", errBadRequest, b.OpenID)
		}
		return map[string]string{"openid": b.OpenID, "code": s.codeLocked(a, b.OpenID)}, nil
	})
	handle("POST /_sandbox/templates", func(r *http.Request) (any, error) {
		var b TemplateConfig
		if err := decodeControl(r, &b); err != nil {
			return nil, err
		}
		return nil, s.Apply(Config{Templates: []TemplateConfig{b}})
	})
	handle("POST /_sandbox/pages", func(r *http.Request) (any, error) {
		var b struct {
			AppID string   `json:"appid"`
			Pages []string `json:"pages"`
		}
		if err := decodeControl(r, &b); err != nil {
			return nil, err
		}
		if err := s.controlApp(b.AppID); err != nil {
			return nil, err
		}
		s.SetAllowedPages(b.AppID, b.Pages)
		return nil, nil
	})
	handle("POST /_sandbox/grants/subscribe", func(r *http.Request) (any, error) {
		var b struct {
			AppID      string `json:"appid"`
			OpenID     string `json:"openid"`
			TemplateID string `json:"template_id"`
			Count      int    `json:"count"`
		}
		if err := decodeControl(r, &b); err != nil {
			return nil, err
		}
		if b.Count == 0 {
			b.Count = 1
		}
		if b.Count < 0 {
			return nil, fmt.Errorf("%w: negative count", errBadRequest)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		return nil, s.addSubscribeGrantsLocked(b.AppID, b.OpenID, b.TemplateID, b.Count)
	})
	handle("POST /_sandbox/grants/form", func(r *http.Request) (any, error) {
		var b struct {
			AppID    string    `json:"appid"`
			OpenID   string    `json:"openid"`
			Kind     string    `json:"kind"`
			FormID   string    `json:"form_id"`
			IssuedAt time.Time `json:"issued_at"`
		}
		if err := decodeControl(r, &b); err != nil {
			return nil, err
		}
		if b.Kind == "" {
			b.Kind = KindForm
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if b.FormID == "" {
			if !b.IssuedAt.IsZero() {
				b.FormID = s.randStringLocked(32, hexChars)
			} else {
				v, err := s.mintFormIDLocked(b.AppID, b.OpenID, b.Kind)
				return map[string]string{"form_id": v}, err
			}
		}
		if b.IssuedAt.IsZero() {
			b.IssuedAt = s.now()
		}
		err := s.addFormIDLocked(b.AppID, b.OpenID, b.FormID, b.Kind, b.IssuedAt)
		return map[string]string{"form_id": b.FormID}, err
	})
	handle("POST /_sandbox/tokens/invalidate", func(r *http.Request) (any, error) {
		var b struct {
			AppID string `json:"appid"`
		}
		if err := decodeControl(r, &b); err != nil {
			return nil, err
		}
		if err := s.controlApp(b.AppID); err != nil {
			return nil, err
		}
		s.InvalidateTokens(b.AppID)
		return nil, nil
	})
	handle("GET /_sandbox/accepted", func(*http.Request) (any, error) { return s.Accepted(), nil })
	handle("GET /_sandbox/stats", func(*http.Request) (any, error) { return s.Stats(), nil })
	handle("GET /_sandbox/faults", func(*http.Request) (any, error) { return s.Faults(), nil })
	handle("POST /_sandbox/faults", func(r *http.Request) (any, error) {
		var f Fault
		if err := decodeControl(r, &f); err != nil {
			return nil, err
		}
		return nil, s.AddFault(f)
	})
	handle("DELETE /_sandbox/faults", func(*http.Request) (any, error) {
		s.ResetFaults()
		return nil, nil
	})
	s.customControl(handle) // custom.go
	s.quotaControl(handle)  // quota.go
	handle("POST /_sandbox/receipts", func(r *http.Request) (any, error) {
		var b struct {
			ReceiptPush
			DelayMS int `json:"delay_ms"`
		}
		if err := decodeControl(r, &b); err != nil {
			return nil, err
		}
		b.Delay = time.Duration(b.DelayMS) * time.Millisecond
		return nil, s.SetReceipts(b.ReceiptPush)
	}) // receipts.go
	m.HandleFunc("/_sandbox/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": "no such control route", "routes": ControlRoutes})
	})
	return m
}

// controlApp checks that a control request names a known app; an unknown appid is
// the caller's mistake (400).
func (s *Sandbox) controlApp(appID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := s.controlAppLocked(appID)
	return err
}

// controlAppLocked is controlApp for a caller holding s.mu that goes on to use the app.
func (s *Sandbox) controlAppLocked(appID string) (*app, error) {
	a, ok := s.apps[appID]
	if !ok {
		return nil, fmt.Errorf("%w: unknown appid %q", errBadRequest, appID)
	}
	return a, nil
}

func decodeControl(r *http.Request, v any) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	if err := strictDecode(body, v); err != nil {
		return fmt.Errorf("%w: %v", errBadRequest, err)
	}
	return nil
}
