// Command send is the Send Lambda function: wiring only, the logic is in internal/send.
package main

import (
	"github.com/aws/aws-lambda-go/lambda"

	"minipush/internal/send"
)

func main() {
	h := &send.Handler{}
	lambda.Start(h.Handle)
}
