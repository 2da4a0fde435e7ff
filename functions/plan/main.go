// Command plan is the Plan Lambda function: due campaigns into send batches (internal/plan).
// Its wiring is lambdaenv.Plan, shared with the local runner and the end-to-end tests.
package main

import (
	"github.com/aws/aws-lambda-go/lambda"

	"minipush/internal/lambdaenv"
)

func main() {
	lambda.Start(lambdaenv.Init("plan", lambdaenv.Plan).Handle)
}
