package dynamo

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"minipush"
)

// AbortRun ends a run whose canary showed the message is wrong, in one transaction:
// the run leaves planning with the canary as its planned count (status sending, its
// watch item written, so it is finished like any run once the canary's last recipient
// is final) and carries the reason; the campaign becomes aborted with the reason and
// leaves the due index, so nothing more is planned and a recurring campaign does not
// roll on. ECONFLICT when owner lost the plan lease or the campaign left planning (an
// operator paused or cancelled it): nothing is written then.
func (d *DB) AbortRun(ctx context.Context, campaignID string, run int, owner string, planned int, reason string, now time.Time) error {
	runUpdate := d.sendingRunUpdate(campaignID, run, owner, planned, now, ", aborted = :reason")
	runUpdate.ExpressionAttributeValues[":reason"] = strAV(reason)
	_, err := d.Client.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
		{Update: runUpdate},
		{Put: &types.Put{TableName: aws.String(d.Tables.Campaigns), Item: watchItem(campaignID, run, now)}},
		{Update: &types.Update{
			TableName: aws.String(d.Tables.Campaigns), Key: campaignKey(campaignID, "meta"),
			ConditionExpression: aws.String("#status = :planning AND runSeq = :run"),
			UpdateExpression: aws.String("SET #status = :aborted, abortedReason = :reason, updatedAt = :now " +
				"REMOVE dueShard, dueAt, nextRunAt"),
			ExpressionAttributeNames: map[string]string{"#status": "status"},
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":planning": strAV(string(minipush.StatusPlanning)), ":run": numAV(int64(run)),
				":aborted": strAV(string(minipush.StatusAborted)), ":reason": strAV(reason), ":now": numAV(now.Unix()),
			},
		}},
	}})
	if err == nil {
		return nil
	}
	if transactionLost(err) {
		return minipush.Errorf(minipush.ECONFLICT, "run %s#%d: plan lease lost or campaign moved; not aborted", campaignID, run)
	}
	return fmt.Errorf("dynamo: abort run %s#%d: %w", campaignID, run, err)
}

// AudienceSize counts a list campaign's audience: a Query of its keys with Select
// COUNT, 1 MB of keys (tens of thousands of openids) a page, so a canary can be sized
// without reading the audience itself.
func (d *DB) AudienceSize(ctx context.Context, campaignID string) (int, error) {
	p := dynamodb.NewQueryPaginator(d.Client, &dynamodb.QueryInput{
		TableName:                 aws.String(d.Tables.Audience),
		KeyConditionExpression:    aws.String("pk = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": strAV(campaignID)},
		Select:                    types.SelectCount,
	})
	n := 0
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return 0, fmt.Errorf("dynamo: audience size of %s: %w", campaignID, err)
		}
		n += int(page.Count)
	}
	return n, nil
}
