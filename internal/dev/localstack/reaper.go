package localstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"minipush/internal/dev/samtemplate"
	"minipush/internal/logs"
)

// ReaperAPI is the part of the DynamoDB API a Reaper uses; *dynamodb.Client satisfies it.
type ReaperAPI interface {
	Scan(ctx context.Context, in *dynamodb.ScanInput, optFns ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error)
	DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
}

// ttlMaxAge mirrors DynamoDB TTL, which ignores items whose expiry is more than five
// years in the past (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/time-to-live-ttl-before-you-start.html).
const ttlMaxAge = 5 * 365 * 24 * time.Hour

// Reaper is the local stand-in for DynamoDB's TTL service, which DynamoDB Local lacks
// (it accepts TTL settings but never deletes). For every table whose template declares
// an enabled TimeToLiveSpecification it deletes the items whose TTL attribute (epoch
// seconds, a number) is at or before now, which puts the same REMOVE records on the
// table's stream that TTL deletions put there in the cloud. It differs from the cloud
// in two ways worth knowing: it deletes as soon as it runs (AWS lags up to a few days),
// and DynamoDB Local cannot stamp its REMOVE records with the TTL service's
// userIdentity, so consumers must tell expiry from other deletions by the old image.
type Reaper struct {
	db     ReaperAPI
	tables []reapTable
	now    func() time.Time
}

type reapTable struct {
	logicalID, name, ttlAttr string
	keys                     []string
}

// NewReaper returns a reaper of the tables of tpl provisioned as res, judging expiry by
// now (a test's clock, or time.Now).
func NewReaper(db ReaperAPI, tpl *samtemplate.Template, res *Resources, now func() time.Time) *Reaper {
	r := &Reaper{db: db, now: now}
	ids := make([]string, 0, len(tpl.Tables))
	for id := range tpl.Tables {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		t := tpl.Tables[id]
		name, ok := res.Tables[id]
		if !ok || t.TimeToLiveSpecification == nil || !t.TimeToLiveSpecification.Enabled || t.TimeToLiveSpecification.AttributeName == "" {
			continue
		}
		rt := reapTable{logicalID: id, name: name, ttlAttr: t.TimeToLiveSpecification.AttributeName}
		for _, k := range t.KeySchema {
			rt.keys = append(rt.keys, k.AttributeName)
		}
		r.tables = append(r.tables, rt)
	}
	return r
}

// RunOnce makes one pass over every TTL table and returns how many items it deleted.
// Each delete is conditioned on the TTL attribute still holding the value read, so an
// item whose expiry was extended meanwhile survives, as it would under AWS TTL. It
// keeps going after a failing table and returns the failures joined.
func (r *Reaper) RunOnce(ctx context.Context) (deleted int, err error) {
	var errs []error
	for _, t := range r.tables {
		n, err := r.reap(ctx, t)
		deleted += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	return deleted, errors.Join(errs...)
}

func (r *Reaper) reap(ctx context.Context, t reapTable) (int, error) {
	now := r.now()
	names := map[string]string{"#ttl": t.ttlAttr}
	proj := "#ttl"
	for i, k := range t.keys {
		alias := "#k" + strconv.Itoa(i)
		names[alias] = k
		proj += ", " + alias
	}
	p := dynamodb.NewScanPaginator(r.db, &dynamodb.ScanInput{
		TableName:                aws.String(t.name),
		ProjectionExpression:     aws.String(proj),
		FilterExpression:         aws.String("#ttl BETWEEN :oldest AND :now"),
		ExpressionAttributeNames: names,
		ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{
			":oldest": &ddbtypes.AttributeValueMemberN{Value: strconv.FormatInt(now.Add(-ttlMaxAge).Unix(), 10)},
			":now":    &ddbtypes.AttributeValueMemberN{Value: strconv.FormatInt(now.Unix(), 10)},
		},
		ConsistentRead: aws.Bool(true),
	})
	deleted := 0
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return deleted, fmt.Errorf("localstack: reaper: scan %s: %w", t.logicalID, err)
		}
		for _, item := range page.Items {
			ttl, ok := item[t.ttlAttr].(*ddbtypes.AttributeValueMemberN)
			if !ok {
				continue // TTL ignores non-number values; the filter already does too
			}
			key := make(map[string]ddbtypes.AttributeValue, len(t.keys))
			for _, k := range t.keys {
				key[k] = item[k]
			}
			_, err := r.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{
				TableName:                 aws.String(t.name),
				Key:                       key,
				ConditionExpression:       aws.String("#ttl = :read"),
				ExpressionAttributeNames:  map[string]string{"#ttl": t.ttlAttr},
				ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{":read": ttl},
			})
			var ccf *ddbtypes.ConditionalCheckFailedException
			switch {
			case errors.As(err, &ccf):
				// Changed or gone since the scan: not expired any more, or someone else's delete.
			case err != nil:
				return deleted, fmt.Errorf("localstack: reaper: delete from %s: %w", t.logicalID, err)
			default:
				deleted++
			}
		}
	}
	return deleted, nil
}

// Run calls RunOnce now and then every interval until ctx ends, logging what it deleted
// and any failure (a failed pass is retried on the next tick).
func (r *Reaper) Run(ctx context.Context, every time.Duration, log *slog.Logger) {
	log = logs.Or(log)
	if every <= 0 {
		every = time.Minute
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		n, err := r.RunOnce(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("ttl reaper pass failed", "deleted", n, "err", err)
		case n > 0:
			log.Info("ttl reaper deleted expired items", "deleted", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
