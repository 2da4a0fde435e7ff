package send_test

import (
	"testing"

	"minipush"
)

// TestCrashBeforeCounters: the invocation dies after recording every outcome but
// before its counter update. SQS redelivers the message; it finds everyone final,
// and the run must still end done with the exact summary.
func TestCrashBeforeCounters(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ids := f.grantedUsers(t, 10)
	f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{}, len(ids))
	ev := events10(t, batches("c", ids, 10))[0]
	lossy := f.handler(4)
	lossy.Store = lossyStore{f.db}
	handle(t, lossy, ev)
	if f.runDone(t, "c")() {
		t.Fatal("run done although its counter update was lost")
	}
	handle(t, f.handler(4), ev) // the redelivery
	f.allSent(t, "c", ids)
}
