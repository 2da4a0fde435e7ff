package send_test

import (
	"strconv"
	"testing"

	"minipush"
	"minipush/internal/dev/sandbox"
)

// TestSentKeepsMsgID checks a sent subscribe message's delivery keeps the msgid WeChat
// answered it with, exactly (the sandbox's are above 2^53), read back through the
// deliveries listing and the per-recipient read. The final write carries it, so
// TestWritesPerMessage still counts one claim and one final write per recipient.
func TestSentKeepsMsgID(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ids := f.grantedUsers(t, 3)
	f.putCampaign(t, "c", subscribeMessage(), minipush.Policy{}, len(ids))
	for _, ev := range events10(t, batches("c", ids, len(ids))) {
		handle(t, f.handler(4), ev)
	}
	f.allSent(t, "c", ids)
	want := map[string]string{}
	for _, m := range f.sb.Accepted() {
		if m.API == sandbox.PathSubscribeSend {
			if m.MsgID <= 1<<53 {
				t.Fatalf("sandbox msgid %d is not above 2^53", m.MsgID)
			}
			want[m.ToUser] = strconv.FormatInt(m.MsgID, 10)
		}
	}
	listed := f.outcomes(t, "c")
	read, err := f.db.Deliveries(t.Context(), minipush.RunKey("c", 1), ids)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range ids {
		if listed[u].MsgID == "" || listed[u].MsgID != want[u] || read[u].MsgID != want[u] {
			t.Errorf("%s: msgid listed %q, read %q; WeChat answered %q", u, listed[u].MsgID, read[u].MsgID, want[u])
		}
	}
}
