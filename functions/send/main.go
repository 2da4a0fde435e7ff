// Command send is the Send Lambda function: wiring only, the logic is in internal/send.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"minipush/internal/send"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	h, err := send.FromEnv(context.Background(), os.Getenv)
	if err != nil {
		log.Error("send: init failed", "error", err.Error())
		os.Exit(1)
	}
	h.Log = log
	lambda.Start(h.Handle)
}
