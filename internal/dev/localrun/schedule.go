package localrun

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

// ScheduleHandler is a function behind an EventBridge schedule.
type ScheduleHandler func(context.Context, events.EventBridgeEvent) error

// ParseRate parses an EventBridge rate expression such as "rate(1 minute)". Cron
// expressions are refused: the local runner would have to emulate EventBridge's
// six-field dialect, and the template has no use for it.
func ParseRate(expr string) (time.Duration, error) {
	inner, ok := strings.CutPrefix(expr, "rate(")
	if !ok || !strings.HasSuffix(inner, ")") {
		return 0, fmt.Errorf("localrun: schedule %q: only rate(N unit) is supported locally", expr)
	}
	fields := strings.Fields(strings.TrimSuffix(inner, ")"))
	if len(fields) != 2 {
		return 0, fmt.Errorf("localrun: schedule %q: want rate(N unit)", expr)
	}
	n, err := strconv.Atoi(fields[0])
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("localrun: schedule %q: bad count", expr)
	}
	unit := map[string]time.Duration{
		"minute": time.Minute, "minutes": time.Minute, "hour": time.Hour, "hours": time.Hour,
		"day": 24 * time.Hour, "days": 24 * time.Hour,
	}[fields[1]]
	if unit == 0 {
		return 0, fmt.Errorf("localrun: schedule %q: bad unit %q", expr, fields[1])
	}
	return time.Duration(n) * unit, nil
}

// Schedule emulates an EventBridge schedule: it invokes the function every Every, and
// at once whenever Trigger is called. Invocations of one schedule never overlap here,
// though EventBridge may overlap them; the planner is tested for that separately.
type Schedule struct {
	Function string
	Name     string
	Every    time.Duration
	Timeout  time.Duration
	Handler  ScheduleHandler
	Log      *slog.Logger

	trigger chan chan error
}

// Trigger runs one tick now and returns its error.
func (s *Schedule) Trigger(ctx context.Context) error {
	done := make(chan error, 1)
	select {
	case s.trigger <- done:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Schedule) init() {
	if s.trigger == nil {
		s.trigger = make(chan chan error)
	}
}

// Run ticks until ctx ends.
func (s *Schedule) Run(ctx context.Context) {
	t := time.NewTicker(s.Every)
	defer t.Stop()
	for {
		var done chan error
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case done = <-s.trigger:
		}
		err := s.invoke(ctx)
		if done != nil {
			done <- err
		}
	}
}

func (s *Schedule) invoke(ctx context.Context) error {
	ev := ScheduledEvent(s.Name, time.Now())
	id := ev.ID
	ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.Timeout)
	defer cancel()
	ictx = lambdacontext.NewContext(ictx, &lambdacontext.LambdaContext{AwsRequestID: id})
	start := time.Now()
	err := s.Handler(ictx, ev)
	s.Log.Info("schedule", "target", s.Function, "ms", time.Since(start).Milliseconds(), "err", err)
	return err
}

// ScheduledEvent is the event EventBridge sends a function on a schedule rule's tick.
func ScheduledEvent(rule string, now time.Time) events.EventBridgeEvent {
	return events.EventBridgeEvent{
		Version: "0", ID: requestID(), DetailType: "Scheduled Event", Source: "aws.events",
		AccountID: "123456789012", Time: now.UTC().Truncate(time.Second), Region: "us-east-1",
		Resources: []string{"arn:aws:events:us-east-1:123456789012:rule/" + rule},
		Detail:    json.RawMessage(`{}`),
	}
}
