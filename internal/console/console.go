// Package console is the operator console: static HTML, CSS and JavaScript embedded in
// the admin function's binary and served under /console/. The pages hold no data of
// their own: they call the operator API (/v1/admin/...) from the browser with the
// operator token the operator types once, kept in the tab's sessionStorage. Serving the
// files needs no token, since they hold no secret; every read and write behind them is
// the operator API's, with its own authorization.
//
// No build step and no third-party code: a fresh machine, or a laptop offline on
// make run, serves exactly what is in assets/.
package console

import (
	"embed"
	"encoding/json"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"

	"github.com/aws/aws-lambda-go/events"
)

//go:embed assets
var assets embed.FS

// Prefix is the path the console is served under.
const Prefix = "/console"

// Owns reports whether path belongs to the console's route tree (/console and
// /console/...), which the admin function serves without a token.
func Owns(path string) bool {
	return path == Prefix || strings.HasPrefix(path, Prefix+"/")
}

// Serve answers a GET or HEAD of a console path: /console redirects to /console/, which
// is index.html; any other path is the embedded file of that name or 404. Every file
// is text (the chart is inline SVG), so no answer needs base64.
func Serve(method, p string) events.APIGatewayV2HTTPResponse {
	if method != http.MethodGet && method != http.MethodHead {
		resp := errorAnswer(http.StatusMethodNotAllowed, "method_not_allowed", "the console is read with GET")
		resp.Headers["Allow"] = "GET, HEAD"
		return resp
	}
	if p == Prefix {
		return events.APIGatewayV2HTTPResponse{StatusCode: http.StatusFound, Headers: map[string]string{"Location": Prefix + "/", "Cache-Control": "no-cache"}}
	}
	name := strings.TrimPrefix(p, Prefix+"/")
	if name == "" {
		name = "index.html"
	}
	// path.Clean and fs.ValidPath refuse "..", so no request reads outside assets/.
	if name != path.Clean(name) || !fs.ValidPath(name) {
		return errorAnswer(http.StatusNotFound, "not_found", "no console file "+strconv.Quote(name))
	}
	b, err := assets.ReadFile("assets/" + name)
	if err != nil {
		return errorAnswer(http.StatusNotFound, "not_found", "no console file "+strconv.Quote(name))
	}
	ct := mime.TypeByExtension(path.Ext(name))
	if ct == "" {
		ct = "application/octet-stream"
	}
	resp := events.APIGatewayV2HTTPResponse{
		StatusCode: http.StatusOK,
		Headers: map[string]string{
			"Content-Type": ct,
			// The files change with each deployment and are small: revalidate, never
			// keep a stale console against a newer API.
			"Cache-Control": "no-cache",
			// Everything the pages load is their own; the token in sessionStorage is only
			// ever sent to this origin's API.
			"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
			"X-Content-Type-Options":  "nosniff",
			"Referrer-Policy":         "no-referrer",
		},
	}
	if method == http.MethodGet {
		resp.Body = string(b)
	}
	return resp
}

// errorAnswer is the API's {code, message} error shape (httpapi.ErrorBody), so a client
// reads a console refusal like any other.
func errorAnswer(status int, code, message string) events.APIGatewayV2HTTPResponse {
	b, _ := json.Marshal(map[string]string{"code": code, "message": message})
	return events.APIGatewayV2HTTPResponse{StatusCode: status, Body: string(b),
		Headers: map[string]string{"Content-Type": "application/json", "Cache-Control": "no-cache"}}
}

// Files lists the embedded file names (tests check each is served).
func Files() []string {
	var out []string
	_ = fs.WalkDir(assets, "assets", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, strings.TrimPrefix(p, "assets/"))
		}
		return err
	})
	return out
}
