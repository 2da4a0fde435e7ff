// Command collect is the Collect Lambda function: wiring only, the logic is in internal/collect.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"minipush/internal/collect"
)

func main() {
	h, err := collect.FromEnv(context.Background(), os.Getenv)
	if err != nil {
		slog.New(slog.NewJSONHandler(os.Stderr, nil)).Error("collect: init failed", "error", err.Error())
		os.Exit(1)
	}
	lambda.Start(h.Handle)
}
