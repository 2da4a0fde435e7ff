package sandbox

import (
	"encoding/json"
	"fmt"
	"time"
)

// FaultKind is what an injected fault does to a request.
type FaultKind string

// The fault kinds.
const (
	// FaultErrcode answers ErrCode without processing the request: nothing is consumed
	// or recorded (e.g. -1 "system error", 45009 quota).
	FaultErrcode FaultKind = "errcode"
	// FaultLatency delays the request by Latency, then processes it normally.
	FaultLatency FaultKind = "latency"
	// FaultLostAnswer processes the request (a send consumes its grant and is
	// recorded with AnswerLost), then stalls until the client gives up or Stall
	// passes, then hangs up: a timeout whose message was delivered anyway.
	FaultLostAnswer FaultKind = "timeout"
	// FaultHangUpAfter processes the request, then closes the connection at once.
	FaultHangUpAfter FaultKind = "hangup_after"
	// FaultHangUpBefore reads the request and closes the connection without
	// processing it: nothing is recorded. The client cannot tell it from
	// FaultHangUpAfter, which is the point.
	FaultHangUpBefore FaultKind = "hangup_before"
	// FaultGatewayAfter processes the request (a send is recorded with AnswerLost), then
	// answers Status (default 502) with an HTML page and no errcode, as a gateway in
	// front of WeChat does when the upstream answer is lost after it acted.
	FaultGatewayAfter FaultKind = "gateway_after"
	// FaultGatewayBefore answers Status (default 502) without processing the request:
	// nothing is recorded. The client cannot tell it from FaultGatewayAfter.
	FaultGatewayBefore FaultKind = "gateway_before"
)

// DefaultGatewayStatus is the status of a gateway fault that names none.
const DefaultGatewayStatus = 502

// DefaultStall is how long FaultLostAnswer waits when Stall is zero: longer than any
// sane client timeout, and it ends early when the client disconnects.
const DefaultStall = time.Minute

// Fault is one injected failure rule. Rules are checked in the order added; every
// firing latency rule adds its delay, and the first firing rule of any other kind
// decides the request's fate.
type Fault struct {
	Path    string        // endpoint path, e.g. PathSubscribeSend; "" matches every WeChat endpoint
	AppID   string        // only requests of this app (by appid parameter or token); "" matches all
	Kind    FaultKind     // default FaultErrcode when ErrCode is set, else FaultLatency
	ErrCode int           // for FaultErrcode
	Rate    float64       // probability per request, 0..1; 0 means 1 (always)
	Times   int           // fire at most this many times; 0 means unlimited
	Latency time.Duration // for FaultLatency (also added before any other kind when set)
	Stall   time.Duration // for FaultLostAnswer; default DefaultStall
	Status  int           // for the gateway faults: an HTTP status 400..599; default DefaultGatewayStatus
}

// faultJSON is Fault on the wire: durations in milliseconds, for callers in any language.
type faultJSON struct {
	Path      string    `json:"path,omitempty"`
	AppID     string    `json:"appid,omitempty"`
	Kind      FaultKind `json:"kind,omitempty"`
	ErrCode   int       `json:"errcode,omitempty"`
	Rate      float64   `json:"rate,omitempty"`
	Times     int       `json:"times,omitempty"`
	LatencyMS int64     `json:"latency_ms,omitempty"`
	StallMS   int64     `json:"stall_ms,omitempty"`
	Status    int       `json:"status,omitempty"`
}

// MarshalJSON encodes durations as milliseconds.
func (f Fault) MarshalJSON() ([]byte, error) {
	return json.Marshal(faultJSON{f.Path, f.AppID, f.Kind, f.ErrCode, f.Rate, f.Times, f.Latency.Milliseconds(), f.Stall.Milliseconds(), f.Status})
}

// UnmarshalJSON decodes durations from milliseconds.
func (f *Fault) UnmarshalJSON(b []byte) error {
	var j faultJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*f = Fault{j.Path, j.AppID, j.Kind, j.ErrCode, j.Rate, j.Times, time.Duration(j.LatencyMS) * time.Millisecond, time.Duration(j.StallMS) * time.Millisecond, j.Status}
	return nil
}

// kind returns the effective kind; a nil fault is no fault.
func (f *Fault) kind() FaultKind {
	switch {
	case f == nil:
		return ""
	case f.Kind != "":
		return f.Kind
	case f.ErrCode != 0:
		return FaultErrcode
	}
	return FaultLatency
}

func (f *Fault) validate() error {
	switch f.kind() {
	case FaultErrcode:
		if f.ErrCode == 0 {
			return fmt.Errorf("fault: kind errcode needs a non-zero errcode")
		}
	case FaultLatency, FaultLostAnswer, FaultHangUpAfter, FaultHangUpBefore:
	case FaultGatewayAfter, FaultGatewayBefore:
		if f.Status != 0 && (f.Status < 400 || f.Status > 599) {
			return fmt.Errorf("fault: gateway status %d: want 400..599", f.Status)
		}
	default:
		return fmt.Errorf("fault: unknown kind %q", f.Kind)
	}
	if f.Path != "" {
		if _, ok := endpoints[f.Path]; !ok {
			return fmt.Errorf("fault: unknown path %q", f.Path)
		}
	}
	if f.Rate < 0 || f.Rate > 1 || f.Times < 0 || f.Latency < 0 || f.Stall < 0 {
		return fmt.Errorf("fault: rate must be in [0,1], times and durations non-negative")
	}
	return nil
}

type faultState struct {
	Fault
	fired int
}

// AddFault adds a fault rule. It fails on a rule that could never mean anything
// (unknown kind or path, rate outside [0,1]).
func (s *Sandbox) AddFault(f Fault) error {
	if err := f.validate(); err != nil {
		return err
	}
	if f.kind() == FaultLostAnswer && f.Stall == 0 {
		f.Stall = DefaultStall
	}
	if (f.kind() == FaultGatewayAfter || f.kind() == FaultGatewayBefore) && f.Status == 0 {
		f.Status = DefaultGatewayStatus
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &faultState{Fault: f})
	return nil
}

// Faults returns the active rules.
func (s *Sandbox) Faults() []Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Fault, len(s.faults))
	for i, f := range s.faults {
		out[i] = f.Fault
	}
	return out
}

// ResetFaults removes every fault rule.
func (s *Sandbox) ResetFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// drawFaultsLocked decides the faults for one request to path from app appID.
func (s *Sandbox) drawFaultsLocked(path, appID string) (time.Duration, *Fault) {
	var delay time.Duration
	var terminal *Fault
	for _, f := range s.faults {
		if f.Path != "" && f.Path != path || f.AppID != "" && f.AppID != appID {
			continue
		}
		if f.Times > 0 && f.fired >= f.Times {
			continue
		}
		k := f.kind()
		if k != FaultLatency && terminal != nil {
			continue
		}
		if f.Rate > 0 && f.Rate < 1 && s.rng.Float64() >= f.Rate {
			continue
		}
		f.fired++
		s.stats.Faults++
		delay += f.Latency
		if k != FaultLatency {
			fc := f.Fault
			terminal = &fc
		}
	}
	return delay, terminal
}
