package admin

import (
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

	"minipush"
	"minipush/internal/msgcheck"
)

// Bounds of operator input that WeChat does not define; each keeps one stored item
// small and one request cheap.
const (
	maxName          = 100  // characters of a campaign name
	maxSegmentValues = 50   // regions, industries or tags in one segment filter
	maxAttr          = 64   // characters of one region, industry or tag
	maxRetryBudget   = 10   // transient retries per recipient
	maxTags          = 50   // tags on one user
	maxImport        = 1000 // users in one import request
	// MaxAudiencePage is how many openids one audience upload may carry.
	MaxAudiencePage = 5000
)

// openIDRE matches an openid as WeChat issues them (28 characters of base64url today);
// 64 leaves room without admitting arbitrary text into keys.
var openIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// campaignIDRE matches ids this API hands out; anything else cannot exist.
var campaignIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func invalid(format string, args ...any) error {
	return minipush.Errorf(minipush.EINVALID, format, args...)
}

// validateCampaign checks everything an operator may set on a campaign.
func validateCampaign(c minipush.Campaign) error {
	if strings.TrimSpace(c.AppID) == "" || len(c.AppID) > 64 {
		return invalid("appId: required, at most 64 characters")
	}
	if n := utf8.RuneCountInString(c.Name); n > maxName || strings.TrimSpace(c.Name) == "" {
		return invalid("name: required, at most %d characters", maxName)
	}
	if err := validateMessage(c.Message); err != nil {
		return err
	}
	if err := validateAudience(c.Audience); err != nil {
		return err
	}
	// 0 is refused rather than stored: send reads a budget of 0 as "the default", so
	// storing it would promise the operator "no retries" and deliver five.
	if c.Policy.RetryBudget < 1 || c.Policy.RetryBudget > maxRetryBudget {
		return invalid("policy.retryBudget: %d, want 1 to %d", c.Policy.RetryBudget, maxRetryBudget)
	}
	return validatePolicy(c.Policy)
}

// validatePolicy checks the holdout and the quiet-hours override.
func validatePolicy(p minipush.Policy) error {
	if p.HoldoutPercent < 0 || p.HoldoutPercent > minipush.MaxHoldoutPercent {
		return invalid("policy.holdoutPercent: %d, want 0 to %d", p.HoldoutPercent, minipush.MaxHoldoutPercent)
	}
	if p.CanaryPercent < 0 || p.CanaryPercent > 100 {
		return invalid("policy.canaryPercent: %d, want 0 (no canary) to 100", p.CanaryPercent)
	}
	if p.CanaryAbortPercent < 0 || p.CanaryAbortPercent > 100 {
		return invalid("policy.canaryAbortPercent: %d, want 0 (the default, %d) to 100", p.CanaryAbortPercent, minipush.DefaultCanaryAbortPercent)
	}
	if p.QuietHours != nil {
		if err := p.QuietHours.Check("policy.quietHours"); err != nil {
			return invalid("%s", err.Error())
		}
		if p.Transactional && !p.QuietHours.Off {
			return invalid("policy.quietHours: a transactional campaign has no quiet hours; drop one of the two")
		}
	}
	return nil
}

// validateMessage applies WeChat's value rules (package msgcheck) for the message kind,
// and refuses fields the kind's API does not have rather than silently dropping them.
func validateMessage(m minipush.Message) error {
	var errs []string
	add := func(err error) {
		if err != nil {
			errs = append(errs, err.Error())
		}
	}
	switch m.Kind {
	case minipush.MessageSubscribe:
		data := make(map[string]string, len(m.Data))
		for k, v := range m.Data {
			data[k] = v.Value
			if v.Color != "" {
				errs = append(errs, fmt.Sprintf("data.%s.color: subscribe messages have no colour", k))
			}
		}
		for _, fe := range msgcheck.ValidateSubscribe(data) {
			add(fe)
		}
		if m.EmphasisKeyword != "" {
			errs = append(errs, "emphasisKeyword: template messages only")
		}
		add(msgcheck.ValidateState(m.MiniprogramState))
		add(msgcheck.ValidateLang(m.Lang))
	case minipush.MessageTemplate:
		data := make(map[string]msgcheck.TemplateValue, len(m.Data))
		for k, v := range m.Data {
			data[k] = msgcheck.TemplateValue{Value: v.Value, Color: v.Color}
		}
		for _, fe := range msgcheck.ValidateTemplate(data, m.EmphasisKeyword) {
			add(fe)
		}
		if m.MiniprogramState != "" || m.Lang != "" {
			errs = append(errs, "miniprogramState, lang: subscribe messages only")
		}
	default:
		return invalid("message.kind %q: want subscribe or template", m.Kind)
	}
	add(msgcheck.ValidateTemplateID(m.TemplateID))
	add(msgcheck.ValidatePage(m.Page))
	errs = append(errs, validateCS(m.CustomerService)...) // csvalidate.go
	if len(errs) > 0 {
		return invalid("message: %s", strings.Join(errs, "; "))
	}
	return nil
}

func validateAudience(a minipush.Audience) error {
	switch a.Kind {
	case minipush.AudienceList, minipush.AudienceReachable:
		if a.Segment != nil {
			return invalid("audience.segment: only for kind segment")
		}
	case minipush.AudienceSegment:
		s := a.Segment
		if s == nil || len(s.Regions)+len(s.Industries)+len(s.Tags) == 0 {
			return invalid("audience.segment: a segment audience needs at least one region, industry or tag")
		}
		for name, vs := range map[string][]string{"regions": s.Regions, "industries": s.Industries, "tags": s.Tags} {
			if err := validateAttrs("audience.segment."+name, vs, maxSegmentValues); err != nil {
				return err
			}
		}
	default:
		return invalid("audience.kind %q: want list, segment or reachable", a.Kind)
	}
	return nil
}

func validateAttrs(field string, vs []string, maxN int) error {
	if len(vs) > maxN {
		return invalid("%s: %d values, at most %d", field, len(vs), maxN)
	}
	for _, v := range vs {
		if err := validateAttr(field, v); err != nil {
			return err
		}
	}
	return nil
}

func validateAttr(field, v string) error {
	if v == "" || utf8.RuneCountInString(v) > maxAttr || !utf8.ValidString(v) ||
		strings.ContainsFunc(v, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return invalid("%s: %q must be 1 to %d characters without control characters", field, v, maxAttr)
	}
	return nil
}

func validateOpenID(field, id string) error {
	if !openIDRE.MatchString(id) {
		return invalid("%s: %q is not an openid (1 to 64 of A-Z a-z 0-9 _ -)", field, id)
	}
	return nil
}
