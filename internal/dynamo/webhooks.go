package dynamo

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"minipush"
)

// Webhooks live in the state table:
//
//	webhook  pk = "webhooks"                  sk = "<appId>"
//	         url, secret, updatedAt, lastStatus, lastAttemptAt, lastSuccessAt, lastError, failures
//	digest   pk = "webhookdigest#<appId>"     sk = "<YYYY-MM-DD>" (UTC)
//	         runs (ADD), f_<reason> (ADD), eventIds (string set), sent, expiresAt = day + 30 days
//
// All webhooks share one partition so the digest lists them with one Query; there are
// as many items as apps, and each is written once per delivery attempt, far below a
// partition's limits.
const (
	webhooksPK      = "webhooks"
	digestRetention = 30 * 24 * time.Hour
)

type webhookItem struct {
	PK            string `dynamodbav:"pk"`
	SK            string `dynamodbav:"sk"`
	URL           string `dynamodbav:"url"`
	Secret        string `dynamodbav:"secret"`
	UpdatedAt     int64  `dynamodbav:"updatedAt"`
	LastStatus    int    `dynamodbav:"lastStatus"`
	LastAttemptAt int64  `dynamodbav:"lastAttemptAt"`
	LastSuccessAt int64  `dynamodbav:"lastSuccessAt"`
	LastError     string `dynamodbav:"lastError"`
	Failures      int    `dynamodbav:"failures"`
}

func (it webhookItem) webhook() minipush.Webhook {
	return minipush.Webhook{
		AppID: it.SK, URL: it.URL, Secret: it.Secret, UpdatedAt: fromEpoch(it.UpdatedAt),
		LastStatus: it.LastStatus, LastAttemptAt: fromEpoch(it.LastAttemptAt), LastSuccessAt: fromEpoch(it.LastSuccessAt),
		LastError: it.LastError, Failures: it.Failures,
	}
}

func webhookKey(appID string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{"pk": strAV(webhooksPK), "sk": strAV(appID)}
}

// PutWebhook sets an app's webhook URL and secret, starting its delivery health afresh.
func (d *DB) PutWebhook(ctx context.Context, w minipush.Webhook) error {
	item, err := attributevalue.MarshalMap(webhookItem{PK: webhooksPK, SK: w.AppID, URL: w.URL, Secret: w.Secret, UpdatedAt: epoch(w.UpdatedAt)})
	if err != nil {
		return fmt.Errorf("dynamo: encode webhook: %w", err)
	}
	if _, err := d.Client.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(d.Tables.State), Item: item}); err != nil {
		return fmt.Errorf("dynamo: put webhook of %s: %w", w.AppID, err)
	}
	return nil
}

// GetWebhook returns an app's webhook, ENOTFOUND when none is set.
func (d *DB) GetWebhook(ctx context.Context, appID string) (minipush.Webhook, error) {
	out, err := d.Client.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(d.Tables.State), Key: webhookKey(appID), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return minipush.Webhook{}, fmt.Errorf("dynamo: get webhook of %s: %w", appID, err)
	}
	if out.Item == nil {
		return minipush.Webhook{}, minipush.Errorf(minipush.ENOTFOUND, "app %s has no webhook", appID)
	}
	var it webhookItem
	if err := attributevalue.UnmarshalMap(out.Item, &it); err != nil {
		return minipush.Webhook{}, fmt.Errorf("dynamo: decode webhook: %w", err)
	}
	return it.webhook(), nil
}

// ListWebhooks returns every app's webhook.
func (d *DB) ListWebhooks(ctx context.Context) ([]minipush.Webhook, error) {
	var out []minipush.Webhook
	p := dynamodb.NewQueryPaginator(d.Client, &dynamodb.QueryInput{
		TableName: aws.String(d.Tables.State), KeyConditionExpression: aws.String("pk = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": strAV(webhooksPK)}, ConsistentRead: aws.Bool(true),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("dynamo: list webhooks: %w", err)
		}
		var items []webhookItem
		if err := attributevalue.UnmarshalListOfMaps(page.Items, &items); err != nil {
			return nil, fmt.Errorf("dynamo: decode webhooks: %w", err)
		}
		for _, it := range items {
			out = append(out, it.webhook())
		}
	}
	return out, nil
}

