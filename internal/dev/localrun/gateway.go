package localrun

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

// HTTPHandler is a function behind an HTTP API route (payload format 2.0).
type HTTPHandler func(context.Context, events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error)

// Route is one HTTP API route of the template.
type Route struct {
	Method   string // GET, POST, ... or ANY
	Path     string // /v1/session, /v1/admin/{proxy+}
	Function string // logical id
	Timeout  time.Duration
	Handler  HTTPHandler
}

// maxPayload is API Gateway's request payload limit.
const maxPayload = 10 << 20

// Gateway emulates an API Gateway HTTP API: it matches routes the way API Gateway does
// (exact paths before greedy {proxy+} ones, a method before ANY), turns requests into
// payload format 2.0 events, and answers 404 for unmatched routes, 413 for bodies over
// the limit and 500 when a function returns an error, as API Gateway would.
type Gateway struct {
	Routes []Route
	Log    *slog.Logger
}

// ServeHTTP implements http.Handler.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	route, params, ok := g.match(r.Method, r.URL.Path)
	if !ok {
		gatewayError(w, http.StatusNotFound, "Not Found")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxPayload+1))
	if err != nil {
		gatewayError(w, http.StatusBadRequest, "Bad Request")
		return
	}
	if len(body) > maxPayload {
		gatewayError(w, http.StatusRequestEntityTooLarge, "Request Entity Too Large")
		return
	}
	ev := toEvent(r, route, params, body)
	ctx, cancel := context.WithTimeout(r.Context(), route.Timeout)
	defer cancel()
	ctx = lambdacontext.NewContext(ctx, &lambdacontext.LambdaContext{AwsRequestID: ev.RequestContext.RequestID})
	start := time.Now()
	resp, err := route.Handler(ctx, ev)
	g.Log.Info("http", "target", route.Function, "route", ev.RouteKey, "status", resp.StatusCode,
		"request_id", ev.RequestContext.RequestID, "ms", time.Since(start).Milliseconds(), "err", err)
	if err != nil {
		gatewayError(w, http.StatusInternalServerError, "Internal Server Error")
		return
	}
	writeResponse(w, resp)
}

// gatewayError writes one of API Gateway's own answers: {"message"} as application/json
// (http.Error would say text/plain).
func gatewayError(w http.ResponseWriter, status int, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, "{\"message\":%q}", message)
}

func (g *Gateway) match(method, path string) (Route, map[string]string, bool) {
	type cand struct {
		r      Route
		params map[string]string
		score  int
	}
	var best *cand
	for _, r := range g.Routes {
		if r.Method != "ANY" && !strings.EqualFold(r.Method, method) {
			continue
		}
		params, greedy, ok := matchPath(r.Path, path)
		if !ok {
			continue
		}
		score := 0
		if !greedy {
			score += 2
		}
		if r.Method != "ANY" {
			score++
		}
		if best == nil || score > best.score {
			best = &cand{r, params, score}
		}
	}
	if best == nil {
		return Route{}, nil, false
	}
	return best.r, best.params, true
}

// matchPath matches a SAM path template ({name} one segment, {name+} the rest).
func matchPath(tmpl, path string) (map[string]string, bool, bool) {
	ts := strings.Split(strings.Trim(tmpl, "/"), "/")
	ps := strings.Split(strings.Trim(path, "/"), "/")
	params := map[string]string{}
	for i, t := range ts {
		if strings.HasPrefix(t, "{") && strings.HasSuffix(t, "+}") {
			if i >= len(ps) || ps[i] == "" {
				return nil, false, false
			}
			params[t[1:len(t)-2]] = strings.Join(ps[i:], "/")
			return params, true, true
		}
		if i >= len(ps) {
			return nil, false, false
		}
		if strings.HasPrefix(t, "{") && strings.HasSuffix(t, "}") {
			params[t[1:len(t)-1]] = ps[i]
			continue
		}
		if t != ps[i] {
			return nil, false, false
		}
	}
	return params, false, len(ts) == len(ps)
}

