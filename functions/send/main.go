// Command send is the Send Lambda function: send batches to WeChat, exactly once per recipient (internal/send).
// Its wiring is lambdaenv.Send, shared with the local runner and the end-to-end tests.
package main

import (
	"github.com/aws/aws-lambda-go/lambda"

	"minipush/internal/lambdaenv"
)

func main() {
	lambda.Start(lambdaenv.Init("send", lambdaenv.Send).Handle)
}
