// Command collect is the Collect Lambda function: sessions, grant uploads and WeChat's message push (internal/collect).
// Its wiring is lambdaenv.Collect, shared with the local runner and the end-to-end tests.
package main

import (
	"github.com/aws/aws-lambda-go/lambda"

	"minipush/internal/lambdaenv"
)

func main() {
	lambda.Start(lambdaenv.Init("collect", lambdaenv.Collect).Handle)
}
