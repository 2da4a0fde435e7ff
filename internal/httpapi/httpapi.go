// Package httpapi is the HTTP edge shared by the collect and admin functions: it maps
// errors to statuses once (domain codes, and AWS throttling as 503 with Retry-After on
// every route), writes JSON answers, and reads JSON bodies with limits.
package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"

	"github.com/aws/aws-lambda-go/events"

	"minipush"
)

// statuses maps each error code to its HTTP status.
var statuses = map[string]int{
	minipush.EMALFORMED:    http.StatusBadRequest,
	minipush.EUNAUTHORIZED: http.StatusUnauthorized,
	minipush.EFORBIDDEN:    http.StatusForbidden,
	minipush.ENOTFOUND:     http.StatusNotFound,
	minipush.ECONFLICT:     http.StatusConflict,
	minipush.ETOOLARGE:     http.StatusRequestEntityTooLarge,
	minipush.EINVALID:      http.StatusUnprocessableEntity,
	minipush.ERATELIMIT:    http.StatusTooManyRequests,
	minipush.EINTERNAL:     http.StatusInternalServerError,
	minipush.ENOTIMPL:      http.StatusNotImplemented,
	minipush.EUPSTREAM:     http.StatusBadGateway,
	minipush.EUNAVAILABLE:  http.StatusServiceUnavailable,
}

// ThrottleRetryAfter is the Retry-After, in seconds, of a 503: the one transient
// failure answered so is storage throttling, and on-demand tables absorb a burst
// within seconds.
const ThrottleRetryAfter = 2

// Classify returns the error a client is answered with: an AWS throttle, after the
// SDK's own retries, is not the API's failure, so it becomes EUNAVAILABLE (the client,
// or WeChat for a push, should come back); any other error is itself. Status and Error
// classify on their own; an edge calls Classify to log the code it answers.
func Classify(err error) error {
	if err != nil && throttled(err) {
		return &minipush.Error{Code: minipush.EUNAVAILABLE, Message: "storage is busy: retry in a few seconds", Err: err}
	}
	return err
}

// Status returns the HTTP status for err.
func Status(err error) int {
	if s, ok := statuses[minipush.ErrorCode(Classify(err))]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// ErrorBody is the JSON shape of every error answer.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Error answers err as {code, message}, a 503 with Retry-After. Only an
// *minipush.Error's message reaches the caller; anything else becomes "internal error",
// so causes and secrets never leak.
func Error(err error) events.APIGatewayV2HTTPResponse {
	err = Classify(err)
	status := Status(err)
	resp := JSON(status, ErrorBody{Code: minipush.ErrorCode(err), Message: minipush.ErrorMessage(err)})
	if status == http.StatusServiceUnavailable {
		resp.Headers["Retry-After"] = strconv.Itoa(ThrottleRetryAfter)
	}
	return resp
}

// JSON answers v with the given status.
func JSON(status int, v any) events.APIGatewayV2HTTPResponse {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"code":"internal","message":"internal error"}`)
	}
	return events.APIGatewayV2HTTPResponse{
		StatusCode: status,
		Headers:    map[string]string{"Content-Type": "application/json", "Cache-Control": "no-store"},
		Body:       string(b),
	}
}

// Body returns the raw request body, decoding API Gateway's base64 form.
func Body(req events.APIGatewayV2HTTPRequest, limit int) ([]byte, error) {
	b := []byte(req.Body)
	if req.IsBase64Encoded {
		d, err := base64.StdEncoding.DecodeString(req.Body)
		if err != nil {
			return nil, minipush.Errorf(minipush.EMALFORMED, "body is not valid base64")
		}
		b = d
	}
	if len(b) > limit {
		return nil, minipush.Errorf(minipush.ETOOLARGE, "body is %d bytes, over the %d byte limit", len(b), limit)
	}
	return b, nil
}

// DecodeJSON reads a JSON body of at most limit bytes into v with Unmarshal.
func DecodeJSON(req events.APIGatewayV2HTTPRequest, limit int, v any) error {
	b, err := Body(req, limit)
	if err != nil {
		return err
	}
	return Unmarshal(b, v)
}

// Unmarshal decodes the JSON document b into v strictly, refusing unknown fields and
// anything after the value, so a typo in a field name is an error, not a silently
// ignored value. Its EMALFORMED messages name the field and the types involved, never
// Go's type names or the values sent.
func Unmarshal(b []byte, v any) error {
	if len(bytes.TrimSpace(b)) == 0 {
		return minipush.Errorf(minipush.EMALFORMED, "empty body, expected JSON")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return minipush.Errorf(minipush.EMALFORMED, "invalid JSON: %s", jsonProblem(err))
	}
	// Not dec.More(): it is false before a stray ']' or '}', which would let
	// `{...}]` through as if it were `{...}`.
	if len(bytes.TrimSpace(b[dec.InputOffset():])) != 0 {
		return minipush.Errorf(minipush.EMALFORMED, "invalid JSON: trailing data after the value")
	}
	return nil
}

func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		got, _, _ := strings.Cut(te.Value, " ") // "number 300" names the value: keep the kind
		if te.Field == "" {
			return fmt.Sprintf("the body is %s %s, want %s", article(got), got, jsonKind(te.Type))
		}
		return fmt.Sprintf("%s: got %s %s, want %s", te.Field, article(got), got, jsonKind(te.Type))
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return "the document ends early (truncated)"
	}
	// The decoder's other messages (syntax errors, unknown fields) name characters and
	// field names without echoing values, which keeps them safe to return.
	return strings.TrimPrefix(err.Error(), "json: ")
}

func article(kind string) string {
	if kind == "array" || kind == "object" {
		return "an"
	}
	return "a"
}

// jsonKind names the JSON a Go type decodes from.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return "another type"
}

// Header returns a request header by case-insensitive name (API Gateway lower-cases
// them, the local runner and tests may not).
func Header(req events.APIGatewayV2HTTPRequest, name string) string {
	if v, ok := req.Headers[strings.ToLower(name)]; ok {
		return v
	}
	for k, v := range req.Headers {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return ""
}

// NotImplemented is the answer of a route whose issue has not landed yet.
func NotImplemented(what string) events.APIGatewayV2HTTPResponse {
	return Error(minipush.Errorf(minipush.ENOTIMPL, "%s is not implemented yet", what))
}
