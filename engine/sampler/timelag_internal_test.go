package sampler

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/happen-dev/happen/engine/flow"
	"github.com/happen-dev/happen/internal/testutil"
	"github.com/nats-io/nats.go/jetstream"
)

func TestPlanReads(t *testing.T) {
	c := func(idx int, rank float64, cost int) readCand { return readCand{idx: idx, rank: rank, cost: cost} }
	for _, tc := range []struct {
		name   string
		cands  []readCand
		budget int
		want   []int // idx, in order
	}{
		{"most lagging first", []readCand{c(0, 5, 1), c(1, 50, 1), c(2, 20, 1), c(3, 1, 1)}, 2, []int{1, 2}},
		{"budget larger than the need", []readCand{c(0, 5, 1), c(1, 50, 1)}, 10, []int{1, 0}},
		{"ties by position", []readCand{c(3, 7, 1), c(1, 7, 1), c(2, 7, 1)}, 2, []int{1, 2}},
		{"a node whose filters overrun the rest is passed over", []readCand{c(0, 9, 1), c(1, 8, 3), c(2, 7, 1)}, 3, []int{0, 2}},
		{"no budget", []readCand{c(0, 9, 1)}, 0, nil},
		{"nothing to read", nil, 100, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []int
			for _, p := range planReads(tc.cands, tc.budget) {
				got = append(got, p.idx)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("planned %v, want %v", got, tc.want)
			}
		})
	}
}

