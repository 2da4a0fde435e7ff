package dynamo

import (
	"errors"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Throttled reports whether err is DynamoDB refusing a request for capacity (after the
// SDK's own retries): a transient condition that a caller should answer with "retry
// later" rather than as a failure of its own. A transaction cancelled because one of
// its items was throttled counts too.
func Throttled(err error) bool {
	var (
		pte *types.ProvisionedThroughputExceededException
		rle *types.RequestLimitExceeded
		te  *types.ThrottlingException
		tce *types.TransactionCanceledException
	)
	switch {
	case errors.As(err, &pte), errors.As(err, &rle), errors.As(err, &te):
		return true
	case errors.As(err, &tce):
		for _, r := range tce.CancellationReasons {
			if aws.ToString(r.Code) == "ThrottlingError" {
				return true
			}
		}
	}
	return false
}
