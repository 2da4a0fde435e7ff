package expire

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	streamtypes "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
)

// StreamsAPI is the part of DynamoDB Streams a replay reads with.
type StreamsAPI interface {
	GetShardIterator(ctx context.Context, in *dynamodbstreams.GetShardIteratorInput, optFns ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetShardIteratorOutput, error)
	GetRecords(ctx context.Context, in *dynamodbstreams.GetRecordsInput, optFns ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetRecordsOutput, error)
}

// FailureRecord is the invocation record Lambda sends to a DynamoDB stream mapping's
// on-failure destination when it gives up on a batch (retries exhausted or records too
// old). It names where the batch sits in the stream, not the records themselves, so a
// replay must read them back while the stream still holds them (24 hours).
// https://docs.aws.amazon.com/lambda/latest/dg/services-dynamodb-errors.html
type FailureRecord struct {
	RequestContext struct {
		RequestID              string `json:"requestId"`
		FunctionARN            string `json:"functionArn"`
		Condition              string `json:"condition"` // RetryAttemptsExhausted, RecordAgeExceeded, ...
		ApproximateInvokeCount int    `json:"approximateInvokeCount"`
	} `json:"requestContext"`
	ResponseContext struct {
		StatusCode      int    `json:"statusCode"`
		ExecutedVersion string `json:"executedVersion"`
		FunctionError   string `json:"functionError"`
	} `json:"responseContext"`
	Version   string           `json:"version"`
	Timestamp string           `json:"timestamp"`
	Batch     *StreamBatchInfo `json:"DDBStreamBatchInfo"`
}

// StreamBatchInfo locates a failed batch: one shard, first to last sequence number.
type StreamBatchInfo struct {
	ShardID                         string `json:"shardId"`
	StartSequenceNumber             string `json:"startSequenceNumber"`
	EndSequenceNumber               string `json:"endSequenceNumber"`
	ApproximateArrivalOfFirstRecord string `json:"approximateArrivalOfFirstRecord"`
	ApproximateArrivalOfLastRecord  string `json:"approximateArrivalOfLastRecord"`
	BatchSize                       int    `json:"batchSize"`
	StreamARN                       string `json:"streamArn"`
}

// ErrBeyondRetention means the stream no longer holds the records a failure record
// names (DynamoDB Streams keeps 24 hours): they cannot be replayed.
var ErrBeyondRetention = errors.New("expire: the stream no longer holds these records (24-hour retention)")

// maxEmptyPages bounds the empty GetRecords pages a replay reads before giving up: in an
// open shard a page may come back empty before the records behind it, but the range a
// failure record names was written long ago, so many empty pages mean something is wrong.
const maxEmptyPages = 20

// Replay applies the stream batches named by failure records (the messages of the
// on-failure queue, BatchSize 1): it reads each range back from the grants stream
// (GetShardIterator AT_SEQUENCE_NUMBER, then GetRecords up to the end sequence number)
// and hands the records to Handle, which ignores what is not a REMOVE and changes nothing
// on records it already applied. A message whose records were all applied is deleted; any
// other (unreadable, beyond the stream's retention, or failing again) is reported in
// BatchItemFailures and stays in the queue for the operator, with the reason logged.
func (h *Handler) Replay(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	log := h.logger(ctx)
	var resp events.SQSEventResponse
	for _, msg := range ev.Records {
		applied, err := h.replayOne(ctx, msg.Body)
		if err != nil {
			log.Error("replay of a failed stream batch failed; it stays in the queue", "message_id", msg.MessageId,
				"beyond_retention", errors.Is(err, ErrBeyondRetention), "err", err)
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: msg.MessageId})
			continue
		}
		log.Info("failed stream batch replayed", "message_id", msg.MessageId, "records", applied)
	}
	return resp, nil
}

// replayOne replays one failure record and returns how many stream records it applied.
func (h *Handler) replayOne(ctx context.Context, body string) (int, error) {
	if h.Streams == nil {
		return 0, errors.New("expire: no DynamoDB Streams client to replay with")
	}
	var fr FailureRecord
	if err := json.Unmarshal([]byte(body), &fr); err != nil {
		return 0, fmt.Errorf("expire: failure record: %w", err)
	}
	b := fr.Batch
	if b == nil || b.ShardID == "" || b.StreamARN == "" {
		return 0, errors.New("expire: failure record has no DDBStreamBatchInfo with shard and stream")
	}
	start, ok1 := new(big.Int).SetString(b.StartSequenceNumber, 10)
	end, ok2 := new(big.Int).SetString(b.EndSequenceNumber, 10)
	if !ok1 || !ok2 || start.Cmp(end) > 0 {
		return 0, fmt.Errorf("expire: failure record: sequence numbers %q..%q are not a range", b.StartSequenceNumber, b.EndSequenceNumber)
	}
	// Only the grants table's stream: the record comes from our own queue, but a replay
	// reads and applies whatever it names, so it must name what this function consumes.
	if !h.DB.IsGrantsStream(b.StreamARN) {
		return 0, fmt.Errorf("expire: failure record names stream %s, not the grants table's", b.StreamARN)
	}
	recs, err := h.readRange(ctx, b, end)
	if err != nil {
		return 0, err
	}
	resp, err := h.Handle(ctx, events.DynamoDBEvent{Records: recs})
	if err != nil {
		return 0, err
	}
	if n := len(resp.BatchItemFailures); n > 0 {
		return 0, fmt.Errorf("expire: %d of %d replayed records failed again", n, len(recs))
	}
	return len(recs), nil
}

