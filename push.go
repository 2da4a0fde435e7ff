package minipush

// PushClaim is what claiming a signed WeChat message-push URL found: WeChat retries a
// push whose answer it lost under the same URL, and a replay of a captured URL reuses
// it with another body.
type PushClaim int

// Claims of a message push.
const (
	// PushNew: the URL was never seen, or seen with this same body and not applied yet
	// (a retry of a push that failed or is in flight): apply it.
	PushNew PushClaim = iota
	// PushApplied: this body was applied under this URL already (WeChat's retry of a
	// push whose answer it lost): acknowledge it and apply nothing.
	PushApplied
	// PushOtherBody: the URL was used with another body. WeChat never does that; a
	// replay of a captured URL does.
	PushOtherBody
)
