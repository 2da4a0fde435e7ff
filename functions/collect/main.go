// Command collect is the Collect Lambda function: wiring only, the logic is in internal/collect.
package main

import (
	"github.com/aws/aws-lambda-go/lambda"

	"minipush/internal/collect"
)

func main() {
	h := &collect.Handler{}
	lambda.Start(h.Handle)
}
