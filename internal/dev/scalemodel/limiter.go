package scalemodel

import (
	"cmp"
	"slices"
	"sync"
	"time"
)

type kind int

const (
	read kind = iota
	write
)

func (k kind) String() string {
	if k == read {
		return "Read"
	}
	return "Write"
}

// resource is a table ("" index) or one of its global secondary indexes: the owner of
// a partition key space. A local secondary index shares its table's partitions, so its
// units land in the table's buckets (and, for the statistics only, under its own name).
type resource struct{ table, index string }

type keyID struct {
	res resource
	key string
}

// touch is one partition key a request reads or writes, with the units reserved for it
// before the request is forwarded (the real charge follows the answer).
type touch struct {
	res      resource
	key      string
	kind     kind
	estimate float64
}

type bucket struct {
	tokens    float64
	last      time.Time
	requests  int64
	throttled int64
	units     float64
	window    int64 // the 1-second window winUnits belongs to
	winUnits  float64
	peak      float64
	// recent holds the units of the last limiter.sustain seconds (slot = second mod
	// sustain), sustained the most units any sustain-second window held.
	recent    []slot
	sustained float64
}

type slot struct {
	second int64
	units  float64
}

type keyState struct{ b [2]bucket }

type resourceStats struct {
	requests, throttled   int64
	readUnits, writeUnits float64
}

// limiter holds one token bucket per partition key and kind (read, write), refilled at
// the scaled per-partition limit, and the statistics of every key and resource.
type limiter struct {
	mu      sync.Mutex
	now     func() time.Time
	start   time.Time
	rate    [2]float64 // units per second: read, write
	burst   float64    // seconds of rate a bucket holds
	sustain int64      // seconds of the sustained-load window (Options.Window)

	keys      map[keyID]*keyState
	resources map[resource]*resourceStats

	collections map[keyID]int64  // (table, partition key) -> item collection bytes
	sizes       map[uint64]int32 // hash of (table, primary key) -> the item's collection bytes
}

func newLimiter(now func() time.Time, readRate, writeRate, burst float64, sustain int64) *limiter {
	l := &limiter{now: now, rate: [2]float64{readRate, writeRate}, burst: burst, sustain: max(1, sustain)}
	l.reset()
	return l
}

func (l *limiter) reset() {
	l.start = l.now()
	l.keys = map[keyID]*keyState{}
	l.resources = map[resource]*resourceStats{}
	if l.collections == nil {
		l.collections = map[keyID]int64{}
		l.sizes = map[uint64]int32{}
	}
}

func (l *limiter) bucket(id keyID, k kind, now time.Time) *bucket {
	ks := l.keys[id]
	if ks == nil {
		ks = &keyState{}
		for i := range ks.b {
			ks.b[i] = bucket{tokens: l.rate[i] * l.burst, last: now, window: -1}
		}
		l.keys[id] = ks
	}
	b := &ks.b[k]
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens = min(b.tokens+dt*l.rate[k], l.rate[k]*l.burst)
		b.last = now
	}
	return b
}

func (l *limiter) res(r resource) *resourceStats {
	s := l.resources[r]
	if s == nil {
		s = &resourceStats{}
		l.resources[r] = s
	}
	return s
}

// admit reserves the estimates of every touch if each of their buckets still holds
// tokens, and otherwise returns the first empty one, reserving nothing: a request is
// applied whole or not at all.
func (l *limiter) admit(touches []touch) *touch {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	for i, t := range touches {
		if b := l.bucket(keyID{t.res, t.key}, t.kind, now); b.tokens <= 0 {
			b.requests++
			b.throttled++
			rs := l.res(t.res)
			rs.requests++
			rs.throttled++
			return &touches[i]
		}
	}
	for _, t := range touches {
		b := l.bucket(keyID{t.res, t.key}, t.kind, now)
		b.requests++
		b.tokens -= t.estimate
		l.res(t.res).requests++
	}
	return nil
}

// charge books units a request consumed on a key, less what admit reserved for it.
func (l *limiter) charge(t touch, units float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b := l.bucket(keyID{t.res, t.key}, t.kind, now)
	b.tokens -= units - t.estimate
	b.units += units
	w := int64(now.Sub(l.start) / time.Second)
	if w != b.window {
		b.peak = max(b.peak, b.winUnits)
		b.window, b.winUnits = w, 0
	}
	b.winUnits += units
	l.sustainUnits(b, w, units)
	l.bookUnits(t.res, t.kind, units)
}

// sustainUnits adds units to second w's slot and raises the bucket's sustained figure to
// the window ending at w. A window ending in a second without units holds no more than
// the one ending at its last second with units, so updating here sees every maximum.
func (l *limiter) sustainUnits(b *bucket, w int64, units float64) {
	if b.recent == nil {
		b.recent = make([]slot, l.sustain)
		for i := range b.recent {
			b.recent[i].second = -l.sustain // before the start: outside every window
		}
	}
	s := &b.recent[w%l.sustain]
	if s.second != w {
		s.second, s.units = w, 0
	}
	s.units += units
	var sum float64
	for _, s := range b.recent {
		if s.second > w-l.sustain {
			sum += s.units
		}
	}
	b.sustained = max(b.sustained, sum)
}

func (l *limiter) bookUnits(r resource, k kind, units float64) {
	rs := l.res(r)
	if k == read {
		rs.readUnits += units
	} else {
		rs.writeUnits += units
	}
}

// book records units on a resource's statistics alone (an LSI's share of a write).
func (l *limiter) book(r resource, k kind, units float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.bookUnits(r, k, units)
}

// countRequest records a request that touches no single partition (a Scan).
func (l *limiter) countRequest(r resource) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.res(r).requests++
}

