// Command expire is the Expire Lambda function: wiring only, the logic is in internal/expire.
package main

import (
	"github.com/aws/aws-lambda-go/lambda"

	"minipush/internal/expire"
)

func main() {
	h := &expire.Handler{}
	lambda.Start(h.Handle)
}
