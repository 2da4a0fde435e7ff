package send

import (
	"context"
	"log/slog"

	"minipush"
	"minipush/internal/metrics"
)

// outcomeMetrics names the metric of each final outcome.
var outcomeMetrics = map[minipush.Outcome]string{
	minipush.OutcomeSent:    metrics.Sent,
	minipush.OutcomeFailed:  metrics.Failed,
	minipush.OutcomeUnknown: metrics.Unknown,
	minipush.OutcomeNoGrant: metrics.NoGrant,
	minipush.OutcomeSkipped: metrics.Skipped,
}

// countOutcome adds one recipient this invocation made final to the invocation's
// metrics, by app and (for failed, unknown and skipped) reason: the same counts the
// run's counters get, so the dashboard and progress agree.
func countOutcome(ctx context.Context, appID string, o minipush.Outcome, reason string) {
	name, ok := outcomeMetrics[o]
	if !ok {
		return
	}
	dims := []metrics.Dim{{Name: "AppId", Value: appID}}
	if o != minipush.OutcomeSent && o != minipush.OutcomeNoGrant {
		dims = append(dims, metrics.Dim{Name: "Reason", Value: reason})
	}
	metrics.FromContext(ctx).Add(name, 1, dims...)
}

// flushMetrics writes the invocation's metrics; losing them never fails the batch.
func flushMetrics(ctx context.Context, log *slog.Logger, rec *metrics.Recorder) {
	if err := rec.Flush(); err != nil {
		log.LogAttrs(ctx, slog.LevelWarn, "send: metrics lost", slog.String("err", err.Error()))
	}
}
