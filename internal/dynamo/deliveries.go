package dynamo

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"minipush"
)

// ListDeliveries returns up to limit deliveries of one run and a cursor for the next
// page ("" on the last). With an outcome it reads the sparse ByOutcome index (final
// deliveries of that outcome only); without, the run's whole partition, in openid
// order, including claims still sending. A cursor of another run or listing is
// EINVALID. One Query per page.
func (d *DB) ListDeliveries(ctx context.Context, campaignID string, run int, outcome minipush.Outcome, limit int, cursor string) ([]Delivery, string, error) {
	runKey := minipush.RunKey(campaignID, run)
	start, err := decodeCursor(cursor, "pk", runKey)
	if err != nil {
		return nil, "", err
	}
	in := &dynamodb.QueryInput{
		TableName:                 aws.String(d.Tables.Deliveries),
		KeyConditionExpression:    aws.String("pk = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": strAV(runKey)},
		Limit:                     aws.Int32(int32(clampLimit(limit))),
		ExclusiveStartKey:         start,
	}
	if outcome != "" {
		in.IndexName = aws.String(DeliveriesByOutcome)
		in.KeyConditionExpression = aws.String("pk = :pk AND outcome = :outcome")
		in.ExpressionAttributeValues[":outcome"] = strAV(string(outcome))
		if start != nil {
			if o, ok := start["outcome"].(*types.AttributeValueMemberS); !ok || o.Value != string(outcome) {
				return nil, "", minipush.Errorf(minipush.EINVALID, "cursor is not one this listing returned")
			}
		}
	} else if _, ok := start["outcome"]; ok {
		return nil, "", minipush.Errorf(minipush.EINVALID, "cursor is not one this listing returned")
	}
	out, err := d.Client.Query(ctx, in)
	if err != nil {
		return nil, "", fmt.Errorf("dynamo: list deliveries of %s: %w", runKey, err)
	}
	dls := make([]Delivery, 0, len(out.Items))
	for _, item := range out.Items {
		var it deliveryItem
		if err := attributevalue.UnmarshalMap(item, &it); err != nil {
			return nil, "", fmt.Errorf("dynamo: decode delivery: %w", err)
		}
		dls = append(dls, it.delivery())
	}
	next, err := encodeCursor(out.LastEvaluatedKey)
	return dls, next, err
}
