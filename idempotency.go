package minipush

import "time"

// IdempotencyRetention is how long an operator request's Idempotency-Key and its answer
// are remembered.
const IdempotencyRetention = 24 * time.Hour

// IdempotentAnswer is the answer stored for an Idempotency-Key, replayed to a retry.
type IdempotentAnswer struct {
	Status  int
	Headers map[string]string
	Body    string
}

// IdempotentRequest is what is remembered of an Idempotency-Key.
type IdempotentRequest struct {
	Fingerprint string           // of the first request: method, path, query, body
	Done        bool             // the first request's answer is stored in Answer
	Answer      IdempotentAnswer // when Done
}
