// Package chaos is the fault-injection suite (make chaos; a short form runs in make
// test): the whole system through the real local runner binary, two runner processes
// on one set of tables and queues (overlapping planners and senders), while the WeChat
// sandbox injects errcodes, latency, lost answers and hang-ups, tokens are invalidated
// mid-campaign, runners are SIGKILLed and restarted mid-send and SQS delivers messages
// twice. It then reads every delivery back through the operator API and checks the
// product's promise against what the sandbox saw: nobody messaged twice, no grant
// spent twice, nobody lost.
package chaos

import (
	"testing"

	"minipush/internal/dev/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }
