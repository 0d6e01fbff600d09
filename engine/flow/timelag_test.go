package flow

import (
	"math"
	"testing"
	"time"
)

func TestPublishedAt(t *testing.T) {
	s := func(seq uint64, sec int64) seqTime { return seqTime{seq: seq, at: sec * 1e9} }
	hist := []seqTime{s(100, 10), s(200, 20), s(400, 30)}
	for _, tc := range []struct {
		name        string
		seq         uint64
		first, last seqTime
		hist        []seqTime
		want        int64 // seconds
		ok          bool
	}{
		{"exact point", 200, s(1, 1), s(400, 30), hist, 20, true},
		{"between points", 150, s(1, 1), s(400, 30), hist, 15, true},
		{"uneven spacing", 300, s(1, 1), s(400, 30), hist, 25, true},
		{"below history, from first", 50, s(0, 0), s(400, 30), hist, 10, true},
		{"between first and history", 70, s(40, 4), s(400, 30), hist, 7, true},
		{"at first", 1, s(1, 5), s(400, 30), hist, 5, true},
		{"before first", 0, s(1, 5), s(400, 30), hist, 5, true},
		{"past last", 500, s(1, 5), s(450, 40), hist, 40, true},
		{"between history and last", 425, s(1, 5), s(450, 40), hist, 35, true},
		{"last only", 7, s(0, 0), s(450, 40), nil, 40, true},
		{"first and last only", 200, s(100, 10), s(300, 30), nil, 20, true},
		{"first newer than history is left out", 150, s(300, 25), s(400, 30), hist, 15, true},
		{"nothing known", 5, s(0, 0), s(0, 0), nil, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := publishedAt(tc.seq, tc.first, tc.hist, tc.last)
			if ok != tc.ok || (ok && got != tc.want*1e9) {
				t.Errorf("publishedAt(%d) = %v, %v; want %ds, %v", tc.seq, time.Duration(got), ok, tc.want, tc.ok)
			}
		})
	}
}

func TestSeqHistoryThins(t *testing.T) {
	var h seqHistory
	const n = 10_000
	for i := int64(1); i <= n; i++ {
		h.add(seqTime{seq: uint64(i) * 10, at: i * 1e9})
		h.add(seqTime{seq: uint64(i) * 10, at: i*1e9 + 1}) // no growth: ignored
	}
	if len(h.pts) > histMax {
		t.Fatalf("history holds %d points, more than %d", len(h.pts), histMax)
	}
	for i := 1; i < len(h.pts); i++ {
		if h.pts[i].seq <= h.pts[i-1].seq || h.pts[i].at <= h.pts[i-1].at {
			t.Fatalf("history not ascending at %d: %v", i, h.pts)
		}
	}
	if last := h.pts[len(h.pts)-1]; last.seq != n*10 {
		t.Errorf("newest point %d, want %d", last.seq, n*10)
	}
	// Thinning keeps the far past: the oldest point is from the first
	// hundredth of the run.
	if oldest := h.pts[0]; oldest.seq > n*10/100 {
		t.Errorf("oldest point %d: the history forgot the far past", oldest.seq)
	}
	// Publishing was steady, so any sequence interpolates exactly.
	for _, seq := range []uint64{25, 12_345, 55_555, 99_995} {
		got, ok := publishedAt(seq, seqTime{}, h.pts, seqTime{})
		want := int64(seq) * 1e8
		if !ok || math.Abs(float64(got-want)) > 1e6 {
			t.Errorf("publishedAt(%d) = %v, want %v", seq, time.Duration(got), time.Duration(want))
		}
	}
	h.add(seqTime{seq: 5, at: 1}) // a stream recreated is cleared by the tracker, never mixed in
	if h.pts[0].seq == 5 {
		t.Error("a point going backwards was added")
	}
}

