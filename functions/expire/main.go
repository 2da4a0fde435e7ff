// Command expire is the Expire Lambda function: wiring only, the logic is in internal/expire.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"minipush/internal/expire"
)

func main() {
	h, err := expire.FromEnv(context.Background(), os.Getenv)
	if err != nil {
		slog.New(slog.NewJSONHandler(os.Stderr, nil)).Error("expire: init failed", "err", err)
		os.Exit(1)
	}
	lambda.Start(h.Invoke)
}
