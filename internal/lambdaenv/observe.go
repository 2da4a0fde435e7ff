package lambdaenv

import (
	"context"

	"github.com/aws/smithy-go/middleware"
)

// Observer is a dev-only look into a function's wiring: the IAM coverage test
// (internal/dev/iamcheck) sees through it every AWS call and every secret a function
// uses, to check them against the function's policy in template.yaml. Nothing in Lambda
// sets one; without it the wiring is exactly what ships.
type Observer struct {
	// APIOptions are added to the function's AWS config, so every client built from it
	// (DynamoDB, its streams, SQS, Secrets Manager) runs them as SDK middleware.
	APIOptions []func(*middleware.Stack) error
	// Secret, when set, is told the ARN of every secret the function reads, local:
	// ones included: those never reach Secrets Manager, so no middleware sees them.
	Secret func(arn string)
}

type observerKey struct{}

// WithObserver returns ctx carrying o: a function built under it (Builders, or Collect,
// Send, … with that ctx) is observed by o. The local runner sets one per function.
func WithObserver(ctx context.Context, o Observer) context.Context {
	return context.WithValue(ctx, observerKey{}, o)
}

// observerOf returns the Observer ctx carries; the zero Observer observes nothing.
func observerOf(ctx context.Context) Observer {
	o, _ := ctx.Value(observerKey{}).(Observer)
	return o
}