// RequestEvent turns a real HTTP request into the payload format 2.0 event API Gateway
// would give the function behind the route "method path" (tests and the events/ samples
// use it, so the samples are what the runner really sends).
func RequestEvent(r *http.Request, method, path string) (events.APIGatewayV2HTTPRequest, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxPayload+1))
	if err != nil {
		return events.APIGatewayV2HTTPRequest{}, err
	}
	params, _, ok := matchPath(path, r.URL.Path)
	if !ok {
		return events.APIGatewayV2HTTPRequest{}, fmt.Errorf("localrun: %s does not match %s", r.URL.Path, path)
	}
	return toEvent(r, Route{Method: method, Path: path}, params, body), nil
}

func toEvent(r *http.Request, route Route, params map[string]string, body []byte) events.APIGatewayV2HTTPRequest {
	headers := map[string]string{}
	for k, vs := range r.Header {
		headers[strings.ToLower(k)] = strings.Join(vs, ",")
	}
	var cookies []string
	for _, c := range r.Cookies() {
		cookies = append(cookies, c.Name+"="+c.Value)
	}
	delete(headers, "cookie")
	query := map[string]string{}
	for k, vs := range r.URL.Query() {
		query[k] = strings.Join(vs, ",")
	}
	ip, _, _ := net.SplitHostPort(r.RemoteAddr)
	now := time.Now()
	id := requestID()
	ev := events.APIGatewayV2HTTPRequest{
		Version:        "2.0",
		RouteKey:       route.Method + " " + route.Path,
		RawPath:        r.URL.Path,
		RawQueryString: r.URL.RawQuery,
		Cookies:        cookies,
		Headers:        headers,
		RequestContext: events.APIGatewayV2HTTPRequestContext{
			RouteKey:   route.Method + " " + route.Path,
			AccountID:  "123456789012",
			Stage:      "$default",
			RequestID:  id,
			APIID:      "local",
			DomainName: r.Host,
			Time:       now.UTC().Format("02/Jan/2006:15:04:05 -0700"),
			TimeEpoch:  now.UnixMilli(),
			HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{
				Method: r.Method, Path: r.URL.Path, Protocol: r.Proto, SourceIP: ip, UserAgent: r.UserAgent(),
			},
		},
	}
	if route.Method == "ANY" {
		ev.RouteKey = "ANY " + route.Path
		ev.RequestContext.RouteKey = ev.RouteKey
	}
	if len(query) > 0 {
		ev.QueryStringParameters = query
	}
	if len(params) > 0 {
		ev.PathParameters = params
	}
	if len(body) > 0 {
		if isText(r.Header.Get("Content-Type")) {
			ev.Body = string(body)
		} else {
			ev.Body = base64.StdEncoding.EncodeToString(body)
			ev.IsBase64Encoded = true
		}
	}
	return ev
}

// isText reports whether API Gateway would pass a body of this type as text; everything
// else arrives base64-encoded, so handlers must cope with both.
func isText(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return contentType == ""
	}
	return strings.HasPrefix(mt, "text/") || strings.HasSuffix(mt, "json") || strings.HasSuffix(mt, "xml") ||
		mt == "application/x-www-form-urlencoded"
}

func writeResponse(w http.ResponseWriter, resp events.APIGatewayV2HTTPResponse) {
	keys := make([]string, 0, len(resp.Headers))
	for k := range resp.Headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		w.Header().Set(k, resp.Headers[k])
	}
	for k, vs := range resp.MultiValueHeaders {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	for _, c := range resp.Cookies {
		w.Header().Add("Set-Cookie", c)
	}
	body := []byte(resp.Body)
	if resp.IsBase64Encoded {
		if b, err := base64.StdEncoding.DecodeString(resp.Body); err == nil {
			body = b
		}
	}
	if w.Header().Get("Content-Type") == "" && len(body) > 0 {
		w.Header().Set("Content-Type", "application/json")
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	status := resp.StatusCode
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func requestID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return fmt.Sprintf("%s-%s-%s-%s-%s", h[0:8], h[8:12], h[12:16], h[16:20], h[20:32])
}
