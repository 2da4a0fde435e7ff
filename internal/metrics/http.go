package metrics

import (
	"context"
	"log/slog"

	"github.com/aws/aws-lambda-go/events"
)

// HTTP answers one HTTP API request (payload format 2.0) with handle, the way collect
// and admin both do: handle runs with a fresh Recorder in its context, the answer is
// counted as Requests by Status class, and the request's metrics are flushed. A lost
// flush is logged on log (when there is one), never returned: a request does not fail
// for its metrics.
func (e *Emitter) HTTP(ctx context.Context, log *slog.Logger, req events.APIGatewayV2HTTPRequest,
	handle func(context.Context, events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error),
) (events.APIGatewayV2HTTPResponse, error) {
	ctx, rec := e.Start(ctx)
	resp, err := handle(ctx, req)
	rec.Add(Requests, 1, Dim{Name: "Status", Value: StatusClass(resp.StatusCode)})
	if ferr := rec.Flush(); ferr != nil && log != nil {
		log.WarnContext(ctx, "metrics lost", "err", ferr.Error())
	}
	return resp, err
}
