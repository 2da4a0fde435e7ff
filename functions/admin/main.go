// Command admin is the Admin Lambda function: the operator API (internal/admin).
// Its wiring is lambdaenv.Admin, shared with the local runner and the end-to-end tests.
package main

import (
	"github.com/aws/aws-lambda-go/lambda"

	"minipush/internal/lambdaenv"
)

func main() {
	lambda.Start(lambdaenv.Init("admin", lambdaenv.Admin).Invoke)
}
