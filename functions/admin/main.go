// Command admin is the Admin Lambda function: wiring only, the logic is in internal/admin.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"minipush/internal/admin"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	h, err := admin.FromEnv(context.Background(), os.Getenv)
	if err != nil {
		log.Error("admin: init failed", "error", err.Error())
		os.Exit(1)
	}
	h.Log = log
	lambda.Start(h.Handle)
}
