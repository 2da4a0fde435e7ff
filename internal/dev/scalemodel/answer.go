package scalemodel

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"hash/crc32"
	"net/http"
	"strconv"
)

// The answers AWS gives when it refuses a request for a limit the model enforces.
const (
	typePrefix = "com.amazonaws.dynamodb.v20120810#"

	// Throttle messages: on-demand tables (the template's) answer the first,
	// provisioned tables the second.
	// https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html#API_TransactWriteItems_Errors
	msgOnDemand      = "Throughput exceeds the current capacity of your table or index. DynamoDB is automatically scaling your table or index so please try again shortly. If exceptions persist, check if you have a hot key: https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html."
	msgOnDemandIndex = "Throughput exceeds the current capacity for one or more global secondary indexes. DynamoDB is automatically scaling your index so please try again shortly."
	msgProvisioned   = "The level of configured provisioned throughput for the table was exceeded. Consider increasing your provisioning level with the UpdateTable API."
	msgProvIndex     = "The level of configured provisioned throughput for one or more global secondary indexes of the table was exceeded. Consider increasing your provisioning level for the under-provisioned global secondary indexes with the UpdateTable API."

	msgItemTooLarge = "Item size has exceeded the maximum allowed size"
	// msgCollection is the message AWS documents for the same limit in a transaction.
	msgCollection = "Collection size exceeded."
)

// throttleReason is one entry of ThrottlingReasons: ResourceType + OperationType +
// LimitType, and the ARN of the table or index.
// https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_ThrottlingReason.html
type throttleReason struct {
	Reason   string `json:"reason"`
	Resource string `json:"resource"`
}

// denial is why the model refused a request: the key whose bucket was empty, and the
// table it belongs to.
type denial struct {
	t  touch
	sc *schema
}

func (d denial) reason() throttleReason {
	typ, arn := "Table", d.sc.arn
	if d.t.res.index != "" {
		typ = "Index"
		if ix, ok := d.sc.index(d.t.res.index); ok {
			arn = ix.arn
		}
	}
	return throttleReason{Reason: typ + d.t.kind.String() + "KeyRangeThroughputExceeded", Resource: arn}
}

func (d denial) message() string {
	switch {
	case d.sc.onDemand && d.t.res.index != "":
		return msgOnDemandIndex
	case d.sc.onDemand:
		return msgOnDemand
	case d.t.res.index != "":
		return msgProvIndex
	}
	return msgProvisioned
}

// writeThrottle answers ProvisionedThroughputExceededException, the exception that
// carries the KeyRangeThroughputExceeded reasons in both capacity modes; the SDKs retry
// it with backoff.
func writeThrottle(w http.ResponseWriter, d denial) {
	writeError(w, "ProvisionedThroughputExceededException", d.message(), map[string]any{
		"ThrottlingReasons": []throttleReason{d.reason()},
	})
}

// writeCanceled answers TransactionCanceledException with one cancellation reason per
// item of the transaction, in order ("None" for the items that were not at fault). The
// SDKs do not retry it: the caller sees it, as in AWS.
func writeCanceled(w http.ResponseWriter, n, at int, code, message string) {
	reasons := make([]map[string]string, n)
	codes := ""
	for i := range reasons {
		c := "None"
		reasons[i] = map[string]string{"Code": c}
		if i == at {
			c = code
			reasons[i] = map[string]string{"Code": code, "Message": message}
		}
		if i > 0 {
			codes += ", "
		}
		codes += c
	}
	writeError(w, "TransactionCanceledException",
		"Transaction cancelled, please refer cancellation reasons for specific reasons ["+codes+"]",
		map[string]any{"CancellationReasons": reasons})
}

// cancelCode is the cancellation reason code of a throttle in a transaction.
func (d denial) cancelCode() string {
	if d.sc.onDemand {
		return "ThrottlingError"
	}
	return "ProvisionedThroughputExceeded"
}

func writeError(w http.ResponseWriter, typ, message string, extra map[string]any) {
	body := map[string]any{"__type": typePrefix + typ, "message": message}
	for k, v := range extra {
		body[k] = v
	}
	if typ == "ValidationException" {
		body["__type"] = "com.amazon.coral.validate#ValidationException"
	}
	b, _ := json.Marshal(body)
	writeBody(w, http.StatusBadRequest, nil, b)
}

// writeBody sends an answer with the CRC32 that aws-sdk-go-v2 checks on every DynamoDB
// answer, recomputed because the proxy may have changed the body.
func writeBody(w http.ResponseWriter, status int, header http.Header, body []byte) {
	h := w.Header()
	for k, vs := range header {
		switch http.CanonicalHeaderKey(k) {
		case "Content-Length", "X-Amz-Crc32", "Content-Encoding", "Transfer-Encoding", "Connection":
			continue
		}
		h[k] = vs
	}
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", "application/x-amz-json-1.0")
	}
	if h.Get("X-Amzn-Requestid") == "" {
		h.Set("X-Amzn-Requestid", requestID())
	}
	h.Set("X-Amz-Crc32", strconv.FormatUint(uint64(crc32.ChecksumIEEE(body)), 10))
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func requestID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
