package admin

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"maps"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"minipush"
	"minipush/internal/httpapi"
)

// The Idempotency-Key contract of the operator API (after the IETF draft
// draft-ietf-httpapi-idempotency-key-header, https://datatracker.ietf.org/doc/draft-ietf-httpapi-idempotency-key-header/):
// a POST, PUT or PATCH may carry Idempotency-Key. The first request with a key runs and
// its answer is kept for minipush.IdempotencyRetention; the same key with the same request
// (method, path, query and body) gets that answer again with Idempotent-Replayed: true
// and changes nothing; the same key with another request is 422; the same key while the
// first request still runs is 409. Answers of 5xx and 429 are not kept (the key is
// released), so a retry can succeed. GET ignores the header: reading twice is harmless.

// IdempotencyHeader is the request header naming a retry-safe request.
const IdempotencyHeader = "Idempotency-Key"

// ReplayedHeader marks an answer replayed from an earlier request with the same key.
const ReplayedHeader = "Idempotent-Replayed"

// maxIdempotencyKey bounds a key's length (Stripe and the draft's examples use UUIDs;
// 255 leaves room for any client's scheme).
const maxIdempotencyKey = 255

// idempotencyKeyRE is the characters a key may hold: enough for UUIDs, ULIDs, base64 and
// "order-42:retry" styles, nothing that needs escaping in logs.
var idempotencyKeyRE = regexp.MustCompile(`^[A-Za-z0-9._~:+/=-]+$`)

// idempotencyLock is how long a first request holds its key before a retry may presume
// it dead and run again: longer than the admin function's 29 s timeout, so a request
// still running is never run twice.
const idempotencyLock = time.Minute

// idempotencyKey returns the request's Idempotency-Key and whether the request carries
// one that applies (a POST, PUT or PATCH). A present but unusable key is EMALFORMED.
// The draft sends the key as a structured-field string ("..."); a bare token is taken
// too, as most clients send it.
func idempotencyKey(req events.APIGatewayV2HTTPRequest) (string, bool, error) {
	switch req.RequestContext.HTTP.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
	default:
		return "", false, nil
	}
	var key string
	found := false
	for k, v := range req.Headers {
		if strings.EqualFold(k, IdempotencyHeader) {
			key, found = v, true
			break
		}
	}
	if !found {
		return "", false, nil
	}
	key = strings.TrimSpace(key)
	if len(key) >= 2 && key[0] == '"' && key[len(key)-1] == '"' {
		key = key[1 : len(key)-1]
	}
	switch {
	case key == "":
		return "", false, minipush.Errorf(minipush.EMALFORMED, "%s: empty; send a unique key (a UUID) or no header", IdempotencyHeader)
	case len(key) > maxIdempotencyKey:
		return "", false, minipush.Errorf(minipush.EMALFORMED, "%s: %d characters, at most %d", IdempotencyHeader, len(key), maxIdempotencyKey)
	case !idempotencyKeyRE.MatchString(key):
		return "", false, minipush.Errorf(minipush.EMALFORMED, "%s: want letters, digits and . _ ~ : + / = - only", IdempotencyHeader)
	}
	return key, true, nil
}

// fingerprint identifies a request for its key: the method, path, query string and body
// (base64 bodies decoded, so one body sent either way is one request).
func fingerprint(req events.APIGatewayV2HTTPRequest) string {
	body := []byte(req.Body)
	if req.IsBase64Encoded {
		if b, err := base64.StdEncoding.DecodeString(req.Body); err == nil {
			body = b
		}
	}
	h := sha256.New()
	h.Write([]byte(req.RequestContext.HTTP.Method + " " + req.RawPath + "?" + req.RawQueryString + "\n"))
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

// idempotencySeed is the context key under which a keyed request's route finds its key
// and fingerprint, to derive what it creates from them (Handler.KeyedID).
type idempotencySeed struct{}

// keptAnswer reports whether an answer is final, so a retry must get it again: every
// answer but 5xx (the failure may be gone on retry), 429 (the limit will lift) and 409
// (a lost race or a status that may change; the request changed nothing, so running
// it again is safe, while keeping "changed concurrently, retry" would refuse the very
// retry it asks for).
func keptAnswer(status int) bool {
	return status < http.StatusInternalServerError && status != http.StatusTooManyRequests && status != http.StatusConflict
}

// once runs a keyed request at most once per key and fingerprint (the contract above).
// It returns the answer and, for the edge's log, the route's error.
func (h *Handler) once(ctx context.Context, req events.APIGatewayV2HTTPRequest, key string) (events.APIGatewayV2HTTPResponse, error) {
	fp := fingerprint(req)
	owner := randomID()
	now := h.Now()
	prev, claimed, err := h.Store.ClaimIdempotencyKey(ctx, key, fp, owner, now, now.Add(idempotencyLock))
	if err != nil {
		return httpapi.Error(err), err
	}
	if !claimed {
		switch {
		case prev.Fingerprint != fp:
			err = minipush.Errorf(minipush.EINVALID, "%s: already used for another request (method, path or body differ); use a new key for a new request", IdempotencyHeader)
			return httpapi.Error(err), err
		case !prev.Done:
			resp := httpapi.Error(minipush.Errorf(minipush.ECONFLICT, "%s: the first request with this key is still in progress; retry after it answers", IdempotencyHeader))
			resp.Headers["Retry-After"] = "1"
			return resp, nil
		}
		headers := maps.Clone(prev.Answer.Headers)
		if headers == nil {
			headers = map[string]string{}
		}
		headers[ReplayedHeader] = "true"
		return events.APIGatewayV2HTTPResponse{StatusCode: prev.Answer.Status, Headers: headers, Body: prev.Answer.Body}, nil
	}

	resp, rerr := h.route(context.WithValue(ctx, idempotencySeed{}, key+"\n"+fp), req)
	if rerr != nil {
		resp = httpapi.Error(rerr)
	}
	// The route ran: record its outcome even if the caller has gone.
	sctx := context.WithoutCancel(ctx)
	if keptAnswer(resp.StatusCode) {
		err := h.Store.FinishIdempotencyKey(sctx, key, owner, minipush.IdempotentAnswer{Status: resp.StatusCode, Headers: resp.Headers, Body: resp.Body})
		switch minipush.ErrorCode(err) {
		case "":
			return resp, rerr
		case minipush.ECONFLICT:
			// A retry presumed this request dead and took the key: this answer stands.
			h.log().WarnContext(ctx, "admin: idempotency key taken over while the request ran", "request_id", req.RequestContext.RequestID)
			return resp, rerr
		case minipush.ETOOLARGE:
			// Not kept: release below, so a retry runs again rather than waiting.
		default:
			// The change happened: answer it rather than a 5xx that invites a retry, and
			// keep the key pending, so a retry gets 409 until the lock runs out.
			h.log().ErrorContext(ctx, "admin: answer not kept for its idempotency key", "request_id", req.RequestContext.RequestID, "err", err.Error())
			return resp, rerr
		}
	}
	if err := h.Store.ReleaseIdempotencyKey(sctx, key, owner); err != nil {
		h.log().ErrorContext(ctx, "admin: idempotency key not released", "request_id", req.RequestContext.RequestID, "err", err.Error())
	}
	return resp, rerr
}
