package minipush

import (
	"errors"
	"fmt"
)

// Error codes shared by every layer. Each maps to one transport status at the edge
// (see package httpapi), so domain code never thinks in HTTP.
const (
	ECONFLICT     = "conflict"     // a conditional write lost: already claimed, spent or changed
	EINTERNAL     = "internal"     // a bug or an unexpected dependency failure
	EINVALID      = "invalid"      // the request is well-formed but its content is not acceptable
	EMALFORMED    = "malformed"    // the request could not be decoded at all
	ENOTFOUND     = "not_found"    // the addressed thing does not exist
	EUNAUTHORIZED = "unauthorized" // credential missing, forged or expired
	EFORBIDDEN    = "forbidden"    // a valid credential whose scope does not cover the request
	ETOOLARGE     = "too_large"    // the request body or a batch is over its documented limit
	ERATELIMIT    = "rate_limited" // a per-user or per-app rate limit tripped
	EUPSTREAM     = "upstream"     // WeChat failed or answered an error we cannot recover from
	EUNAVAILABLE  = "unavailable"  // a transient dependency failure; retrying later may succeed
	ENOTIMPL      = "not_implemented"
)

// Error is the application error: a machine-readable code and a message safe to show
// a caller. Wrapped causes stay out of Message so internals never leak into responses.
type Error struct {
	Code    string
	Message string
	Err     error // optional cause, for logs and errors.Is/As
}

// Error implements the error interface.
func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL for any
// other non-nil error, and "" for nil.
func ErrorCode(err error) string {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Code
	default:
		return EINTERNAL
	}
}

// ErrorMessage returns the caller-safe message of the first *Error in err's chain,
// or a generic text for any other error, so internal details never reach a response.
func ErrorMessage(err error) string {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Message
	default:
		return "internal error"
	}
}
