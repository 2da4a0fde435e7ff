// Package scalemodel is a scale model of DynamoDB's partition limits for the local
// stack: an HTTP proxy on 127.0.0.1 in front of DynamoDB Local that refuses what AWS
// would refuse, with AWS's answers, at 1/K of AWS's limits. DynamoDB Local never
// throttles, so a hot key is invisible locally; run the load at target/K through the
// model and it shows what AWS would do at the target. Clients need no change: point
// their DynamoDB endpoint at Server.URL.
//
// # What is enforced
//
//   - Per partition key of a table, and per partition key of each global secondary
//     index: 1,000 WCU/s and 3,000 RCU/s, divided by K, reads and writes independently
//     (AWS throttles them independently). A local secondary index lives in its table's
//     partitions, so its units count against the table's key.
//     https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html
//     https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/throttling-key-range-limit-exceeded-mitigation.html
//   - A write whose GSI key is throttled is refused whole, table included (AWS's
//     back-pressure from a GSI). The GSI keys a write touches are those of the item
//     before (read first, for tables with GSIs) and after it (from the request).
//   - An item collection (items of one partition key value, with their LSI entries) of
//     a table with an LSI is capped at 10 GB / K (Options.CollectionLimit overrides) and
//     never split: a put or update that would grow it past the cap gets
//     ItemCollectionSizeLimitExceededException.
//   - Items are capped at 400 KB (not scaled: it is AWS's limit for any item):
//     ValidationException "Item size has exceeded the maximum allowed size".
//
// # How load is measured
//
// Each (table or GSI, partition key value) has a token bucket per kind, refilled at
// limit/K per second and holding Options.Burst seconds of it (default 1: a key can take
// one second's worth at once, no more; AWS documents no per-partition burst beyond the
// partition's limit). A request is refused when a bucket it touches is empty. When it
// is admitted, a first estimate is reserved (1 WCU, or the put item's size; the minimum
// read), the request is forwarded with ReturnConsumedCapacity INDEXES, and the units
// DynamoDB reports replace the estimate; the capacity the client did not ask for is
// removed from the answer. So the buckets run on what the requests really consumed: 1
// WCU per started KB written (the larger of the old and new item for an update), 1 RCU
// per started 4 KB read strongly consistent and half that eventually consistent, index
// writes (2 when an update moves an item between GSI keys), transactions doubled.
// Where DynamoDB Local reports other units than AWS bills, the rules of
// internal/reqcount correct it: the transaction factor (calibrated at Start with
// reqcount.TransactScaleOf), the minimum read of a read that found nothing
// (reqcount.MinimumRead) and the keys of a BatchGetItem that found no item
// (reqcount.MissingReads). A request that DynamoDB refuses (a failed condition) keeps
// its reservation: AWS charges failed conditional writes too.
//
// # Answers
//
// A refused request is not forwarded: nothing of it is applied.
//
//   - Single-item calls and Query: HTTP 400
//     {"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
//     "message":..., "ThrottlingReasons":[{"reason":"TableWriteKeyRangeThroughputExceeded",
//     "resource":"<table ARN>"}]} (Index... and the index ARN for a GSI, ...Read... for
//     reads). KeyRangeThroughputExceeded is the reason AWS reports for partition limits
//     in both capacity modes; ThrottlingException and RequestLimitExceeded belong to the
//     account and on-demand maximum limits, not modelled. aws-sdk-go-v2 retries it with
//     backoff (and its retry quota), as in AWS.
//     https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_ThrottlingReason.html
//   - BatchWriteItem / BatchGetItem: the throttled requests or keys come back in
//     UnprocessedItems / UnprocessedKeys and the rest is done; if none can be done, the
//     call is throttled whole.
//   - TransactWriteItems / TransactGetItems: TransactionCanceledException with the
//     cancellation reason ThrottlingError (ProvisionedThroughputExceeded for a
//     provisioned table) at the throttled item and None elsewhere; the SDK does not retry
//     it, nor does AWS's.
//
// DynamoDB Streams (DynamoDBStreams_* targets), the control plane (CreateTable,
// DescribeTable, ...) and PartiQL pass through unthrottled; Scan is counted per table or
// index but charged to no key, as it reads each partition in turn.
//
// # Not modelled
//
//   - Adaptive capacity's split for heat: AWS splits a hot partition of a table without
//     an LSI so that one key may get a whole partition's throughput; the model already
//     gives each key its own, so it is the ceiling a split could reach, never more. It
//     cannot go past one key's limit in AWS either.
//   - Burst credits (up to 300 s of unused table capacity) and table- or account-level
//     limits, on-demand's ramp-up (twice the previous peak) and maximum throughput.
//   - Keys are modelled, not partitions: AWS may place several small keys on one
//     partition, which then share its limits.
//   - An item's collection size is learnt from writes through the model: an update
//     counts the item's size at its last write through it (0 for an item written around
//     it), a batch write or transaction reads no old image (so a delete in them reserves
//     no GSI key), and an update over the cap is refused only once the collection
//     already is at it.
//   - Scaling divides the limits but not the load of one item: with a large K a single
//     user's few writes can exceed a key's limit/K where they are a sliver of AWS's
//     1,000. Keep K small enough that limit/K is well above what one item-level flow
//     needs (K = 100 gives 10 WCU/s and 30 RCU/s per key).
//
// Stats returns, per table and index and per partition key, requests, refusals,
// consumed units, the peak 1-second load as a share of the key's limit (1 = a whole
// partition of AWS), hottest key first, and the sustained load: the busiest window of
// Options.Window (K/10 seconds by default) as a share of the limit over that window.
// The two differ because scaling divides rates and keeps time: a key sees K times fewer
// requests per second than in AWS, so the count in its busiest second is a Poisson tail
// √K times noisier than AWS's. At K = 100 a delivery shard averaging 12 % of its limit
// peaks at 80-160 % in some second, where the same traffic in AWS peaks near 20-30 %.
// A window of K seconds would hold what one second holds in AWS; K/10 seconds holds a
// tenth, so its figure is still noisier than AWS's 1-second peak (an upper estimate of
// it for steady traffic) while a run of a few windows can measure it. Throttling
// ignores the window: a request is refused per second as described above.
package scalemodel
