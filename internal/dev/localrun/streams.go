package localrun

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"minipush/internal/dev/localstack"
	"minipush/internal/expire"
	"minipush/internal/logs"
)

// StreamHandler is a function behind a DynamoDB stream event source mapping.
type StreamHandler func(context.Context, events.DynamoDBEvent) (events.DynamoDBEventResponse, error)

// StreamSource yields the records of a stream after those already returned, with their
// shards, already filtered by the mapping's patterns; an empty result means nothing new.
type StreamSource interface {
	NextInShards(ctx context.Context) ([]localstack.ShardRecord, error)
}

// StreamMappingOptions configure a StreamMapping.
type StreamMappingOptions struct {
	Function         string
	FunctionARN      string // named in failure records
	StreamARN        string
	BatchSize        int
	MaxRetries       int // -1: retry until the record expires; locally capped at localMaxRetries
	Patterns         []string
	ReportFailures   bool
	StartingPosition string
	Timeout          time.Duration
	Handler          StreamHandler
	Client           StreamsClient
	Log              *slog.Logger
	// OnFailureQueueURL, when set, is the SQS queue of the mapping's DestinationConfig
	// OnFailure: a batch given up on is recorded there, as Lambda records it, instead
	// of being dropped. OnFailureSQS sends to it.
	OnFailureQueueURL string
	OnFailureSQS      interface {
		SendMessage(ctx context.Context, in *sqs.SendMessageInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
	}
	// RetryDelay is the first retry's delay, doubling up to 32 times it; default 50 ms.
	// Tests shorten it so ten retries take milliseconds.
	RetryDelay time.Duration
	// Source overrides the stream reader (tests).
	Source StreamSource
}

// localMaxRetries bounds "retry forever" locally, where a poison record would otherwise
// block the shard until the process stops.
const localMaxRetries = 10

// StreamMapping emulates a Lambda DynamoDB stream event source mapping: records in
// order, BatchSize at a time and one shard per batch, filtered by the template's
// patterns; with ReportBatchItemFailures a batch is retried from the first failed record,
// otherwise whole, up to MaximumRetryAttempts. Then the records still failing are sent to
// the on-failure destination as Lambda's invocation record (shard, first and last
// sequence number, not the records), or without a destination dropped (logged), and the
// shard moves on. MaximumRecordAgeInSeconds is not emulated: local records are fresh.
type StreamMapping struct {
	opts    StreamMappingOptions
	src     StreamSource
	pending []localstack.ShardRecord
}

// NewStreamMapping returns a mapping reading the stream from its trim horizon.
func NewStreamMapping(opts StreamMappingOptions) (*StreamMapping, error) {
	if opts.StartingPosition != "" && opts.StartingPosition != "TRIM_HORIZON" && opts.StartingPosition != "LATEST" {
		return nil, fmt.Errorf("localrun: %s: starting position %s has no local emulation", opts.Function, opts.StartingPosition)
	}
	if opts.OnFailureQueueURL != "" && opts.OnFailureSQS == nil {
		return nil, fmt.Errorf("localrun: %s: an on-failure queue needs an SQS client", opts.Function)
	}
	src := opts.Source
	if src == nil {
		var err error
		src, err = newStreamSource(opts)
		if err != nil {
			return nil, err
		}
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 100
	}
	if opts.RetryDelay <= 0 {
		opts.RetryDelay = 50 * time.Millisecond
	}
	opts.Log = logs.Or(opts.Log)
	return &StreamMapping{opts: opts, src: src}, nil
}

// Run reads and delivers until ctx ends.
func (m *StreamMapping) Run(ctx context.Context) {
	for ctx.Err() == nil {
		if len(m.pending) < m.opts.BatchSize {
			recs, err := m.src.NextInShards(ctx)
			if err != nil {
				if ctx.Err() == nil {
					m.opts.Log.Warn("stream read failed", "target", m.opts.Function, "err", err)
					sleep(ctx, time.Second)
				}
				continue
			}
			m.pending = append(m.pending, recs...)
		}
		if len(m.pending) == 0 {
			sleep(ctx, 200*time.Millisecond)
			continue
		}
		m.deliver(ctx)
	}
}

// Drain delivers every record available now and returns when the stream has nothing
// new (tests and the demo use it to wait for expiry processing without sleeping).
func (m *StreamMapping) Drain(ctx context.Context) error {
	for {
		recs, err := m.src.NextInShards(ctx)
		if err != nil {
			return err
		}
		m.pending = append(m.pending, recs...)
		if len(m.pending) == 0 {
			return nil
		}
		for len(m.pending) > 0 && ctx.Err() == nil {
			m.deliver(ctx)
		}
	}
}

// deliver hands the next batch — up to BatchSize records of the first pending record's
// shard — to the function until it succeeds or the retries run out.
func (m *StreamMapping) deliver(ctx context.Context) {
	n := 0
	for n < min(m.opts.BatchSize, len(m.pending)) && m.pending[n].ShardID == m.pending[0].ShardID {
		n++
	}
	limit := m.opts.MaxRetries
	if limit < 0 || limit > localMaxRetries {
		limit = localMaxRetries
	}
	for attempt := 0; ; attempt++ {
		batch := m.pending[:n]
		failedFrom, requestID, fnErr := m.invoke(ctx, batch)
		if failedFrom < 0 {
			m.pending = m.pending[n:]
			return
		}
		if ctx.Err() != nil {
			return // shutting down: the records stay unprocessed, as a stopped mapping leaves them
		}
		if attempt >= limit {
			m.giveUp(ctx, batch[failedFrom:], attempt+1, requestID, fnErr)
			m.pending = m.pending[n:]
			return
		}
		// Lambda checkpoints up to the first failure and retries from there.
		m.pending = m.pending[failedFrom:]
		n -= failedFrom
		sleep(ctx, m.opts.RetryDelay<<min(attempt, 5))
	}
}

// invoke returns the index of the first record to retry (-1 when all succeeded), the
// invocation's request id and whether the function itself failed.
func (m *StreamMapping) invoke(ctx context.Context, batch []localstack.ShardRecord) (int, string, bool) {
	recs := make([]events.DynamoDBEventRecord, len(batch))
	for i, sr := range batch {
		recs[i] = sr.Record
	}
	ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.opts.Timeout)
	defer cancel()
	reqID := requestID()
	ictx = lambdacontext.NewContext(ictx, &lambdacontext.LambdaContext{AwsRequestID: reqID})
	resp, err := m.opts.Handler(ictx, events.DynamoDBEvent{Records: recs})
	if err != nil {
		m.opts.Log.Error("stream function failed", "target", m.opts.Function, "records", len(batch), "err", err)
		return 0, reqID, true
	}
	if !m.opts.ReportFailures || len(resp.BatchItemFailures) == 0 {
		return -1, reqID, false
	}
	first := -1
	for _, f := range resp.BatchItemFailures {
		idx := -1
		for i, r := range recs {
			if r.Change.SequenceNumber == f.ItemIdentifier {
				idx = i
				break
			}
		}
		if idx < 0 { // Lambda retries the whole batch on an unknown identifier
			return 0, reqID, false
		}
		if first < 0 || idx < first {
			first = idx
		}
	}
	return first, reqID, false
}

