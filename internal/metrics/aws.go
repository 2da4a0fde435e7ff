package metrics

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go/middleware"
)

// SDKThrottles counts, as Throttles by Service, every attempt an AWS service refused
// for capacity, including those the SDK retried and the caller never saw. It sits just
// inside the SDK's retry loop, so each attempt passes through it. Use it as an
// APIOptions entry of the clients' aws.Config:
//
//	cfg.APIOptions = append(cfg.APIOptions, metrics.SDKThrottles)
//
// It records into the invocation's Recorder (FromContext); outside an invocation it
// does nothing.
func SDKThrottles(stack *middleware.Stack) error {
	return stack.Finalize.Insert(middleware.FinalizeMiddlewareFunc("minipushThrottles", countThrottle), "Retry", middleware.After)
}

func countThrottle(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
	out, md, err := next.HandleFinalize(ctx, in)
	if err != nil {
		if rec := FromContext(ctx); rec != nil && retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err) == aws.TrueTernary {
			rec.Add(Throttles, 1, Dim{"Service", awsmiddleware.GetServiceID(ctx)})
		}
	}
	return out, md, err
}