// collection returns an item collection's size and the recorded size of one item of it.
func (l *limiter) collection(table, pk string, item uint64) (total int64, size int32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.collections[keyID{resource{table: table}, pk}], l.sizes[item]
}

// resize records an item's new collection size (0: deleted). oldSize is the item's
// size before the write when the answer told it, -1 to use the size recorded at its
// last write through the model (0 for an item written around it).
func (l *limiter) resize(table, pk string, item uint64, oldSize, newSize int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if oldSize < 0 {
		oldSize = int(l.sizes[item])
	}
	id := keyID{resource{table: table}, pk}
	l.collections[id] += int64(newSize - oldSize)
	if newSize == 0 {
		delete(l.sizes, item)
	} else {
		l.sizes[item] = int32(newSize)
	}
}

// Stats is a snapshot of what the model saw since Start or the last Reset.
type Stats struct {
	// Resources has one row per table and per index that requests touched.
	Resources []ResourceStats
	// Keys has one row per partition key, hottest (highest peak share) first.
	Keys []KeyStats
	// Window is the length of the sustained-load window (Options.Window).
	Window time.Duration
}

// ResourceStats are the counts of one table or index.
type ResourceStats struct {
	Table, Index string // Index is empty for the table itself
	Requests     int64  // requests admitted or refused that touched it
	Throttled    int64  // of which refused by the model
	// ReadUnits and WriteUnits are the capacity units consumed, in AWS terms.
	ReadUnits, WriteUnits float64
	// PeakShare is the hottest key's peak 1-second load as a share of its limit.
	PeakShare float64
	// SustainedShare is the hottest key's sustained load (Stats.Window) as a share of
	// its limit.
	SustainedShare float64
}

// KeyStats are the counts of one partition key of a table (its LSIs included) or of a
// GSI.
type KeyStats struct {
	Table, Index string
	Key          string // the partition key value, "S:abc", "N:1" or "B:<base64>"
	Requests     int64
	Throttled    int64
	ReadUnits    float64
	WriteUnits   float64
	// PeakReadShare and PeakWriteShare are the most units consumed in any 1-second
	// window as a share of the key's scaled limit (1 = the whole partition's limit).
	PeakReadShare, PeakWriteShare float64
	// SustainedReadShare and SustainedWriteShare are the most units consumed in any
	// window of Stats.Window (whole seconds, sliding by one) as a share of the key's
	// scaled limit over that window: the load the key sustained, without the noise of
	// a single second.
	SustainedReadShare, SustainedWriteShare float64
}

// PeakShare is the larger of the key's read and write peak shares.
func (k KeyStats) PeakShare() float64 { return max(k.PeakReadShare, k.PeakWriteShare) }

// SustainedShare is the larger of the key's read and write sustained shares.
func (k KeyStats) SustainedShare() float64 { return max(k.SustainedReadShare, k.SustainedWriteShare) }

// Hottest returns the n hottest keys (all if n <= 0 or fewer exist).
func (s Stats) Hottest(n int) []KeyStats {
	if n <= 0 || n > len(s.Keys) {
		n = len(s.Keys)
	}
	return s.Keys[:n]
}

// Resource returns the row of a table ("" index) or index, and whether it exists.
func (s Stats) Resource(table, index string) (ResourceStats, bool) {
	for _, r := range s.Resources {
		if r.Table == table && r.Index == index {
			return r, true
		}
	}
	return ResourceStats{}, false
}

// Throttled is the number of requests the model refused, over every table and index.
func (s Stats) Throttled() int64 {
	var n int64
	for _, r := range s.Resources {
		n += r.Throttled
	}
	return n
}

func (l *limiter) snapshot() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := int64(l.now().Sub(l.start) / time.Second)
	st := Stats{Window: time.Duration(l.sustain) * time.Second}
	peaks, sustained := map[resource]float64{}, map[resource]float64{}
	for id, ks := range l.keys {
		k := KeyStats{Table: id.res.table, Index: id.res.index, Key: id.key}
		var shares, sust [2]float64
		for i := range ks.b {
			b := &ks.b[i]
			k.Requests += b.requests
			k.Throttled += b.throttled
			peak := b.peak
			if b.window <= now {
				peak = max(peak, b.winUnits)
			}
			shares[i] = peak / l.rate[i]
			sust[i] = b.sustained / (l.rate[i] * float64(l.sustain))
		}
		k.ReadUnits, k.WriteUnits = ks.b[read].units, ks.b[write].units
		k.PeakReadShare, k.PeakWriteShare = shares[read], shares[write]
		k.SustainedReadShare, k.SustainedWriteShare = sust[read], sust[write]
		peaks[id.res] = max(peaks[id.res], k.PeakShare())
		sustained[id.res] = max(sustained[id.res], k.SustainedShare())
		st.Keys = append(st.Keys, k)
	}
	slices.SortFunc(st.Keys, func(a, b KeyStats) int {
		return cmp.Or(cmp.Compare(b.PeakShare(), a.PeakShare()), cmp.Compare(b.Throttled, a.Throttled),
			cmp.Compare(a.Table, b.Table), cmp.Compare(a.Index, b.Index), cmp.Compare(a.Key, b.Key))
	})
	for r, rs := range l.resources {
		st.Resources = append(st.Resources, ResourceStats{Table: r.table, Index: r.index, Requests: rs.requests,
			Throttled: rs.throttled, ReadUnits: rs.readUnits, WriteUnits: rs.writeUnits, PeakShare: peaks[r],
			SustainedShare: sustained[r]})
	}
	slices.SortFunc(st.Resources, func(a, b ResourceStats) int {
		return cmp.Or(cmp.Compare(a.Table, b.Table), cmp.Compare(a.Index, b.Index))
	})
	return st
}
