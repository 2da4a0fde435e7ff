package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"minipush"
	"minipush/internal/logs"
	"minipush/internal/metrics"
)

// Store is what the webhook function reads and records; *dynamo.DB implements it.
type Store interface {
	// GetWebhook returns ENOTFOUND for an app without a webhook.
	GetWebhook(ctx context.Context, appID string) (minipush.Webhook, error)
	// RecordWebhookAttempt keeps the outcome of one delivery attempt on the app's record.
	RecordWebhookAttempt(ctx context.Context, appID string, status int, errMsg string, at time.Time) error
	// ListWebhooks returns every app's webhook.
	ListWebhooks(ctx context.Context) ([]minipush.Webhook, error)
	// AddDigestRun counts a finished run's failures into its app's digest of day, once
	// per eventID.
	AddDigestRun(ctx context.Context, appID, day, eventID string, failures map[string]int) error
	// ClaimDigest marks the app's digest of day as sent and returns it; ok is false
	// when an earlier call claimed it.
	ClaimDigest(ctx context.Context, appID, day string) (runs int, failures map[string]int, ok bool, err error)
}

// VisibilityAPI is the SQS call that backs off a failed delivery
// (sqs:ChangeMessageVisibility).
type VisibilityAPI interface {
	ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error)
}

// Handler is the webhook function: it posts the queue's events to their app's URL,
// and on its schedule publishes each app's digest of the previous UTC day.
type Handler struct {
	Store Store
	// HTTP posts the events (Timeout bounds one attempt); redirects are not followed.
	HTTP *http.Client
	// Queue and QueueURL back off a failed delivery; nil Queue leaves the queue's own
	// visibility timeout.
	Queue    VisibilityAPI
	QueueURL string
	// Publisher enqueues the digests (they are delivered like any event).
	Publisher *Publisher
	// Backoff is the wait after a first failed attempt, doubled per receive up to
	// MaxBackoff (defaults 30 s and 15 min).
	Backoff, MaxBackoff time.Duration
	Now                 func() time.Time
	Log                 *slog.Logger
	Metrics             *metrics.Emitter
}

