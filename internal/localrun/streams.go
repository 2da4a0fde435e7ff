package localrun

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"

	"minipush/internal/localstack"
)

// StreamHandler is a function behind a DynamoDB stream event source mapping.
type StreamHandler func(context.Context, events.DynamoDBEvent) (events.DynamoDBEventResponse, error)

// StreamSource yields the records of a stream after those already returned, already
// filtered by the mapping's patterns; an empty result means nothing new yet.
type StreamSource interface {
	Next(ctx context.Context) ([]events.DynamoDBEventRecord, error)
}

// StreamMappingOptions configure a StreamMapping.
type StreamMappingOptions struct {
	Function         string
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
	// Source overrides the stream reader (tests).
	Source StreamSource
}

// localMaxRetries bounds "retry forever" locally, where a poison record would otherwise
// block the shard until the process stops.
const localMaxRetries = 10

// StreamMapping emulates a Lambda DynamoDB stream event source mapping: records in
// order, BatchSize at a time, filtered by the template's patterns; with
// ReportBatchItemFailures a batch is retried from the first failed record, otherwise
// whole, up to MaximumRetryAttempts, after which the records are dropped (logged).
type StreamMapping struct {
	opts    StreamMappingOptions
	src     StreamSource
	pending []events.DynamoDBEventRecord
}

// NewStreamMapping returns a mapping reading the stream from its trim horizon.
func NewStreamMapping(opts StreamMappingOptions) (*StreamMapping, error) {
	if opts.StartingPosition != "" && opts.StartingPosition != "TRIM_HORIZON" && opts.StartingPosition != "LATEST" {
		return nil, fmt.Errorf("localrun: %s: starting position %s has no local emulation", opts.Function, opts.StartingPosition)
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
	return &StreamMapping{opts: opts, src: src}, nil
}

// Run reads and delivers until ctx ends.
func (m *StreamMapping) Run(ctx context.Context) {
	for ctx.Err() == nil {
		if len(m.pending) < m.opts.BatchSize {
			recs, err := m.src.Next(ctx)
			if err != nil {
				if ctx.Err() == nil {
					m.opts.Log.Warn("stream read failed", "function", m.opts.Function, "err", err)
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
		recs, err := m.src.Next(ctx)
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

func (m *StreamMapping) deliver(ctx context.Context) {
	n := min(m.opts.BatchSize, len(m.pending))
	batch := m.pending[:n]
	limit := m.opts.MaxRetries
	if limit < 0 || limit > localMaxRetries {
		limit = localMaxRetries
	}
	for attempt := 0; ; attempt++ {
		failedFrom := m.invoke(ctx, batch)
		if failedFrom < 0 {
			m.pending = m.pending[n:]
			return
		}
		if attempt >= limit || ctx.Err() != nil {
			m.opts.Log.Error("stream records dropped after retries", "function", m.opts.Function,
				"records", len(batch)-failedFrom, "attempts", attempt+1)
			m.pending = m.pending[n:]
			return
		}
		// Lambda checkpoints up to the first failure and retries from there.
		m.pending = m.pending[failedFrom:]
		n -= failedFrom
		batch = m.pending[:n]
		sleep(ctx, time.Duration(50<<min(attempt, 5))*time.Millisecond)
	}
}

// invoke returns the index of the first record to retry, or -1 when all succeeded.
func (m *StreamMapping) invoke(ctx context.Context, batch []events.DynamoDBEventRecord) int {
	ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.opts.Timeout)
	defer cancel()
	ictx = lambdacontext.NewContext(ictx, &lambdacontext.LambdaContext{AwsRequestID: requestID()})
	resp, err := m.opts.Handler(ictx, events.DynamoDBEvent{Records: batch})
	if err != nil {
		m.opts.Log.Error("stream function failed", "function", m.opts.Function, "records", len(batch), "err", err)
		return 0
	}
	if !m.opts.ReportFailures || len(resp.BatchItemFailures) == 0 {
		return -1
	}
	first := -1
	for _, f := range resp.BatchItemFailures {
		idx := -1
		for i, r := range batch {
			if r.Change.SequenceNumber == f.ItemIdentifier {
				idx = i
				break
			}
		}
		if idx < 0 { // Lambda retries the whole batch on an unknown identifier
			return 0
		}
		if first < 0 || idx < first {
			first = idx
		}
	}
	return first
}

// StreamsClient is the DynamoDB Streams API the mapping reads with.
type StreamsClient = localstack.StreamsClient

func newStreamSource(opts StreamMappingOptions) (StreamSource, error) {
	return localstack.NewStreamReader(opts.Client, opts.StreamARN, opts.Patterns)
}
