// Command expire is the Expire Lambda function: grant removals into inventory and expiry counts, and their replay (internal/expire).
// Its wiring is lambdaenv.Expire, shared with the local runner and the end-to-end tests.
package main

import (
	"github.com/aws/aws-lambda-go/lambda"

	"minipush/internal/lambdaenv"
)

func main() {
	lambda.Start(lambdaenv.Init("expire", lambdaenv.Expire).Invoke)
}
