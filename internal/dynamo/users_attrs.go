package dynamo

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"minipush"
)

// UserAttrs are the attributes operators segment on, and the user's opt-out. They live
// on the user item (pk = minipush.UserKey) as region (S), industry (S), tags (SS) and
// optOut (BOOL), next to login data and grant inventory that they never touch.
type UserAttrs struct {
	OpenID   string   `json:"openId"`
	Region   string   `json:"region,omitempty"`
	Industry string   `json:"industry,omitempty"`
	Tags     []string `json:"tags,omitempty"`
	OptOut   bool     `json:"optOut"`
}

// importParallelism bounds concurrent UpdateItems of one import.
const importParallelism = 16

// PutUserAttrs replaces a user's attributes and opt-out, creating the user item when
// the operator knows the user before their first login. Empty region, industry or tags
// remove the attribute (a DynamoDB set cannot be empty). Login data and inventory are
// left alone, which is why this is an UpdateItem and imports cannot use BatchWriteItem.
func (d *DB) PutUserAttrs(ctx context.Context, appID string, a UserAttrs) error {
	now := d.Now().Unix()
	upd := expression.Set(expression.Name("appId"), expression.Value(appID)).
		Set(expression.Name("openId"), expression.Value(a.OpenID)).
		Set(expression.Name("optOut"), expression.Value(a.OptOut)).
		Set(expression.Name("createdAt"), expression.IfNotExists(expression.Name("createdAt"), expression.Value(now)))
	str := func(name, v string) {
		if v == "" {
			upd = upd.Remove(expression.Name(name))
		} else {
			upd = upd.Set(expression.Name(name), expression.Value(v))
		}
	}
	str("region", a.Region)
	str("industry", a.Industry)
	if tags := slices.Compact(slices.Sorted(slices.Values(a.Tags))); len(tags) > 0 {
		upd = upd.Set(expression.Name("tags"), expression.Value(stringSet(tags)))
	} else {
		upd = upd.Remove(expression.Name("tags"))
	}
	expr, err := expression.NewBuilder().WithUpdate(upd).Build()
	if err != nil {
		return fmt.Errorf("dynamo: user attrs expression: %w", err)
	}
	_, err = d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(d.Tables.Users), Key: pkKey(minipush.UserKey(appID, a.OpenID)),
		UpdateExpression: expr.Update(), ExpressionAttributeNames: expr.Names(), ExpressionAttributeValues: expr.Values(),
	})
	if err != nil {
		return fmt.Errorf("dynamo: put attributes of a user of %s: %w", appID, err)
	}
	return nil
}

// ImportUserAttrs is PutUserAttrs for many users, with bounded parallelism. It stops at
// the first error; users written before it stay written (each write is a whole-user
// replacement, so re-running the import is safe).
func (d *DB) ImportUserAttrs(ctx context.Context, appID string, users []UserAttrs) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	sem := make(chan struct{}, importParallelism)
	for _, u := range users {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := d.PutUserAttrs(ctx, appID, u); err != nil {
				cancel(err)
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return nil
}

// stringSet marshals as a DynamoDB string set (SS) rather than a list, so the planner's
// segment filter can use contains(tags, :t).
type stringSet []string

// MarshalDynamoDBAttributeValue implements attributevalue.Marshaler.
func (s stringSet) MarshalDynamoDBAttributeValue() (types.AttributeValue, error) {
	return &types.AttributeValueMemberSS{Value: s}, nil
}