// failureRecord is the JSON Lambda sends to a stream mapping's on-failure destination.
// It is written here independently of the consumer's decoder (expire.FailureRecord), so
// a test of the pair checks the consumer against AWS's documented shape, not itself.
// https://docs.aws.amazon.com/lambda/latest/dg/services-dynamodb-errors.html
type failureRecord struct {
	RequestContext struct {
		RequestID              string `json:"requestId"`
		FunctionARN            string `json:"functionArn"`
		Condition              string `json:"condition"`
		ApproximateInvokeCount int    `json:"approximateInvokeCount"`
	} `json:"requestContext"`
	ResponseContext struct {
		StatusCode      int    `json:"statusCode"`
		ExecutedVersion string `json:"executedVersion"`
		FunctionError   string `json:"functionError,omitempty"`
	} `json:"responseContext"`
	Version   string `json:"version"`
	Timestamp string `json:"timestamp"`
	// The same record expire's replay reads back: one shape for writer and reader.
	DDBStreamBatchInfo expire.StreamBatchInfo `json:"DDBStreamBatchInfo"`
}

// giveUp records the records still failing after the last attempt at the on-failure
// destination, or logs them dropped when the mapping has none.
func (m *StreamMapping) giveUp(ctx context.Context, failing []localstack.ShardRecord, invokes int, reqID string, fnErr bool) {
	first, last := failing[0].Record, failing[len(failing)-1].Record
	if m.opts.OnFailureQueueURL == "" {
		m.opts.Log.Error("stream records dropped after retries", "target", m.opts.Function,
			"records", len(failing), "attempts", invokes)
		return
	}
	var fr failureRecord
	fr.RequestContext.RequestID = reqID
	fr.RequestContext.FunctionARN = m.opts.FunctionARN
	fr.RequestContext.Condition = "RetryAttemptsExhausted"
	fr.RequestContext.ApproximateInvokeCount = invokes
	fr.ResponseContext.StatusCode = 200
	fr.ResponseContext.ExecutedVersion = "$LATEST"
	if fnErr {
		fr.ResponseContext.FunctionError = "Unhandled"
	}
	fr.Version = "1.0"
	fr.Timestamp = time.Now().UTC().Format("2006-01-02T15:04:05.000Z")
	b := &fr.DDBStreamBatchInfo
	b.ShardID = failing[0].ShardID
	b.StartSequenceNumber = first.Change.SequenceNumber
	b.EndSequenceNumber = last.Change.SequenceNumber
	b.ApproximateArrivalOfFirstRecord = first.Change.ApproximateCreationDateTime.UTC().Format(time.RFC3339)
	b.ApproximateArrivalOfLastRecord = last.Change.ApproximateCreationDateTime.UTC().Format(time.RFC3339)
	b.BatchSize = len(failing)
	b.StreamARN = m.opts.StreamARN
	body, _ := json.Marshal(fr)
	if _, err := m.opts.OnFailureSQS.SendMessage(context.WithoutCancel(ctx), &sqs.SendMessageInput{
		QueueUrl: aws.String(m.opts.OnFailureQueueURL), MessageBody: aws.String(string(body)),
	}); err != nil {
		// Lambda too retries the destination; locally the record is logged and lost.
		m.opts.Log.Error("stream failure record not sent; records dropped", "target", m.opts.Function,
			"records", len(failing), "err", err)
		return
	}
	m.opts.Log.Warn("stream records sent to the on-failure destination after retries", "target", m.opts.Function,
		"records", len(failing), "attempts", invokes, "shard", b.ShardID, "start", b.StartSequenceNumber, "end", b.EndSequenceNumber)
}

// StreamsClient is the DynamoDB Streams API the mapping reads with.
type StreamsClient = localstack.StreamsClient

func newStreamSource(opts StreamMappingOptions) (StreamSource, error) {
	return localstack.NewStreamReader(opts.Client, opts.StreamARN, opts.Patterns)
}