func TestDrainSeconds(t *testing.T) {
	for _, tc := range []struct {
		name           string
		waiting        int
		slope, ackRate float64
		keepsUp        bool
		want           float64
	}{
		{"nothing waiting", 0, 5, 10, false, 0},
		{"keeps up: its working set turns over at its ack rate", 20, 0, 40, true, 0.5},
		{"keeps up, a slight wobble up", 20, 0.3, 40, true, 0.5},
		{"backlog shrinking", 1000, -50, 150, false, 20},
		{"backlog growing", 1000, 30, 20, false, -1},
		{"backlog steady", 1000, 0, 20, false, -1},
		{"keeps up but acks nothing in the window", 3, 0, 0, true, -1},
	} {
		if got := drainSeconds(tc.waiting, tc.slope, tc.ackRate, tc.keepsUp); got != tc.want {
			t.Errorf("%s: drainSeconds = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestLagFromRates(t *testing.T) {
	at := epoch.Add(time.Hour)
	for _, tc := range []struct {
		name          string
		waiting       int
		rate          float64
		idleAt, since time.Time
		want          float64
	}{
		{"from the arrival rate", 100, 20, time.Time{}, epoch, 5},
		{"bounded by the last idle moment", 100, 20, at.Add(-2 * time.Second), epoch, 2},
		{"nothing arrives: since it was idle", 100, 0, at.Add(-30 * time.Second), epoch, 30},
		{"nothing arrives, never idle: since watching began", 100, 0, time.Time{}, at.Add(-time.Minute), 60},
	} {
		if got := lagFromRates(tc.waiting, tc.rate, at, tc.idleAt, tc.since); got != tc.want {
			t.Errorf("%s: lagFromRates = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// lossRun drives lossStep over samples and returns the count after each.
func lossRun(in []lossInput) []uint64 {
	var s lossState
	out := make([]uint64, len(in))
	for i, x := range in {
		s = lossStep(s, x)
		out[i] = s.lost
	}
	return out
}

func TestLossStep(t *testing.T) {
	lim := func(pos, delivered, first uint64) lossInput {
		return lossInput{pos: pos, delivered: delivered, first: first, limited: true}
	}
	for _, tc := range []struct {
		name string
		in   []lossInput
		want []uint64
	}{
		{
			// The node delivers 10 a step; from step 3 the front passes
			// it while it stands still at 30, then it skips to the front
			// and is delivered 10 more: 31..150 were lost.
			name: "stuck behind the front, then skips to it",
			in: []lossInput{
				lim(0, 0, 1), lim(10, 10, 1), lim(20, 20, 1), lim(30, 30, 51), lim(30, 30, 101),
				lim(30, 30, 151), lim(160, 40, 151),
			},
			want: []uint64{0, 0, 0, 20, 70, 120, 120},
		},
		{
			// Between two samples the node was delivered 1..5, skipped to
			// the front at 101 and was delivered 101..105: 105 passed, 10
			// delivered, 95 lost.
			name: "skips to the front between samples",
			in:   []lossInput{lim(0, 0, 1), lim(105, 10, 101)},
			want: []uint64{0, 95},
		},
		{
			name: "counted once while the front keeps passing a still node",
			in:   []lossInput{lim(10, 10, 1), lim(10, 10, 21), lim(10, 10, 21), lim(10, 10, 31), lim(50, 30, 31)},
			want: []uint64{0, 10, 10, 20, 20},
		},
		{
			name: "keeps up with a full stream: nothing lost",
			in:   []lossInput{lim(100, 100, 1), lim(150, 150, 51), lim(200, 200, 101), lim(250, 250, 151)},
			want: []uint64{0, 0, 0, 0},
		},
		{
			name: "redeliveries count as deliveries: never overcounted",
			in:   []lossInput{lim(10, 10, 1), lim(20, 25, 1), lim(30, 35, 1)},
			want: []uint64{0, 0, 0},
		},
		{
			name: "a gap open when watching begins counts at once",
			in:   []lossInput{lim(10, 10, 41), lim(50, 20, 41)},
			want: []uint64{30, 30},
		},
		{
			name: "an unlimited stream loses nothing",
			in: []lossInput{
				{pos: 10, delivered: 10, first: 1}, {pos: 10, delivered: 10, first: 100}, {pos: 200, delivered: 20, first: 100},
			},
			want: []uint64{0, 0, 0},
		},
		{
			// A filtered consumer's position lags where other subjects
			// fill the stream: the front passing it is no loss unless its
			// own pending falls without deliveries.
			name: "filtered: the front passing its stale position is no loss",
			in: []lossInput{
				{pos: 10, delivered: 5, pending: 3, first: 1, filtered: true, limited: true},
				{pos: 10, delivered: 5, pending: 4, first: 500, filtered: true, limited: true},
				{pos: 600, delivered: 9, pending: 0, first: 550, filtered: true, limited: true},
			},
			want: []uint64{0, 0, 0},
		},
		{
			name: "filtered: pending removed undelivered is lost",
			in: []lossInput{
				{pos: 10, delivered: 5, pending: 40, first: 1, filtered: true, limited: true},
				{pos: 12, delivered: 7, pending: 20, first: 300, filtered: true, limited: true},
				{pos: 12, delivered: 7, pending: 20, first: 400, filtered: true, limited: true},
			},
			want: []uint64{0, 18, 18},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := lossRun(tc.in)
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("lost after each sample %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func TestMsgLimitAndRetentionLimited(t *testing.T) {
	for _, tc := range []struct {
		name    string
		s       StreamSample
		limit   float64
		limited bool
	}{
		{"no limits", StreamSample{}, 0, false},
		{"max msgs", StreamSample{MaxMsgs: 1000}, 1000, true},
		{"max bytes as a count at the mean size", StreamSample{MaxBytes: 10_000, Msgs: 50, Bytes: 1000}, 500, true},
		{"the lower of the two", StreamSample{MaxMsgs: 300, MaxBytes: 10_000, Msgs: 50, Bytes: 1000}, 300, true},
		{"max bytes, empty stream: no count yet", StreamSample{MaxBytes: 10_000}, 0, true},
		{"discard new refuses publishes instead", StreamSample{MaxMsgs: 1000, DiscardNew: true}, 0, false},
		{"max age removes whatever the discard policy", StreamSample{MaxAge: time.Hour, DiscardNew: true}, 0, true},
		{"per-subject limit", StreamSample{MaxMsgsPerSubject: 5}, 0, true},
	} {
		if got := msgLimit(&tc.s); got != tc.limit {
			t.Errorf("%s: msgLimit = %v, want %v", tc.name, got, tc.limit)
		}
		if got := retentionLimited(&tc.s); got != tc.limited {
			t.Errorf("%s: retentionLimited = %v, want %v", tc.name, got, tc.limited)
		}
	}
}

func TestBehindCount(t *testing.T) {
	for _, tc := range []struct {
		name                       string
		filtered                   bool
		pending, msgs, next, first uint64
		want                       float64
	}{
		{"whole stream: its pending", false, 70, 1000, 931, 1, 70},
		{"filtered, limits stream: everything from its next", true, 3, 1000, 901, 1, 100},
		{"filtered, ahead of the stream's first", true, 3, 1000, 1, 50, 1000},
		{"filtered, acked messages gone (work queue)", true, 3, 20, 900, 100, 0},
	} {
		if got := behindCount(tc.filtered, tc.pending, tc.msgs, tc.next, tc.first); got != tc.want {
			t.Errorf("%s: behindCount = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestLossForecast(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    forecast
		want float64
	}{
		{"nothing undelivered", forecast{pending: 0, limit: 100, behind: 0, behindRate: 5, age: -1}, -1},
		{"front already passed", forecast{pending: 5, underway: true, limit: 100, age: -1}, 0},
		{"count limit: room over growth", forecast{pending: 400, limit: 1000, behind: 400, behindRate: 40, age: -1}, 15},
		{"count limit reached", forecast{pending: 1000, limit: 1000, behind: 1000, behindRate: 0, age: -1}, 0},
		{"keeps up: room does not shrink", forecast{pending: 4, limit: 1000, behind: 4, behindRate: -1, age: -1}, -1},
		{"age limit, node still", forecast{pending: 4, maxAge: 60, age: 20, ageRate: 1}, 40},
		{"age limit, node slower than its stream", forecast{pending: 4, maxAge: 60, age: 20, ageRate: 0.5}, 80},
		{"age unknown", forecast{pending: 4, maxAge: 60, age: -1, ageRate: 1}, -1},
		{"the earlier of both", forecast{pending: 400, limit: 1000, behind: 400, behindRate: 40, maxAge: 60, age: 50, ageRate: 1}, 10},
		{"age passed already", forecast{pending: 4, limit: 1000, behind: 4, behindRate: 1, maxAge: 60, age: 61, ageRate: 1}, 0},
	} {
		if got := lossForecast(tc.f); got != tc.want {
			t.Errorf("%s: lossForecast = %v, want %v", tc.name, got, tc.want)
		}
	}
}
