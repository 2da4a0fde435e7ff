// Package functions maps the template's function logical ids to their production
// constructors, so the local runner and end-to-end tests build each function exactly as
// its main.go does in Lambda.
package functions

import (
	"context"

	"minipush/internal/admin"
	"minipush/internal/collect"
	"minipush/internal/dev/localrun"
	"minipush/internal/expire"
	"minipush/internal/plan"
	"minipush/internal/send"
)

// Builders returns the production constructors of the functions, keyed by their
// template logical ids: the runner builds each exactly as its main.go does in Lambda.
func Builders() map[string]localrun.Builder {
	return map[string]localrun.Builder{
		"CollectFunction": func(ctx context.Context, getenv func(string) string) (any, error) {
			h, err := collect.FromEnv(ctx, getenv)
			if err != nil {
				return nil, err
			}
			return h.Handle, nil
		},
		"AdminFunction": func(ctx context.Context, getenv func(string) string) (any, error) {
			h, err := admin.FromEnv(ctx, getenv)
			if err != nil {
				return nil, err
			}
			return h.Handle, nil
		},
		"PlanFunction": func(ctx context.Context, getenv func(string) string) (any, error) {
			h, err := plan.FromEnv(ctx, getenv)
			if err != nil {
				return nil, err
			}
			return h.Handle, nil
		},
		"SendFunction": func(ctx context.Context, getenv func(string) string) (any, error) {
			h, err := send.FromEnv(ctx, getenv)
			if err != nil {
				return nil, err
			}
			return h.Handle, nil
		},
		"ExpireFunction": func(ctx context.Context, getenv func(string) string) (any, error) {
			h, err := expire.FromEnv(ctx, getenv)
			if err != nil {
				return nil, err
			}
			return h.Invoke, nil // the stream and the failure queue's replay
		},
		"DeadLetterFunction": func(ctx context.Context, getenv func(string) string) (any, error) {
			h, err := send.DeadLetterFromEnv(ctx, getenv)
			if err != nil {
				return nil, err
			}
			return h.Handle, nil
		},
	}
}