// NewHTTPClient is the client deliveries are posted with: 10 s per attempt, no redirects
// (a redirect would re-send a signed body to a URL the operator did not set).
func NewHTTPClient() *http.Client {
	return &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// Invoke is the function's entry: an SQS batch from the webhook queue, or the digest
// schedule's EventBridge event.
func (h *Handler) Invoke(ctx context.Context, raw json.RawMessage) (any, error) {
	var probe struct {
		Records    []json.RawMessage `json:"Records"`
		DetailType string            `json:"detail-type"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		return nil, fmt.Errorf("webhook: event is not JSON: %w", err)
	}
	if probe.DetailType != "" {
		return nil, h.Digest(ctx)
	}
	var ev events.SQSEvent
	if err := json.Unmarshal(raw, &ev); err != nil {
		return nil, fmt.Errorf("webhook: decode SQS event: %w", err)
	}
	return h.Handle(ctx, ev)
}

// Handle delivers each record's event; a failed delivery is reported as a batch item
// failure after its visibility is extended by the backoff, so SQS retries it later.
func (h *Handler) Handle(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	ctx, rec := h.Metrics.Start(ctx)
	defer func() { _ = rec.Flush() }()
	var resp events.SQSEventResponse
	for _, m := range ev.Records {
		if err := h.deliver(ctx, m); err != nil {
			logs.Or(h.Log).WarnContext(ctx, "webhook: delivery failed", "message_id", m.MessageId, logs.KeyErr, err)
			rec.Add(metrics.WebhookDeliveryFailures, 1)
			h.backoff(ctx, m)
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: m.MessageId})
			continue
		}
		rec.Add(metrics.WebhookDeliveries, 1)
	}
	return resp, nil
}

// deliver posts one message's event. An event of an app without a webhook, or one
// that cannot be decoded, is dropped: retrying cannot help it.
func (h *Handler) deliver(ctx context.Context, m events.SQSMessage) error {
	var ev minipush.WebhookEvent
	if err := json.Unmarshal([]byte(m.Body), &ev); err != nil || ev.AppID == "" || ev.Type == "" {
		logs.Or(h.Log).ErrorContext(ctx, "webhook: undecodable event dropped", "message_id", m.MessageId)
		return nil
	}
	if ev.Type == minipush.EventRunDone && ev.Counters != nil {
		// The digest counts runs whatever becomes of this delivery.
		if err := h.Store.AddDigestRun(ctx, ev.AppID, ev.At.UTC().Format(time.DateOnly), ev.ID, ev.Counters.Failed); err != nil {
			return fmt.Errorf("count run into digest: %w", err)
		}
	}
	wh, err := h.Store.GetWebhook(ctx, ev.AppID)
	if minipush.ErrorCode(err) == minipush.ENOTFOUND {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read webhook of %s: %w", ev.AppID, err)
	}
	status, perr := h.post(ctx, wh, ev.Type, ev.ID, []byte(m.Body))
	msg := ""
	if perr != nil {
		msg = perr.Error()
	}
	if err := h.Store.RecordWebhookAttempt(ctx, ev.AppID, status, msg, h.now()); err != nil {
		logs.Or(h.Log).ErrorContext(ctx, "webhook: attempt not recorded", logs.KeyErr, err)
	}
	return perr
}

// post sends body signed now and returns the answer's status; anything but 2xx is an
// error. The error never holds the URL (it may carry a credential in its query).
func (h *Handler) post(ctx context.Context, wh minipush.Webhook, typ, id string, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, wh.URL, bytes.NewReader(body))
	if err != nil {
		return 0, errors.New("webhook URL does not parse")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "minipush-webhook/1")
	req.Header.Set("Minipush-Event", typ)
	req.Header.Set("Minipush-Event-Id", id)
	req.Header.Set(SignatureHeader, Sign([]byte(wh.Secret), h.now(), body))
	client := h.HTTP
	if client == nil {
		client = NewHTTPClient()
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, fmt.Errorf("post: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, fmt.Errorf("endpoint answered HTTP %d", resp.StatusCode)
	}
	return resp.StatusCode, nil
}

// backoff hides a failed message for Backoff × 2^(receives-1), at most MaxBackoff, so
// a dead endpoint is retried less and less often until the redrive policy moves the
// message to the dead-letter queue.
func (h *Handler) backoff(ctx context.Context, m events.SQSMessage) {
	if h.Queue == nil || m.ReceiptHandle == "" {
		return
	}
	base, ceiling := h.Backoff, h.MaxBackoff
	if base <= 0 {
		base = 30 * time.Second
	}
	if ceiling <= 0 {
		ceiling = 15 * time.Minute
	}
	n, _ := strconv.Atoi(m.Attributes["ApproximateReceiveCount"])
	d := base
	for i := 1; i < n && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, ceiling)
	_, err := h.Queue.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl: aws.String(h.QueueURL), ReceiptHandle: aws.String(m.ReceiptHandle), VisibilityTimeout: int32(d / time.Second),
	})
	if err != nil {
		logs.Or(h.Log).WarnContext(ctx, "webhook: backoff not set", "message_id", m.MessageId, logs.KeyErr, err)
	}
}

// Digest publishes, once per app and day, the digest of the previous UTC day to every
// app with a webhook. The schedule ticks hourly, so a tick lost or failed is made up
// by the next; ClaimDigest makes the repeats harmless.
func (h *Handler) Digest(ctx context.Context) error {
	now := h.now().UTC()
	day := now.AddDate(0, 0, -1).Format(time.DateOnly)
	whs, err := h.Store.ListWebhooks(ctx)
	if err != nil {
		return fmt.Errorf("webhook: digest: %w", err)
	}
	var errs []error
	for _, wh := range whs {
		runs, failures, ok, err := h.Store.ClaimDigest(ctx, wh.AppID, day)
		if err != nil {
			errs = append(errs, fmt.Errorf("webhook: digest of %s: %w", wh.AppID, err))
			continue
		}
		if !ok {
			continue
		}
		if failures == nil {
			failures = map[string]int{}
		}
		h.Publisher.Publish(ctx, minipush.WebhookEvent{
			ID: minipush.EventDigest + ":" + wh.AppID + ":" + day, Type: minipush.EventDigest, AppID: wh.AppID, At: now,
			Day: day, Runs: runs, Failures: failures,
		})
	}
	return errors.Join(errs...)
}
