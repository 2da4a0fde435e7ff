package admin

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"unicode/utf8"

	"minipush"
	"minipush/internal/msgcheck"
)

// Bounds of a campaign's customer-service message. WeChat's customerServiceMessage.send
// page marks every field required and gives no lengths; maxCSContent is the text
// limit of the official account's customer-service API (2048 bytes, UNCONFIRMED for
// mini-programs), and the rest are ours, so a card stays readable and an item small.
const (
	maxCSContent     = 2048 // bytes of a text message
	maxCSTitle       = 64   // characters of a link's or card's title
	maxCSDescription = 256  // characters of a link's description
	maxCSURL         = 1024 // bytes of a link's url or thumbUrl
)

// mediaIDRE matches a media_id as WeChat's upload answers it (base64url-like text).
var mediaIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// validateCS checks a campaign's customer-service message, naming each bad field
// under customerService. nil is valid: the campaign has no such message.
func validateCS(cs *minipush.CustomerService) []string {
	if cs == nil {
		return nil
	}
	var errs []string
	bad := func(field, format string, args ...any) {
		errs = append(errs, "customerService."+field+": "+fmt.Sprintf(format, args...))
	}
	n := 0
	for _, set := range []bool{cs.Text != nil, cs.Link != nil, cs.MiniprogramPage != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return []string{"customerService: want exactly one of text, link, miniprogrampage"}
	}
	text := func(field, v string, maxRunes int) {
		switch {
		case strings.TrimSpace(v) == "":
			bad(field, "required")
		case !utf8.ValidString(v) || strings.ContainsFunc(v, isControl):
			bad(field, "not UTF-8 text without control characters")
		case utf8.RuneCountInString(v) > maxRunes:
			bad(field, "%d characters, at most %d", utf8.RuneCountInString(v), maxRunes)
		}
	}
	link := func(field, v string) {
		u, err := url.Parse(v)
		switch {
		case v == "":
			bad(field, "required")
		case len(v) > maxCSURL:
			bad(field, "%d bytes, at most %d", len(v), maxCSURL)
		case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "":
			bad(field, "%q is not an http(s) URL", v)
		}
	}
	switch {
	case cs.Text != nil:
		c := cs.Text.Content
		switch {
		case strings.TrimSpace(c) == "":
			bad("text.content", "required")
		case !utf8.ValidString(c):
			bad("text.content", "not valid UTF-8")
		case len(c) > maxCSContent:
			bad("text.content", "%d bytes, at most %d", len(c), maxCSContent)
		}
	case cs.Link != nil:
		text("link.title", cs.Link.Title, maxCSTitle)
		text("link.description", cs.Link.Description, maxCSDescription)
		link("link.url", cs.Link.URL)
		link("link.thumbUrl", cs.Link.ThumbURL)
	case cs.MiniprogramPage != nil:
		p := cs.MiniprogramPage
		text("miniprogrampage.title", p.Title, maxCSTitle)
		if p.PagePath == "" {
			bad("miniprogrampage.pagepath", "required")
		} else if err := msgcheck.ValidatePage(p.PagePath); err != nil {
			bad("miniprogrampage.pagepath", "%v", err)
		}
		if !mediaIDRE.MatchString(p.ThumbMediaID) {
			bad("miniprogrampage.thumbMediaId", "%q is not a media_id (1 to 128 of A-Z a-z 0-9 _ -)", p.ThumbMediaID)
		}
	}
	return errs
}

func isControl(r rune) bool { return r < ' ' && r != '\n' || r == 0x7f }
