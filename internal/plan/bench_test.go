package plan_test

import (
	"context"
	"runtime"
	"runtime/metrics"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"minipush"
	"minipush/internal/queue"
)

// discardSQS accepts every message without keeping it, so the benchmark measures the
// planner (DynamoDB reads, packing, JSON encoding) rather than the local SQS server.
type discardSQS struct{}

func (discardSQS) SendMessageBatch(_ context.Context, in *sqs.SendMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	return &sqs.SendMessageBatchOutput{}, nil
}

// BenchmarkPlan plans a segment audience of every user of the app (a parallel scan of
// the users table) and reports the bytes allocated per recipient and the peak heap of
// one plan: flat bytes per recipient and the same peak from 10k to 100k mean memory does
// not grow with the audience.
func BenchmarkPlan(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			f := newFixture(b)
			users := make([]user, n)
			for i := range users {
				users[i] = user{appID: appID, openID: openID(i), region: "gd"}
			}
			f.mustUsers(b, users)
			users = nil
			h := f.handler("bench")
			h.Queue = &queue.Queue{Client: discardSQS{}, URL: "discard"}
			ctx := context.Background()
			var allocated, peak uint64
			var ms runtime.MemStats
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				id := "bench" + strconv.Itoa(i)
				f.oneOff(b, id, minipush.Audience{Kind: minipush.AudienceSegment})
				runtime.GC()
				runtime.ReadMemStats(&ms)
				before := ms.TotalAlloc
				stop := samplePeakHeap(&peak)
				b.StartTimer()
				if err := h.Handle(ctx, tick); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				stop()
				runtime.ReadMemStats(&ms)
				allocated += ms.TotalAlloc - before
				if p := f.mustRun(b, id, 1); p.Planned != n {
					b.Fatalf("planned %d, want %d", p.Planned, n)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(allocated)/float64(b.N*n), "B/recipient")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/recipient")
			b.ReportMetric(float64(peak), "peak-heap-B")
		})
	}
}

// samplePeakHeap records the largest heap (live and not yet collected objects) seen
// until the returned stop is called, sampling every millisecond.
func samplePeakHeap(peak *uint64) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(sample)
			*peak = max(*peak, sample[0].Value.Uint64())
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	return func() { close(done); wg.Wait() }
}