func TestEstimateAge(t *testing.T) {
	base := time.Unix(1_700_000_000, 0)
	now := base.Add(100 * time.Second)
	first, last := seqAt{1, base}, seqAt{1001, base.Add(100 * time.Second)}
	for _, tc := range []struct {
		name string
		seq  uint64
		pts  []seqAt
		want float64
	}{
		{"the first message", 1, []seqAt{first, last}, 100},
		{"half way", 501, []seqAt{first, last}, 50},
		{"past the last", 2000, []seqAt{first, last}, 0},
		{"a node's own read sharpens it", 281, []seqAt{first, last, {201, base.Add(90 * time.Second)}}, 9},
		{"unknown times are skipped", 501, []seqAt{{1, time.Time{}}, last}, 0},
		{"nothing known", 5, []seqAt{{1, time.Time{}}}, 0},
	} {
		if got := estimateAge(tc.seq, now, tc.pts...); got != tc.want {
			t.Errorf("%s: estimateAge = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestReadStands(t *testing.T) {
	created := time.Unix(1_700_000_000, 0)
	c := &flow.ConsumerSample{AckFloorStream: 10, Created: created}
	r := &lagRead{floor: 10, created: created, filter: filterSet{one: "a.b"}, seq: 12}
	for _, tc := range []struct {
		name  string
		r     *lagRead
		f     filterSet
		first uint64
		want  bool
	}{
		{"floor unmoved", r, filterSet{one: "a.b"}, 1, true},
		{"the message found is the stream's first", r, filterSet{one: "a.b"}, 12, true},
		{"the message found was removed", r, filterSet{one: "a.b"}, 13, false},
		{"filter changed", r, filterSet{one: "a.c"}, 1, false},
		{"floor moved", &lagRead{floor: 9, created: created, filter: r.filter, seq: 12}, r.filter, 1, false},
		{"consumer recreated", &lagRead{floor: 10, created: created.Add(time.Second), filter: r.filter, seq: 12}, r.filter, 1, false},
		{"never read", nil, r.filter, 1, false},
	} {
		if got := tc.r.stands(c, tc.f, tc.first); got != tc.want {
			t.Errorf("%s: stands = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestFiltered(t *testing.T) {
	for _, tc := range []struct {
		f        filterSet
		subjects []string
		want     bool
	}{
		{filterSet{}, []string{"orders.>"}, false},
		{filterSet{one: ">"}, []string{"a", "b"}, false},
		{filterSet{one: "orders.>"}, []string{"orders.>"}, false},
		{filterSet{many: []string{"orders.>"}}, []string{"orders.>"}, false},
		{filterSet{one: "orders.eu"}, []string{"orders.>"}, true},
		{filterSet{one: "orders.>"}, []string{"orders.>", "returns.>"}, true},
		{filterSet{many: []string{"a", "b"}}, []string{"a", "b"}, true},
	} {
		if got := tc.f.filtered(tc.subjects); got != tc.want {
			t.Errorf("%+v on %v: filtered %v, want %v", tc.f, tc.subjects, got, tc.want)
		}
	}
}

// tenThousand is a tick's worth of listing at 10,000 nodes over 10
// streams, every node waiting (or none), for the read planning alone: the
// budget must hold whatever the node count.
type tenThousand struct {
	streams []streamInfo
	results []streamResult
	base    []int
	snap    flow.Snapshot
}

func newTenThousand(lagging bool) *tenThousand {
	const streams, per = 10, 1000
	at := time.Unix(1_700_000_000, 0)
	w := &tenThousand{}
	for i := range streams {
		var si streamInfo
		si.Config.Name = fmt.Sprintf("S%02d", i)
		si.Config.AllowDirect = true
		si.State.FirstSeq, si.State.FirstTime = 1, at
		si.State.LastSeq, si.State.LastTime = 100_000, at.Add(time.Hour)
		w.streams = append(w.streams, si)
		r := streamResult{name: si.Config.Name, state: listed}
		w.base = append(w.base, len(w.snap.Consumers))
		for j := range per {
			name := fmt.Sprintf("c%04d", j)
			c := flow.ConsumerSample{
				Key: flow.NodeKey{Stream: r.name, Consumer: name}, At: at.Add(time.Hour), Created: at,
				AckFloorStream: uint64(1 + (i*per+j)*7%99_000), // spread: each node behind by its own amount
			}
			if lagging {
				c.NumPending = 100_000 - c.AckFloorStream
				f := filterSet{}
				if j%10 == 0 {
					f.many = []string{"a", "b"} // one in ten reads two filters
				}
				r.waiting = append(r.waiting, waitingNode{name: name, filter: f})
			}
			r.consumers = append(r.consumers, c)
		}
		w.results = append(w.results, r)
		w.snap.Consumers = append(w.snap.Consumers, r.consumers...)
	}
	return w
}

// tick plans one tick, pretends every planned read found the message just
// past the floor, and returns the reads made and the nodes exact.
func (w *tenThousand) tick(s *Sampler, moveFloors bool) (reads, exact int) {
	for i := range w.snap.Consumers {
		c := &w.snap.Consumers[i]
		c.OldestSeq, c.OldestTime = 0, time.Time{}
		if moveFloors {
			c.AckFloorStream++
		}
	}
	plan := s.planTick(&w.snap, w.streams, w.results, w.base)
	out := make([]readOutcome, len(plan))
	for i, p := range plan {
		reads += p.cost
		// Published steadily over the hour the streams span.
		si := &w.streams[0].State
		frac := float64(p.from-si.FirstSeq) / float64(si.LastSeq-si.FirstSeq)
		out[i] = readOutcome{seq: p.from, at: si.FirstTime.Add(time.Duration(frac * float64(time.Hour)))}
	}
	s.keepReads(context.Background(), &w.snap, plan, out)
	s.pruneReads()
	for _, c := range w.snap.Consumers {
		if !c.OldestTime.IsZero() {
			exact++
		}
	}
	return reads, exact
}

// The read budget at 10,000 nodes, counted on the planning the sampler
// runs every tick (the reads themselves are exercised against a real
// server in timelag_test.go): never more than the budget, all of it while
// nodes need reading, the most lagging first; floors that stay still cost
// nothing again; no node waiting, no read.
func TestReadBudgetAtTenThousandNodes(t *testing.T) {
	const budget = DefaultTimeLagReads
	t.Run("all lagging, floors still", func(t *testing.T) {
		w := newTenThousand(true)
		s := New(nil, Config{})
		exactBefore := 0
		for tick := range 5 {
			reads, exact := w.tick(s, false)
			if reads > budget || reads < budget-1 { // a two-filter node may not fit the last slot
				t.Fatalf("tick %d: %d reads, want %d", tick, reads, budget)
			}
			if exact <= exactBefore {
				t.Fatalf("tick %d: %d exact, no more than before (%d): standing reads must cost nothing", tick, exact, exactBefore)
			}
			exactBefore = exact
		}
	})
	t.Run("all lagging, floors moving", func(t *testing.T) {
		w := newTenThousand(true)
		s := New(nil, Config{})
		for tick := range 3 {
			reads, exact := w.tick(s, true)
			if reads > budget || reads < budget-1 {
				t.Fatalf("tick %d: %d reads, want %d", tick, reads, budget)
			}
			if exact > budget {
				t.Fatalf("tick %d: %d exact with every floor moved", tick, exact)
			}
		}
		// The ones read are the furthest behind: lowest ack floors (among
		// nodes of one filter: one of two may be passed over for the last
		// slot).
		var read, rest []uint64
		for i, c := range w.snap.Consumers {
			if i%1000%10 == 0 {
				continue
			}
			if c.OldestTime.IsZero() {
				rest = append(rest, c.AckFloorStream)
			} else {
				read = append(read, c.AckFloorStream)
			}
		}
		if slices.Max(read) > slices.Min(rest) {
			t.Errorf("a node at floor %d was read while one at %d was not", slices.Max(read), slices.Min(rest))
		}
	})
	t.Run("none lagging", func(t *testing.T) {
		w := newTenThousand(false)
		s := New(nil, Config{})
		if reads, exact := w.tick(s, false); reads != 0 || exact != 0 {
			t.Errorf("%d reads, %d exact with nothing waiting", reads, exact)
		}
	})
	t.Run("reads disabled", func(t *testing.T) {
		w := newTenThousand(true)
		s := New(nil, Config{TimeLagReads: -1})
		if reads, _ := w.tick(s, false); reads != 0 {
			t.Errorf("%d reads with reads disabled", reads)
		}
	})
}

// BenchmarkPlanTick is the sampler's own cost of time lag at 10,000 nodes
// per tick, reads aside: all lagging (floors moving, so the budget is
// spent every tick) and none lagging.
func BenchmarkPlanTick(b *testing.B) {
	for _, lagging := range []bool{true, false} {
		b.Run(fmt.Sprintf("lagging=%v", lagging), func(b *testing.B) {
			w := newTenThousand(lagging)
			s := New(nil, Config{})
			w.tick(s, true)
			b.ReportAllocs()
			for b.Loop() {
				w.tick(s, true)
			}
		})
	}
}

// BenchmarkReads is the cost of one tick's read budget alone: the default
// 100 reads of a waiting node's oldest message, against an in-process
// server, by direct get and through the message API.
func BenchmarkReads(b *testing.B) {
	srv := testutil.RunServer(b)
	nc := testutil.Connect(b, srv.ClientURL())
	js := testutil.JetStream(b, nc)
	ctx := context.Background()
	for _, direct := range []bool{true, false} {
		name := map[bool]string{true: "DIRECT", false: "API"}[direct]
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{strings.ToLower(name) + ".>"},
			Storage: jetstream.MemoryStorage, AllowDirect: direct}); err != nil {
			b.Fatal(err)
		}
		for i := range 1000 {
			// 100-byte messages on ten subjects.
			if _, err := js.Publish(ctx, fmt.Sprintf("%s.%d", strings.ToLower(name), i%10), make([]byte, 100)); err != nil {
				b.Fatal(err)
			}
		}
		b.Run("direct="+fmt.Sprint(direct), func(b *testing.B) {
			s := New(nc, Config{})
			plan := make([]readCand, DefaultTimeLagReads)
			for i := range plan {
				plan[i] = readCand{idx: i, cost: 1, from: uint64(1 + i*7), stream: name, direct: direct}
			}
			b.ReportAllocs()
			for b.Loop() {
				for i, o := range s.doReads(ctx, plan) {
					if o.err != nil || o.seq != plan[i].from {
						b.Fatalf("read %d: %d, %v", i, o.seq, o.err)
					}
				}
			}
		})
	}
}
