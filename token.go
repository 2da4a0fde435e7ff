package minipush

import "time"

// SharedToken is an app's WeChat access token as every instance shares it, with the
// refresh lock that keeps instances from refreshing at once (DESIGN.md, a token owner
// that cannot thrash).
type SharedToken struct {
	AccessToken string
	ExpiresAt   time.Time
	LockOwner   string
	LockUntil   time.Time
}
