// Command deadletter is the DeadLetter Lambda function: it ends the recipients of send
// batches that reached the dead-letter queue. Wiring only; the logic is send.DeadLetter.
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
	h, err := send.DeadLetterFromEnv(context.Background(), os.Getenv)
	if err != nil {
		log.Error("deadletter: init failed", "error", err.Error())
		os.Exit(1)
	}
	h.Log = log
	lambda.Start(h.Handle)
}
