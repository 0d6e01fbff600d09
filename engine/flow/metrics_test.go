package flow

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

var epoch = time.Unix(1_700_000_000, 0)

// sec is epoch plus s seconds.
func sec(s float64) time.Time { return epoch.Add(time.Duration(s * float64(time.Second))) }

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

// pts builds window points from (seconds, waiting) pairs.
func pts(xy ...float64) []point {
	var w []point
	for i := 0; i+1 < len(xy); i += 2 {
		w = append(w, point{at: sec(xy[i]).UnixNano(), waiting: xy[i+1]})
	}
	return w
}

func TestRate(t *testing.T) {
	tests := []struct {
		name        string
		first, last uint64
		span        float64
		want        float64
	}{
		{"1: change over span", 100, 200, 10, 10},
		{"2: fractional span", 0, 3, 1.5, 2},
		{"3: no change", 50, 50, 10, 0},
		{"4: zero span (one sample) is 0", 0, 100, 0, 0},
		{"5: negative span is 0", 0, 100, -1, 0},
		{"6: a counter that dropped counts as no change", 200, 100, 10, 0},
	}
	for _, tc := range tests {
		if got := rate(tc.first, tc.last, tc.span); !near(got, tc.want) {
			t.Errorf("%s: rate(%d, %d, %v) = %v, want %v", tc.name, tc.first, tc.last, tc.span, got, tc.want)
		}
	}
}

func TestClampStep(t *testing.T) {
	tests := []struct {
		name      string
		prev, cur int64
		want      uint64
	}{
		{"1: rise counts", 10, 15, 5},
		{"2: no change", 10, 10, 0},
		{"3: drop clamps to 0", 15, 10, 0},
		{"4: from negative (more ack pending than delivered)", -3, 2, 5},
	}
	for _, tc := range tests {
		if got := clampStep(tc.prev, tc.cur); got != tc.want {
			t.Errorf("%s: clampStep(%d, %d) = %d, want %d", tc.name, tc.prev, tc.cur, got, tc.want)
		}
		if tc.prev >= 0 && tc.cur >= 0 {
			if got := clampStepU(uint64(tc.prev), uint64(tc.cur)); got != tc.want {
				t.Errorf("%s: clampStepU(%d, %d) = %d, want %d", tc.name, tc.prev, tc.cur, got, tc.want)
			}
		}
	}
}

