package httpapi

import (
	"errors"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// throttled reports whether err is an AWS service refusing a request for capacity,
// by the SDK's own list of throttle codes (ProvisionedThroughputExceededException,
// RequestLimitExceeded, ThrottlingException, ...). A DynamoDB transaction cancelled
// because one of its items was throttled counts too: its code names the cancellation,
// the throttle is in its reasons.
func throttled(err error) bool {
	if retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err) == aws.TrueTernary {
		return true
	}
	var tce *types.TransactionCanceledException
	if errors.As(err, &tce) {
		for _, r := range tce.CancellationReasons {
			if aws.ToString(r.Code) == "ThrottlingError" {
				return true
			}
		}
	}
	return false
}