// RecordWebhookAttempt keeps one delivery attempt's outcome: an empty errMsg is a
// success (failures back to 0), anything else counts one more failure in a row. The
// webhook must exist (one removed meanwhile is not recreated without its URL).
func (d *DB) RecordWebhookAttempt(ctx context.Context, appID string, status int, errMsg string, at time.Time) error {
	vals := map[string]types.AttributeValue{":s": numAV(int64(status)), ":at": numAV(epoch(at)), ":e": strAV(errMsg)}
	update := "SET lastStatus = :s, lastAttemptAt = :at, lastError = :e"
	if errMsg == "" {
		update += ", lastSuccessAt = :at, failures = :zero"
		vals[":zero"] = numAV(0)
	} else {
		update += " ADD failures :one"
		vals[":one"] = numAV(1)
	}
	_, err := d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(d.Tables.State), Key: webhookKey(appID), UpdateExpression: aws.String(update),
		ConditionExpression: aws.String("attribute_exists(pk)"), ExpressionAttributeValues: vals,
	})
	if err != nil {
		if minipush.ErrorCode(conflict(err, "no webhook")) == minipush.ECONFLICT {
			return nil // removed meanwhile: nothing to record on
		}
		return fmt.Errorf("dynamo: record webhook attempt of %s: %w", appID, err)
	}
	return nil
}

func digestKey(appID, day string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{"pk": strAV("webhookdigest#" + appID), "sk": strAV(day)}
}

// AddDigestRun adds a finished run's failures by reason to the app's digest of day,
// once per eventID: the event is delivered at least once, so a replay changes nothing.
func (d *DB) AddDigestRun(ctx context.Context, appID, day, eventID string, failures map[string]int) error {
	dayStart, err := time.Parse(time.DateOnly, day)
	if err != nil {
		return fmt.Errorf("dynamo: digest day %q: %w", day, err)
	}
	update := "SET expiresAt = :ttl ADD runs :one, eventIds :id"
	names := map[string]string{}
	vals := map[string]types.AttributeValue{
		":ttl": numAV(RetentionExpiry(dayStart, digestRetention)), ":one": numAV(1),
		":id": &types.AttributeValueMemberSS{Value: []string{eventID}}, ":idv": strAV(eventID),
	}
	i := 0
	for reason, n := range failures {
		if n == 0 {
			continue
		}
		names[fmt.Sprintf("#f%d", i)] = "f_" + reason
		vals[fmt.Sprintf(":f%d", i)] = numAV(int64(n))
		update += fmt.Sprintf(", #f%d :f%d", i, i)
		i++
	}
	in := &dynamodb.UpdateItemInput{
		TableName: aws.String(d.Tables.State), Key: digestKey(appID, day), UpdateExpression: aws.String(update),
		ConditionExpression: aws.String("NOT contains(eventIds, :idv)"), ExpressionAttributeValues: vals,
	}
	if len(names) > 0 {
		in.ExpressionAttributeNames = names
	}
	if _, err = d.Client.UpdateItem(ctx, in); err != nil {
		if minipush.ErrorCode(conflict(err, "run already in digest")) == minipush.ECONFLICT {
			return nil // a redelivered done event: counted already
		}
		return fmt.Errorf("dynamo: add run to digest of %s: %w", appID, err)
	}
	return nil
}

// ClaimDigest marks the app's digest of day sent (creating it empty if no run finished
// that day) and returns its counts; ok is false if it was claimed before.
func (d *DB) ClaimDigest(ctx context.Context, appID, day string) (int, map[string]int, bool, error) {
	dayStart, err := time.Parse(time.DateOnly, day)
	if err != nil {
		return 0, nil, false, fmt.Errorf("dynamo: digest day %q: %w", day, err)
	}
	out, err := d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(d.Tables.State), Key: digestKey(appID, day),
		UpdateExpression:    aws.String("SET sent = :t, expiresAt = :ttl"),
		ConditionExpression: aws.String("attribute_not_exists(sent)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":t": &types.AttributeValueMemberBOOL{Value: true}, ":ttl": numAV(RetentionExpiry(dayStart, digestRetention)),
		},
		ReturnValues: types.ReturnValueAllNew,
	})
	if err != nil {
		if minipush.ErrorCode(conflict(err, "digest claimed")) == minipush.ECONFLICT {
			return 0, nil, false, nil
		}
		return 0, nil, false, fmt.Errorf("dynamo: claim digest of %s: %w", appID, err)
	}
	failures := map[string]int{}
	for k, v := range out.Attributes {
		if reason, ok := strings.CutPrefix(k, "f_"); ok {
			failures[reason] = intAttr(v)
		}
	}
	return intAttr(out.Attributes["runs"]), failures, true, nil
}
