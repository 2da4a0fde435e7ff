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

// The template registry lives in the state table under one partition per app,
// pk = tpl#<appId>: an item per template (sk = t#<priTmplId>) and one item saying when
// the app was last synced (sk = synced). An app has at most a few dozen private
// templates, so one Query reads its registry, and one GetItem the template a campaign
// names. Nothing here expires: the registry is replaced by each sync, not aged out.
const (
	templatePrefix = "tpl#"
	templateSK     = "t#"
	templateSynced = "synced"
)

// templateItem is a template's item; Fields are stored as a list of maps.
type templateItem struct {
	PK       string                   `dynamodbav:"pk"`
	SK       string                   `dynamodbav:"sk"`
	AppID    string                   `dynamodbav:"appId"`
	ID       string                   `dynamodbav:"priTmplId"`
	Title    string                   `dynamodbav:"title"`
	Content  string                   `dynamodbav:"content"`
	Example  string                   `dynamodbav:"example,omitempty"`
	Type     int                      `dynamodbav:"type"`
	Fields   []minipush.TemplateField `dynamodbav:"fields"`
	SyncedAt int64                    `dynamodbav:"syncedAt"`
}

func templateKey(appID, sk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{"pk": strAV(templatePrefix + appID), "sk": strAV(sk)}
}

func (it templateItem) template() minipush.Template {
	fields := it.Fields
	if fields == nil {
		fields = []minipush.TemplateField{}
	}
	return minipush.Template{
		AppID: it.AppID, ID: it.ID, Title: it.Title, Content: it.Content, Example: it.Example,
		Type: it.Type, Fields: fields, SyncedAt: fromEpoch(it.SyncedAt),
	}
}

// Templates reads an app's registry: its templates (ordered by id) and when it was last
// synced (zero if never).
func (d *DB) Templates(ctx context.Context, appID string) (minipush.TemplateRegistry, error) {
	reg := minipush.TemplateRegistry{AppID: appID, Templates: []minipush.Template{}}
	p := dynamodb.NewQueryPaginator(d.Client, &dynamodb.QueryInput{
		TableName:                 aws.String(d.Tables.State),
		KeyConditionExpression:    aws.String("pk = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": strAV(templatePrefix + appID)},
		ConsistentRead:            aws.Bool(true),
	})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return minipush.TemplateRegistry{}, fmt.Errorf("dynamo: read templates of %s: %w", appID, err)
		}
		for _, item := range out.Items {
			var it templateItem
			if err := attributevalue.UnmarshalMap(item, &it); err != nil {
				return minipush.TemplateRegistry{}, fmt.Errorf("dynamo: decode template of %s: %w", appID, err)
			}
			switch {
			case it.SK == templateSynced:
				reg.SyncedAt = fromEpoch(it.SyncedAt)
			case strings.HasPrefix(it.SK, templateSK):
				reg.Templates = append(reg.Templates, it.template())
			}
		}
	}
	return reg, nil
}

// Template reads one template of an app. A template the registry lacks is ENOTFOUND;
// TemplatesSyncedAt then tells whether that proves the app has no such template.
func (d *DB) Template(ctx context.Context, appID, id string) (minipush.Template, error) {
	out, err := d.Client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(d.Tables.State), Key: templateKey(appID, templateSK+id), ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return minipush.Template{}, fmt.Errorf("dynamo: get template %s of %s: %w", id, appID, err)
	}
	if out.Item == nil {
		return minipush.Template{}, minipush.Errorf(minipush.ENOTFOUND, "app %s has no template %s in the registry", appID, id)
	}
	var it templateItem
	if err := attributevalue.UnmarshalMap(out.Item, &it); err != nil {
		return minipush.Template{}, fmt.Errorf("dynamo: decode template %s of %s: %w", id, appID, err)
	}
	return it.template(), nil
}

// TemplatesSyncedAt is when an app's registry was last synced; zero if never.
func (d *DB) TemplatesSyncedAt(ctx context.Context, appID string) (time.Time, error) {
	out, err := d.Client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(d.Tables.State), Key: templateKey(appID, templateSynced), ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("dynamo: get template sync of %s: %w", appID, err)
	}
	var it templateItem
	if err := attributevalue.UnmarshalMap(out.Item, &it); err != nil {
		return time.Time{}, fmt.Errorf("dynamo: decode template sync of %s: %w", appID, err)
	}
	return fromEpoch(it.SyncedAt), nil
}

// ReplaceTemplates makes an app's registry hold exactly templates (what WeChat listed
// at syncedAt) and answers what changed (minipush.DiffTemplates). Only added and
// changed templates are written and removed ones deleted; the synced item is written
// last, so a sync that fails half-way leaves the previous sync time and the next sync
// finishes the job. Two syncs at once write the same WeChat answer, so they cannot
// disagree for longer than the later one takes.
func (d *DB) ReplaceTemplates(ctx context.Context, appID string, templates []minipush.Template, syncedAt time.Time) (minipush.TemplateSync, error) {
	before, err := d.Templates(ctx, appID)
	if err != nil {
		return minipush.TemplateSync{}, err
	}
	added, changed, removed := minipush.DiffTemplates(before.Templates, templates)
	write := map[string]bool{}
	for _, id := range append(append([]string{}, added...), changed...) {
		write[id] = true
	}
	sync := minipush.TemplateSync{AppID: appID, SyncedAt: syncedAt, Templates: make([]minipush.Template, 0, len(templates)),
		Added: added, Changed: changed, Removed: removed}
	unchanged := map[string]minipush.Template{}
	for _, t := range before.Templates {
		unchanged[t.ID] = t
	}
	for _, t := range templates {
		t.AppID = appID
		if !write[t.ID] {
			// Unchanged: keep the stored version and the time it was first read.
			sync.Templates = append(sync.Templates, unchanged[t.ID])
			continue
		}
		t.SyncedAt = syncedAt
		item, err := attributevalue.MarshalMap(templateItem{
			PK: templatePrefix + appID, SK: templateSK + t.ID, AppID: appID, ID: t.ID, Title: t.Title,
			Content: t.Content, Example: t.Example, Type: t.Type, Fields: t.Fields, SyncedAt: epoch(syncedAt),
		})
		if err != nil {
			return minipush.TemplateSync{}, fmt.Errorf("dynamo: encode template %s of %s: %w", t.ID, appID, err)
		}
		if _, err := d.Client.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(d.Tables.State), Item: item}); err != nil {
			return minipush.TemplateSync{}, fmt.Errorf("dynamo: put template %s of %s: %w", t.ID, appID, err)
		}
		sync.Templates = append(sync.Templates, t)
	}
	for _, id := range removed {
		if _, err := d.Client.DeleteItem(ctx, &dynamodb.DeleteItemInput{
			TableName: aws.String(d.Tables.State), Key: templateKey(appID, templateSK+id),
		}); err != nil {
			return minipush.TemplateSync{}, fmt.Errorf("dynamo: delete template %s of %s: %w", id, appID, err)
		}
	}
	mark := templateKey(appID, templateSynced)
	mark["syncedAt"] = numAV(epoch(syncedAt))
	if _, err := d.Client.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(d.Tables.State), Item: mark}); err != nil {
		return minipush.TemplateSync{}, fmt.Errorf("dynamo: mark templates of %s synced: %w", appID, err)
	}
	return sync, nil
}