func TestLagSlope(t *testing.T) {
	tests := []struct {
		name string
		w    []point
		want float64
	}{
		{"1: no samples", nil, 0},
		{"2: one sample", pts(0, 100), 0},
		{"3: two samples", pts(0, 0, 2, 10), 5},
		{"4: steady growth", pts(0, 10, 1, 20, 2, 30, 3, 40), 10},
		{"5: draining", pts(0, 40, 1, 30, 2, 20, 3, 10), -10},
		{"6: flat", pts(0, 7, 1, 7, 2, 7), 0},
		{"7: one outlier moves the slope less than last-minus-first", pts(0, 0, 1, 0, 2, 0, 3, 30), 9},
		{"8: uneven spacing", pts(0, 0, 0.5, 1, 2, 4), 2},
		{"9: all at one instant", pts(5, 1, 5, 9), 0},
	}
	for _, tc := range tests {
		if got := lagSlope(tc.w); !near(got, tc.want) {
			t.Errorf("%s: lagSlope = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestEWMA(t *testing.T) {
	alphas := []struct {
		name     string
		dt, half time.Duration
		want     float64
	}{
		{"1: one half-life halves the old weight", time.Minute, time.Minute, 0.5},
		{"2: two half-lives", 2 * time.Minute, time.Minute, 0.75},
		{"3: no time, no weight", 0, time.Minute, 0},
		{"4: time backwards, no weight", -time.Second, time.Minute, 0},
		{"5: small step", time.Second, time.Minute, 1 - math.Exp(-math.Ln2/60)},
		{"6: no half-life follows the value", time.Second, 0, 1},
	}
	for _, tc := range alphas {
		if got := ewmaAlpha(tc.dt, tc.half); !near(got, tc.want) {
			t.Errorf("%s: ewmaAlpha(%v, %v) = %v, want %v", tc.name, tc.dt, tc.half, got, tc.want)
		}
	}

	steps := []struct {
		name           string
		prev, x, alpha float64
		init           bool
		want           float64
	}{
		{"7: first value initialises", 0, 42, 0.1, false, 42},
		{"8: moves by alpha", 10, 20, 0.25, true, 12.5},
		{"9: alpha 0 keeps", 10, 20, 0, true, 10},
		{"10: alpha 1 replaces", 10, 20, 1, true, 20},
		{"11: falls too", 20, 10, 0.5, true, 15},
	}
	for _, tc := range steps {
		if got := ewma(tc.prev, tc.x, tc.alpha, tc.init); !near(got, tc.want) {
			t.Errorf("%s: ewma = %v, want %v", tc.name, got, tc.want)
		}
	}

	// 12: sixty one-second steps toward 20 from 10 with a 60s half-life
	// end halfway, whatever the step size.
	b := 10.0
	for range 60 {
		b = ewma(b, 20, ewmaAlpha(time.Second, time.Minute), true)
	}
	if !near(b, 15) {
		t.Errorf("12: after one half-life in 1s steps baseline = %v, want 15", b)
	}
}

func TestProgressAndOnset(t *testing.T) {
	var zero time.Time
	progress := []struct {
		name          string
		lastAck, rose time.Time
		want          time.Time
	}{
		{"1: never progressed", zero, zero, zero},
		{"2: server ack time only", sec(5), zero, sec(5)},
		{"3: acked estimate only (ack time unknown)", zero, sec(4), sec(4)},
		{"4: the server's ack time wins", sec(5), sec(4), sec(5)},
		{"5: even when the estimate rose later (redeliveries)", sec(3), sec(4), sec(3)},
	}
	for _, tc := range progress {
		if got := progressAt(tc.lastAck, tc.rose); !got.Equal(tc.want) {
			t.Errorf("%s: progressAt = %v, want %v", tc.name, got, tc.want)
		}
	}

	onsets := []struct {
		name            string
		progress, since time.Time
		want            time.Time
	}{
		{"6: progress after watching began", sec(5), sec(0), sec(5)},
		{"7: progress before watching began", sec(5), sec(9), sec(9)},
		{"8: never progressed: watching began", zero, sec(2), sec(2)},
	}
	for _, tc := range onsets {
		if got := stallOnset(tc.progress, tc.since); !got.Equal(tc.want) {
			t.Errorf("%s: stallOnset = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestIsStalled(t *testing.T) {
	const after = 2.0 // seconds: the node's stall threshold
	tests := []struct {
		name                 string
		waiting              int
		at, onset, warmUntil time.Time
		want                 bool
	}{
		{"1: waiting, no progress for StallAfter, warmed up", 5, sec(10), sec(8), sec(3), true},
		{"2: just short of StallAfter", 5, sec(10), sec(8.5), sec(3), false},
		{"3: nothing waiting is never stalled", 0, sec(100), sec(0), sec(3), false},
		{"4: warming", 5, sec(2.5), sec(0), sec(3), false},
		{"5: exactly warmed up and exactly StallAfter", 5, sec(3), sec(1), sec(3), true},
		{"6: onset in the future (clock skew)", 5, sec(10), sec(11), sec(3), false},
		{"7: in a failover's grace", 5, sec(10), sec(0), sec(10.5), false},
	}
	for _, tc := range tests {
		if got := isStalled(tc.waiting, tc.at, tc.onset, tc.warmUntil, after); got != tc.want {
			t.Errorf("%s: isStalled = %v, want %v", tc.name, got, tc.want)
		}
		if warming := isWarming(tc.at, tc.warmUntil); warming && isStalled(tc.waiting, tc.at, tc.onset, tc.warmUntil, after) {
			t.Errorf("%s: stalled while warming", tc.name)
		}
	}
}

func TestWarmEnd(t *testing.T) {
	const warm, grace = 3 * time.Second, 10 * time.Second
	var zero time.Time
	tests := []struct {
		name     string
		at, prev time.Time
		warm     time.Duration
		failover bool
		want     time.Time
	}{
		{"first seen: a warm-up", sec(5), zero, warm, false, sec(8)},
		{"back from a gap: a warm-up", sec(20), sec(8), warm, false, sec(23)},
		{"failover: the grace", sec(20), sec(8), warm, true, sec(30)},
		{"gap within a grace: the grace holds", sec(22), sec(30), warm, false, sec(30)},
		{"failover within a grace: a new grace", sec(22), sec(30), warm, true, sec(32)},
		{"grace shorter than the warm-up: the warm-up", sec(20), zero, 20 * time.Second, true, sec(40)},
		{"clock went far back: bounded from now", sec(20), sec(1000), warm, false, sec(30)},
	}
	for _, tc := range tests {
		if got := warmEnd(tc.at, tc.prev, tc.warm, grace, tc.failover); !got.Equal(tc.want) {
			t.Errorf("%s: warmEnd = t=%v, want t=%v", tc.name, got.Sub(epoch).Seconds(), tc.want.Sub(epoch).Seconds())
		}
	}
	if !isWarming(sec(7.9), sec(8)) || isWarming(sec(8), sec(8)) || isWarming(sec(1), zero) {
		t.Error("isWarming: warming is before warmUntil only")
	}
}

func TestIsLagging(t *testing.T) {
	tests := []struct {
		name    string
		waiting int
		growth  float64
		recent  float64
		want    bool
	}{
		{"1: deep and growing", 100, 5, 10, true},
		{"2: at the floor and the slope", 10, 1, 1, true},
		{"3: below the floor", 9, 50, 100, false},
		{"4: deep but shrinking", 1000, -3, -6, false},
		{"5: deep but flat", 1000, 0, 0, false},
		{"6: growing too slowly", 1000, 0.99, 2, false},
		{"7: a burst being drained: the window still rises, the last steps fall", 400, 20, -30, false},
		{"8: flat over the last steps: a slow node's lag moves by whole messages", 400, 20, 0, true},
		{"9: within what one cadence of arrivals explains", 300, 20, 40, false},
	}
	for _, tc := range tests {
		allowance := 10.0
		if tc.name[0] == '9' {
			allowance = 360 // 180/s arriving, acked every 2s
		}
		if got := isLagging(tc.waiting, tc.growth, tc.recent, allowance, 10, 1, false); got != tc.want {
			t.Errorf("%s: isLagging(%d, %v) = %v, want %v", tc.name, tc.waiting, tc.growth, got, tc.want)
		}
	}
}

// Once lagging, a node stays so through a wobble: a flat or slightly
// falling step, a slope under the entry one; not once the floor drops under
// the allowance or the window stops growing.
func TestIsLaggingHysteresis(t *testing.T) {
	for _, tc := range []struct {
		name      string
		floor     int
		growth    float64
		recent    float64
		was, want bool
	}{
		{"a wobble keeps it", 40, 0.7, -2, true, true},
		{"the same wobble does not start it", 40, 0.7, -2, false, false},
		{"window no longer growing ends it", 40, 0, 3, true, false},
		{"floor under the allowance ends it", 5, 3, 3, true, false},
		{"a backlog being drained ends it", 400, 20, -160, true, false},
	} {
		if got := isLagging(tc.floor, tc.growth, tc.recent, 10, 10, 1, tc.was); got != tc.want {
			t.Errorf("%s: isLagging = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestRiseAndMedian(t *testing.T) {
	if got := rise(20, 10); !near(got, 20.1/10.1) {
		t.Errorf("rise(20, 10) = %v", got)
	}
	if got := rise(3, 0); !near(got, 31) {
		t.Errorf("first messages after none: rise = %v, want 31, not infinite", got)
	}
	for _, tc := range []struct {
		xs   []float64
		want float64
	}{
		{nil, 1},
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{1.22, 1.0}, 1.11},
		{[]float64{2, 2, 2, 1, 2}, 2},
	} {
		if got := median(tc.xs); !near(got, tc.want) {
			t.Errorf("median(%v) = %v, want %v", tc.xs, got, tc.want)
		}
	}
	// Against sorting, on many sizes and shapes, ties included.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		xs := make([]float64, 1+rng.IntN(60))
		for i := range xs {
			xs[i] = float64(rng.IntN(8)) / 4
		}
		sorted := slices.Sorted(slices.Values(xs))
		n := len(sorted)
		want := sorted[n/2]
		if n%2 == 0 {
			want = (sorted[n/2-1] + sorted[n/2]) / 2
		}
		if got := median(slices.Clone(xs)); got != want {
			t.Fatalf("median(%v) = %v, want %v", xs, got, want)
		}
	}
}

// BenchmarkMedian10k is the per-tick cost of the system's arrival rise at
// 10,000 judged nodes with varied rises (the tracker benchmark's nodes all
// rise alike, which any sort handles fast).
func BenchmarkMedian10k(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	xs, ys := make([]float64, 10000), make([]float64, 10000)
	for i := range xs {
		xs[i] = 0.8 + 0.4*rng.Float64()
	}
	for b.Loop() {
		copy(ys, xs)
		median(ys)
	}
}

func TestBaselineHalfLife(t *testing.T) {
	for _, tc := range []struct{ age, want time.Duration }{
		{0, time.Nanosecond},
		{10 * time.Second, 5 * time.Second},
		{2 * time.Minute, time.Minute},
		{time.Hour, time.Minute},
	} {
		if got := baselineHalfLife(tc.age, time.Minute); got != tc.want {
			t.Errorf("baselineHalfLife(%v) = %v, want %v", tc.age, got, tc.want)
		}
	}
}

func TestLagFloor(t *testing.T) {
	pts := func(ws ...float64) []point {
		out := make([]point, len(ws))
		for i, w := range ws {
			out[i] = point{at: int64(i) * 1e9, waiting: w}
		}
		return out
	}
	tests := []struct {
		name string
		w    []point
		span int64
		want int
	}{
		{"empty", nil, 1e9, 0},
		{"one sample", pts(7), 1e9, 7},
		{"busy node: the last two samples", pts(0, 50, 60, 70), 1e9, 60},
		{"a batch acker's sawtooth over its cadence", pts(80, 10, 40, 80, 5, 40, 90), 4e9, 5},
		{"a span beyond the window: the whole window", pts(3, 50, 60), 60e9, 3},
	}
	for _, tc := range tests {
		if got := lagFloor(tc.w, tc.span); got != tc.want {
			t.Errorf("%s: lagFloor = %d, want %d", tc.name, got, tc.want)
		}
	}
	if got := cadenceSpan(2, time.Second); got != 4e9 {
		t.Errorf("cadenceSpan(2s, 1s) = %v, want 4s", time.Duration(got))
	}
}

func TestSecondsSinceLastAck(t *testing.T) {
	var zero time.Time
	tests := []struct {
		name                            string
		at, progress, created, observed time.Time
		want                            float64
	}{
		{"1: since progress", sec(10), sec(7), sec(0), sec(0), 3},
		{"2: never acked: since created", sec(10), zero, sec(1), sec(5), 9},
		{"3: created unknown: since watching began", sec(10), zero, zero, sec(5), 5},
		{"4: progress after now (clock skew) is 0", sec(10), sec(12), sec(0), sec(0), 0},
	}
	for _, tc := range tests {
		if got := secondsSinceLastAck(tc.at, tc.progress, tc.created, tc.observed); !near(got, tc.want) {
			t.Errorf("%s: secondsSinceLastAck = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestFractionAndSaturation(t *testing.T) {
	if got := fraction(1, 4); got != 0.25 {
		t.Errorf("fraction(1, 4) = %v, want 0.25", got)
	}
	if got := fraction(3, 0); got != 0 {
		t.Errorf("fraction(3, 0) = %v, want 0", got)
	}
	if got := satInt(math.MaxUint64); got != math.MaxInt {
		t.Errorf("satInt(MaxUint64) = %d, want MaxInt", got)
	}
	if got := satAdd(math.MaxUint64-1, 5); got != math.MaxUint64 {
		t.Errorf("satAdd overflow = %d, want MaxUint64", got)
	}
	if got := satAdd(2, 3); got != 5 {
		t.Errorf("satAdd(2, 3) = %d, want 5", got)
	}
}

func TestWindowTrim(t *testing.T) {
	const span = int64(10 * time.Second)
	tests := []struct {
		name      string
		ats       []float64
		wantFirst float64
		wantLen   int
	}{
		{"1: one sample", []float64{0}, 0, 1},
		{"2: shorter than the window keeps all", []float64{0, 1, 2}, 0, 3},
		{"3: exactly the window keeps all", []float64{0, 5, 10}, 0, 3},
		{"4: keeps the one at or before the cut", []float64{0, 1, 2, 11}, 1, 3},
		{"5: keeps only the latest before the cut", []float64{0, 1, 2, 3, 30}, 3, 2},
		{"6: regular ticks span exactly the window", []float64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, 2, 11},
	}
	for _, tc := range tests {
		var w window
		for _, a := range tc.ats {
			w.push(point{at: sec(a).UnixNano()}, counts{})
			w.trim(span)
		}
		got := w.points()
		if len(got) != tc.wantLen || got[0].at != sec(tc.wantFirst).UnixNano() {
			t.Errorf("%s: window has %d samples from %v, want %d from %v",
				tc.name, len(got), time.Unix(0, got[0].at).Sub(epoch), tc.wantLen, tc.wantFirst)
		}
	}
}

func TestWindowReusesBuffer(t *testing.T) {
	var w window
	for i := range 1000 {
		w.push(point{at: sec(float64(i)).UnixNano()}, counts{delivered: uint64(i)})
		w.trim(int64(10 * time.Second))
		_, first := w.oldest()
		_, last, _ := w.newest()
		if last.delivered != uint64(i) || first.delivered != uint64(max(0, i-10)) || w.len() != min(i+1, 11) {
			t.Fatalf("after %d pushes window holds %d..%d (%d samples)", i+1, first.delivered, last.delivered, w.len())
		}
	}
	if cap(w.pts) > 32 || cap(w.cnt) > 32 {
		t.Errorf("buffers grew to %d, %d for an 11-sample window", cap(w.pts), cap(w.cnt))
	}
	allocs := testing.AllocsPerRun(100, func() {
		w.push(point{at: w.pts[w.hi-1].at + int64(time.Second)}, counts{})
		w.trim(int64(10 * time.Second))
	})
	if allocs != 0 {
		t.Errorf("steady push allocates %v times", allocs)
	}
}
