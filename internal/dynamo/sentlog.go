package dynamo

import (
	"cmp"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"golang.org/x/sync/errgroup"

	"minipush"
)

// Sent logs carry the outcome of sent messages instead of one final write each
// (issue #12: send at most 3 write units a message). A sender claims a recipient as
// ever (its delivery item, state sending, owner = the invocation), calls WeChat, and on
// success adds the recipient to its log; about once a second it writes the log, one
// item per delivery shard it touched, in that shard's partition:
//
//	pk = minipush.DeliveryPartition(run key, shard), sk = "~sent#<owner>#<seq>#<part>"
//	sent = {openid: {m: msgid, t: unix seconds}, ...}
//
// A claim whose owner's log names it is final, sent: every reader of deliveries folds
// the logs in (Deliveries, CreateDelivery's conflict, ListDeliveries, CountOutcomes),
// so redeliveries, the dead-letter handler, the operator's listing and the recount see
// what they saw when each sent message had its own final write. A final item always
// wins over a log (a claim taken over as unknown stays unknown). The claim item keeps
// state sending; nothing reads its lease once a log names it.
//
// The sender writes a log only well inside its claims' leases (send's flush), so a
// log never lands after another sender has taken the claim over as lost: whoever
// takes over reads the logs first (strongly consistent) and finds the recipient sent.
//
// '~' sorts after every character of an openid ([A-Za-z0-9_-]), so a shard's log
// items follow its deliveries and a delivery query stops before them (sk < "~").

const (
	sentLogPrefix = "~sent#"
	// deliveriesEnd bounds a shard's delivery items from above: every log item's sort
	// key starts with it, no openid does.
	deliveriesEnd = "~"
	// maxSentPerItem keeps a log item far below DynamoDB's 400 KB (an entry is about
	// 70 bytes); an invocation's second rarely puts more than a few dozen in one shard.
	maxSentPerItem = 1000
)

type sentLogItem struct {
	PK        string               `dynamodbav:"pk"`
	SK        string               `dynamodbav:"sk"`
	Sent      map[string]sentEntry `dynamodbav:"sent"`
	ExpiresAt int64                `dynamodbav:"expiresAt"`
}

type sentEntry struct {
	MsgID string `dynamodbav:"m,omitempty"`
	At    int64  `dynamodbav:"t"`
}

