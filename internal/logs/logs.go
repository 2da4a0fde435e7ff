// Package logs is minipush's one logger setup: JSON lines (which CloudWatch Logs
// Insights reads field by field) with the same keys in every function, so one query
// finds a campaign's or a request's lines whichever function wrote them.
//
// The keys, by convention everywhere:
//
//	function    the function that wrote the line ("send"), set by New
//	request_id  the Lambda or API Gateway request id
//	campaign    a campaign id
//	run         a run number of that campaign
//	err         an error's message (never "error")
//
// Openids, tokens and secrets are never logged.
package logs

import (
	"io"
	"log/slog"
)

// The keys every function logs with.
const (
	KeyFunction  = "function"
	KeyRequestID = "request_id"
	KeyCampaign  = "campaign"
	KeyRun       = "run"
	KeyErr       = "err"
)

// New returns a JSON logger writing to w at Info level whose every line names function
// (omitted when empty).
func New(w io.Writer, function string) *slog.Logger {
	log := slog.New(slog.NewJSONHandler(w, nil))
	if function != "" {
		log = log.With(KeyFunction, function)
	}
	return log
}

// Or returns log, or a logger that discards everything when log is nil: a handler
// built without the production wiring (a test) stays quiet rather than guessing where
// to write.
func Or(log *slog.Logger) *slog.Logger {
	if log == nil {
		return discard
	}
	return log
}

var discard = slog.New(slog.DiscardHandler)