// readRange reads the records of one shard from b's start to end sequence number.
func (h *Handler) readRange(ctx context.Context, b *StreamBatchInfo, end *big.Int) ([]events.DynamoDBEventRecord, error) {
	it, err := h.Streams.GetShardIterator(ctx, &dynamodbstreams.GetShardIteratorInput{
		StreamArn: aws.String(b.StreamARN), ShardId: aws.String(b.ShardID),
		ShardIteratorType: streamtypes.ShardIteratorTypeAtSequenceNumber, SequenceNumber: aws.String(b.StartSequenceNumber),
	})
	if err != nil {
		return nil, fmt.Errorf("expire: shard iterator %s at %s: %w", b.ShardID, b.StartSequenceNumber, streamsError(err))
	}
	var out []events.DynamoDBEventRecord
	iter := it.ShardIterator
	for empty := 0; iter != nil; {
		page, err := h.Streams.GetRecords(ctx, &dynamodbstreams.GetRecordsInput{ShardIterator: iter})
		if err != nil {
			return nil, fmt.Errorf("expire: get records of %s: %w", b.ShardID, streamsError(err))
		}
		for _, rec := range page.Records {
			if rec.Dynamodb == nil {
				return nil, fmt.Errorf("expire: stream record %s has no dynamodb part", aws.ToString(rec.EventID))
			}
			seq, ok := new(big.Int).SetString(aws.ToString(rec.Dynamodb.SequenceNumber), 10)
			if !ok {
				return nil, fmt.Errorf("expire: stream record %s: sequence number %q", aws.ToString(rec.EventID), aws.ToString(rec.Dynamodb.SequenceNumber))
			}
			if seq.Cmp(end) > 0 {
				return out, nil
			}
			ev, err := EventRecord(b.StreamARN, rec)
			if err != nil {
				return nil, err
			}
			out = append(out, ev)
			if seq.Cmp(end) == 0 {
				return out, nil
			}
		}
		if len(page.Records) == 0 {
			if empty++; empty > maxEmptyPages {
				break
			}
		}
		iter = page.NextShardIterator
	}
	return nil, fmt.Errorf("expire: shard %s ended before sequence number %s (read %d records)", b.ShardID, b.EndSequenceNumber, len(out))
}

// streamsError marks the answers that mean the records are gone: a trimmed position,
// or a stream or shard that no longer exists.
func streamsError(err error) error {
	var trimmed *streamtypes.TrimmedDataAccessException
	var missing *streamtypes.ResourceNotFoundException
	if errors.As(err, &trimmed) || errors.As(err, &missing) {
		return fmt.Errorf("%w: %w", ErrBeyondRetention, err)
	}
	return err
}

// Invoke is the function's Lambda entry point. ExpireFunction has two event sources —
// the grants stream (Removals) and the on-failure queue (Replay) — and Lambda hands a
// Go function the raw event, so Invoke routes on the records' eventSource. One function
// rather than two: the replay is the same processing, under the same role and
// concurrency, of the same stream.
func (h *Handler) Invoke(ctx context.Context, raw json.RawMessage) (any, error) {
	var probe struct {
		Records []struct {
			EventSource string `json:"eventSource"`
		} `json:"Records"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		return nil, fmt.Errorf("expire: event: %w", err)
	}
	if len(probe.Records) == 0 {
		return nil, errors.New("expire: event has no records")
	}
	switch src := probe.Records[0].EventSource; src {
	case "aws:dynamodb":
		var ev events.DynamoDBEvent
		if err := json.Unmarshal(raw, &ev); err != nil {
			return nil, fmt.Errorf("expire: stream event: %w", err)
		}
		return h.Handle(ctx, ev)
	case "aws:sqs":
		var ev events.SQSEvent
		if err := json.Unmarshal(raw, &ev); err != nil {
			return nil, fmt.Errorf("expire: sqs event: %w", err)
		}
		return h.Replay(ctx, ev)
	default:
		return nil, fmt.Errorf("expire: event source %q is not the grants stream or the failure queue", src)
	}
}
