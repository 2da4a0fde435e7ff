// Command plan is the Plan Lambda function: wiring only, the logic is in internal/plan.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"minipush/internal/plan"
)

func main() {
	h, err := plan.FromEnv(context.Background(), os.Getenv)
	if err != nil {
		slog.Error("plan: init", "error", err.Error())
		os.Exit(1)
	}
	lambda.Start(h.Handle)
}
