package localstack_test

import (
	"testing"

	"minipush/internal/dev/localrun"
	"minipush/internal/dev/testenv"
	"minipush/internal/lambdaenv"
)

// TestTemplateSyncWired: the template registry's daily sync is a Schedule event of
// AdminFunction, rate(1 day), which the local runner can emulate (ParseRate), and the
// admin builder's handler takes raw events, so the same function serves that schedule
// and the HTTP API in Lambda and in the runner.
func TestTemplateSyncWired(t *testing.T) {
	t.Parallel()
	f := testenv.Template(t).Functions["AdminFunction"]
	ev := f.Events["TemplateSync"]
	if ev == nil || ev.Schedule == nil || ev.Schedule.Expression() != "rate(1 day)" {
		t.Fatalf("AdminFunction's TemplateSync event %+v: want a Schedule rate(1 day)", ev)
	}
	if every, err := localrun.ParseRate(ev.Schedule.Expression()); err != nil || every.Hours() != 24 {
		t.Fatalf("local runner reads %q as %v, %v", ev.Schedule.Expression(), every, err)
	}
	if f.Events["Admin"] == nil || f.Events["Admin"].HTTPAPI == nil {
		t.Fatal("AdminFunction lost its HTTP API route")
	}
	if _, ok := lambdaenv.Builders()["AdminFunction"]; !ok {
		t.Fatal("no builder for AdminFunction")
	}
}
