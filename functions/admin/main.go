// Command admin is the Admin Lambda function: wiring only, the logic is in internal/admin.
package main

import (
	"github.com/aws/aws-lambda-go/lambda"

	"minipush/internal/admin"
)

func main() {
	h := &admin.Handler{}
	lambda.Start(h.Handle)
}
