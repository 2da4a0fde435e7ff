package dynamo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"minipush"
)

// An operator request sent with an Idempotency-Key is remembered in one state-table item:
//
//	pk = "idem#" + hex(SHA-256(key)), sk = "idem"
//	fp          S  hex SHA-256 of the request (method, path, query, body): the fingerprint
//	state       S  "pending" while the first request runs, "done" once its answer is stored
//	owner       S  the request holding a pending key (a random id per request)
//	lockUntil   N  epoch ms after which a pending key is presumed abandoned
//	status, headers, body   the stored answer (state done)
//	expiresAt   N  TTL: IdempotencyRetention after the first request
//
// The key itself is never stored (only its hash), so a key an operator derives from
// something private does not sit in the table.

// maxStoredAnswer bounds the answer body kept for replays, well under DynamoDB's 400 KB
// item limit. Larger answers are not stored (ReleaseIdempotencyKey).
const maxStoredAnswer = 256 << 10

// idempotencyItem is the stored record, as read back.
type idempotencyItem struct {
	FP        string `dynamodbav:"fp"`
	State     string `dynamodbav:"state"`
	LockUntil int64  `dynamodbav:"lockUntil"`
	ExpiresAt int64  `dynamodbav:"expiresAt"`
	Status    int    `dynamodbav:"status"`
	Headers   string `dynamodbav:"headers"`
	Body      string `dynamodbav:"body"`
}

func idempotencyKey(key string) map[string]types.AttributeValue {
	h := sha256.Sum256([]byte(key))
	return map[string]types.AttributeValue{"pk": strAV("idem#" + hex.EncodeToString(h[:])), "sk": strAV("idem")}
}

// ClaimIdempotencyKey makes owner the request running under key, unless the key is
// already known: it returns true when the caller now holds the key (first use, a key
// whose record has expired, or a pending key of the same fingerprint whose holder's lock
// ran out because it died), and otherwise false with what is stored, for the caller to
// replay it, refuse another request's fingerprint, or report one still in flight.
// now is the caller's clock; the lock lasts until lockUntil.
func (d *DB) ClaimIdempotencyKey(ctx context.Context, key, fingerprint, owner string, now, lockUntil time.Time) (minipush.IdempotentRequest, bool, error) {
	for attempt := 0; ; attempt++ {
		item := idempotencyKey(key)
		item["fp"] = strAV(fingerprint)
		item["state"] = strAV("pending")
		item["owner"] = strAV(owner)
		item["lockUntil"] = numAV(lockUntil.UnixMilli())
		item["expiresAt"] = numAV(now.Add(minipush.IdempotencyRetention).Unix())
		_, err := d.Client.PutItem(ctx, &dynamodb.PutItemInput{
			TableName: aws.String(d.Tables.State), Item: item,
			// TTL deletes late, so an expired record counts as absent (reads never trust TTL).
			ConditionExpression: aws.String("attribute_not_exists(pk) OR expiresAt <= :nowSec OR " +
				"(#state = :pending AND lockUntil <= :nowMs AND fp = :fp)"),
			ExpressionAttributeNames: map[string]string{"#state": "state"},
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":nowSec": numAV(now.Unix()), ":nowMs": numAV(now.UnixMilli()),
				":pending": strAV("pending"), ":fp": strAV(fingerprint),
			},
		})
		if err == nil {
			return minipush.IdempotentRequest{}, true, nil
		}
		if err = conflict(err, "dynamo: claim idempotency key"); minipush.ErrorCode(err) != minipush.ECONFLICT {
			return minipush.IdempotentRequest{}, false, err
		}
		out, err := d.Client.GetItem(ctx, &dynamodb.GetItemInput{
			TableName: aws.String(d.Tables.State), Key: idempotencyKey(key), ConsistentRead: aws.Bool(true),
		})
		if err != nil {
			return minipush.IdempotentRequest{}, false, fmt.Errorf("dynamo: read idempotency key: %w", err)
		}
		var it idempotencyItem
		if err := attributevalue.UnmarshalMap(out.Item, &it); err != nil {
			return minipush.IdempotentRequest{}, false, fmt.Errorf("dynamo: decode idempotency key: %w", err)
		}
		if out.Item == nil || it.ExpiresAt <= now.Unix() ||
			(it.State == "pending" && it.LockUntil <= now.UnixMilli() && it.FP == fingerprint) {
			// Released, expired or abandoned between the put and the read: claim again.
			if attempt >= optimisticRetries {
				return minipush.IdempotentRequest{}, false, fmt.Errorf("dynamo: claim idempotency key: still contended after %d attempts", attempt+1)
			}
			continue
		}
		r := minipush.IdempotentRequest{Fingerprint: it.FP, Done: it.State == "done"}
		if r.Done {
			r.Answer = minipush.IdempotentAnswer{Status: it.Status, Body: it.Body}
			if it.Headers != "" {
				if err := json.Unmarshal([]byte(it.Headers), &r.Answer.Headers); err != nil {
					return minipush.IdempotentRequest{}, false, fmt.Errorf("dynamo: decode stored answer headers: %w", err)
				}
			}
		}
		return r, false, nil
	}
}

// FinishIdempotencyKey stores the answer of the request owner ran under key, for replays
// until the record expires. ECONFLICT when owner no longer holds the key (its lock ran
// out and a retry took it over); ETOOLARGE when the answer is too big to keep, in which
// case the caller should release the key instead.
func (d *DB) FinishIdempotencyKey(ctx context.Context, key, owner string, a minipush.IdempotentAnswer) error {
	if len(a.Body) > maxStoredAnswer {
		return minipush.Errorf(minipush.ETOOLARGE, "answer of %d bytes is too large to keep for replays", len(a.Body))
	}
	headers, err := json.Marshal(a.Headers)
	if err != nil {
		return fmt.Errorf("dynamo: encode answer headers: %w", err)
	}
	_, err = d.Client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(d.Tables.State), Key: idempotencyKey(key),
		ConditionExpression:      aws.String("#state = :pending AND #owner = :owner"),
		UpdateExpression:         aws.String("SET #state = :done, #status = :status, headers = :headers, body = :body REMOVE lockUntil"),
		ExpressionAttributeNames: map[string]string{"#state": "state", "#owner": "owner", "#status": "status"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pending": strAV("pending"), ":owner": strAV(owner), ":done": strAV("done"),
			":status": numAV(int64(a.Status)), ":headers": strAV(string(headers)), ":body": strAV(a.Body),
		},
	})
	if err != nil {
		return conflict(err, "dynamo: store the answer of an idempotency key")
	}
	return nil
}

// ReleaseIdempotencyKey forgets a key owner holds without an answer (the request failed
// in a way a retry may fix), so the retry runs at once instead of getting 409 until the
// lock runs out. A key owner no longer holds is left alone.
func (d *DB) ReleaseIdempotencyKey(ctx context.Context, key, owner string) error {
	_, err := d.Client.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName: aws.String(d.Tables.State), Key: idempotencyKey(key),
		ConditionExpression:      aws.String("#state = :pending AND #owner = :owner"),
		ExpressionAttributeNames: map[string]string{"#state": "state", "#owner": "owner"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pending": strAV("pending"), ":owner": strAV(owner),
		},
	})
	return ignoreConflict(err, "dynamo: release idempotency key")
}
