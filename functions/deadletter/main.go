// Command deadletter is the DeadLetter Lambda function: ends the recipients of send batches that reached the dead-letter queue (send.DeadLetter).
// Its wiring is lambdaenv.DeadLetter, shared with the local runner and the end-to-end tests.
package main

import (
	"github.com/aws/aws-lambda-go/lambda"

	"minipush/internal/lambdaenv"
)

func main() {
	lambda.Start(lambdaenv.Init("deadletter", lambdaenv.DeadLetter).Handle)
}