// RecordSent writes owner's sent log number seq: recs grouped by delivery shard, one
// item each (more past maxSentPerItem), 25 items per BatchWriteItem. Each record must
// be a claim owner holds; a (owner, seq) must not be reused. On an error some items
// may have been written: the caller may write the same records again another way (a
// final write) or in another log, as a record named twice still says one thing.
func (d *DB) RecordSent(ctx context.Context, owner string, seq int, recs []minipush.SentRecord) error {
	byPK := map[string][]minipush.SentRecord{}
	var order []string
	for _, r := range recs {
		pk := deliveryPK(r.RunKey, r.OpenID)
		if _, ok := byPK[pk]; !ok {
			order = append(order, pk)
		}
		byPK[pk] = append(byPK[pk], r)
	}
	var reqs []types.WriteRequest
	for _, pk := range order {
		for part := 0; part*maxSentPerItem < len(byPK[pk]); part++ {
			chunk := byPK[pk][part*maxSentPerItem : min((part+1)*maxSentPerItem, len(byPK[pk]))]
			it := sentLogItem{PK: pk, SK: sentLogPrefix + owner + "#" + strconv.Itoa(seq) + "#" + strconv.Itoa(part),
				Sent: make(map[string]sentEntry, len(chunk))}
			for _, r := range chunk {
				it.Sent[r.OpenID] = sentEntry{MsgID: r.MsgID, At: epoch(r.At)}
				it.ExpiresAt = max(it.ExpiresAt, epoch(r.ExpiresAt))
			}
			av, err := attributevalue.MarshalMap(it)
			if err != nil {
				return fmt.Errorf("dynamo: encode sent log: %w", err)
			}
			reqs = append(reqs, types.WriteRequest{PutRequest: &types.PutRequest{Item: av}})
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for start := 0; start < len(reqs); start += batchWriteSize {
		chunk := reqs[start:min(start+batchWriteSize, len(reqs))]
		g.Go(func() error { return d.batchWrite(gctx, d.Tables.Deliveries, chunk) })
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("dynamo: record sent log %s#%d: %w", owner, seq, err)
	}
	return nil
}

// sentLogOwner is the owner of a log item's sort key, or "" for a delivery item.
func sentLogOwner(sk string) string {
	rest, ok := strings.CutPrefix(sk, sentLogPrefix)
	if !ok {
		return ""
	}
	if i := strings.LastIndexByte(rest, '#'); i >= 0 {
		rest = rest[:i] // part
	}
	if i := strings.LastIndexByte(rest, '#'); i >= 0 {
		rest = rest[:i] // seq
	}
	return rest
}

// applySent makes a claim final as the log entry e says.
func applySent(dl *minipush.Delivery, e sentEntry) {
	dl.State, dl.Outcome, dl.MsgID, dl.UpdatedAt, dl.LeaseUntil = minipush.DeliveryFinal, minipush.OutcomeSent, e.MsgID, fromEpoch(e.At), time.Time{}
}

// foldSent makes final every claim in dls that its owner's sent log names: one
// strongly consistent Query per (shard, owner) among the claims, a few at a time, or
// one of all the shard's logs when its claims have more than foldOwners owners (a
// listing page of one shard holds claims of many invocations). Deliveries already
// final and those without an owner are left as they are.
func (d *DB) foldSent(ctx context.Context, dls []*minipush.Delivery) error {
	type group struct{ pk, owner string } // owner "" reads every owner's logs
	claims := map[string]map[string][]*minipush.Delivery{}
	for _, dl := range dls {
		if dl.State == minipush.DeliverySending && dl.Owner != "" {
			pk := deliveryPK(dl.RunKey, dl.OpenID)
			if claims[pk] == nil {
				claims[pk] = map[string][]*minipush.Delivery{}
			}
			claims[pk][dl.Owner] = append(claims[pk][dl.Owner], dl)
		}
	}
	if len(claims) == 0 {
		return nil
	}
	reads := map[group][]*minipush.Delivery{}
	for pk, owners := range claims {
		for owner, waiting := range owners {
			k := group{pk, owner}
			if len(owners) > foldOwners {
				k.owner = ""
			}
			reads[k] = append(reads[k], waiting...)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(countParallelism)
	for k, waiting := range reads {
		g.Go(func() error {
			prefix := sentLogPrefix
			if k.owner != "" {
				prefix += k.owner + "#"
			}
			logs, err := d.sentLogs(gctx, k.pk, prefix)
			if err != nil {
				return err
			}
			for _, dl := range waiting {
				if e, ok := logs[sentKey{dl.Owner, dl.OpenID}]; ok {
					applySent(dl, e)
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("dynamo: read sent logs: %w", err)
	}
	return nil
}

// foldOwners is how many owners' logs foldSent reads one by one in a shard before it
// reads all of the shard's logs at once.
const foldOwners = 4

// sentKey is an entry of a sent log: its owner's record of one openid.
type sentKey struct{ owner, openID string }

// sentLogs reads the entries of the log items of partition pk whose sort keys start
// with prefix (strongly consistent), by owner and openid.
func (d *DB) sentLogs(ctx context.Context, pk, prefix string) (map[sentKey]sentEntry, error) {
	out := map[sentKey]sentEntry{}
	p := dynamodb.NewQueryPaginator(d.Client, &dynamodb.QueryInput{
		TableName:              aws.String(d.Tables.Deliveries),
		KeyConditionExpression: aws.String("pk = :pk AND begins_with(sk, :prefix)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": strAV(pk), ":prefix": strAV(prefix),
		},
		ConsistentRead: aws.Bool(true),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, item := range page.Items {
			var it sentLogItem
			if err := attributevalue.UnmarshalMap(item, &it); err != nil {
				return nil, fmt.Errorf("decode sent log: %w", err)
			}
			owner := sentLogOwner(it.SK)
			for id, e := range it.Sent {
				k := sentKey{owner, id}
				out[k] = cmp.Or(out[k], e)
			}
		}
	}
	return out, nil
}
