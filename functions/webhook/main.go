// Command webhook is the Webhook Lambda function: posts apps' events from the webhook
// queue to their operators' URLs, signed, and publishes the daily digests
// (webhook.Handler). Its wiring is lambdaenv.Webhook, shared with the local runner.
package main

import (
	"github.com/aws/aws-lambda-go/lambda"

	"minipush/internal/lambdaenv"
)

func main() {
	lambda.Start(lambdaenv.Init("webhook", lambdaenv.Webhook).Invoke)
}
