// Command plan is the Plan Lambda function: wiring only, the logic is in internal/plan.
package main

import (
	"github.com/aws/aws-lambda-go/lambda"

	"minipush/internal/plan"
)

func main() {
	h := &plan.Handler{}
	lambda.Start(h.Handle)
}
