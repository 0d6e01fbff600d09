package engine

import (
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/happen-dev/happen/engine/flow"
)

// HistoryPoints is how many points of lag history the engine keeps per
// node for the web view's sparklines: with the default step, one per 5s
// over 5 minutes.
const HistoryPoints = 60

// DefaultHistoryStep is the shortest default step between two history
// points; a longer interval makes the step that interval.
const DefaultHistoryStep = 5 * time.Second

// LagHistory is the recent messagesWaiting of some nodes, one point per
// Step, the newest taken at At. Every series has the same length (at most
// HistoryPoints) and ends at At; a point is NaN where the node was not seen.
type LagHistory struct {
	Step   time.Duration
	At     time.Time
	Series [][]float32
}

// lagSeries is one node's ring of points. The point of step s lives at
// vals[s%HistoryPoints], so the ring needs no head of its own: every node
// shares the history's step count, and an axis with it. It weighs about
// 300 bytes: the ring (240), its steps (16) and the key's string headers
// (32); the key's bytes are shared with the flow state.
type lagSeries struct {
	key   flow.NodeKey
	first uint64 // step of the first point held
	end   uint64 // step of the newest point held
	vals  [HistoryPoints]float32
}

// history keeps every node's lag ring. Tick writes it, at most once per
// step; HTTP handlers read it. Its zero value is ready for use.
type history struct {
	mu     sync.RWMutex
	step   time.Duration
	steps  uint64      // steps recorded so far; the newest is steps
	at     time.Time   // when the newest step was taken
	last   *flow.State // the state seen last, recorded or not
	series []lagSeries // sorted by key, like flow.State.Nodes

	bell tickBell
}

// historyStep is the step for interval unless configured: never shorter
// than the interval, nor than DefaultHistoryStep, so the sparkline spans
// minutes whatever the interval.
func historyStep(configured, interval time.Duration) time.Duration {
	if configured > 0 {
		return max(configured, interval)
	}
	return max(interval, DefaultHistoryStep)
}

// record takes st's lag as the next point when a step has passed since the
// last one. A state already seen (a blind tick leaves the last one in
// place) is skipped, and so is most of every tick: the cost is paid once a
// step, one pass over the nodes.
func (h *history) record(st *flow.State, step, interval time.Duration) {
	if st == nil || st == h.last {
		return
	}
	h.last = st
	if h.steps > 0 {
		// Half an interval of slack keeps the points a step apart even
		// when ticks jitter around it.
		if st.At.Sub(h.at) < step-interval/2 {
			return
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	adv := uint64(1)
	if h.steps > 0 {
		// A blind spell left steps without points: count them, so the axis
		// stays time and the gap shows as a gap.
		if gap := st.At.Sub(h.at); gap >= step+step/2 {
			adv = uint64(math.Round(float64(gap) / float64(step)))
		}
	}
	h.step = step
	h.steps += adv
	h.at = st.At
	h.series = mergeSeries(h.series, st)
	s := h.steps
	for i := range st.Nodes {
		h.series[h.seriesIndex(i, st)].put(s, float32(st.Nodes[i].MessagesWaiting))
	}
}

// seriesIndex finds node i of st in h.series, which holds every node of st
// in the same order, perhaps with unobserved nodes between them.
func (h *history) seriesIndex(i int, st *flow.State) int {
	if len(h.series) == len(st.Nodes) {
		return i
	}
	j, _ := findSeries(h.series, st.Nodes[i].Key)
	return j
}

// mergeSeries returns old's series for the nodes of st, observed or
// unobserved (an unreadable node keeps its history), with new series for
// nodes seen for the first time, sorted by key. Nodes that left are dropped.
// The common case, the same nodes as last time, reuses old in place.
func mergeSeries(old []lagSeries, st *flow.State) []lagSeries {
	if len(st.Unobserved) == 0 && len(old) == len(st.Nodes) {
		same := true
		for i := range st.Nodes {
			if old[i].key != st.Nodes[i].Key {
				same = false
				break
			}
		}
		if same {
			return old
		}
	}
	keys := make([]flow.NodeKey, 0, len(st.Nodes)+len(st.Unobserved))
	for i := range st.Nodes {
		keys = append(keys, st.Nodes[i].Key)
	}
	for _, k := range st.Unobserved {
		if _, ok := findSeries(old, k); ok {
			keys = append(keys, k)
		}
	}
	if len(st.Unobserved) > 0 {
		slices.SortFunc(keys, seriesKeyOrder)
		keys = slices.CompactFunc(keys, func(a, b flow.NodeKey) bool { return a == b })
	}
	out := make([]lagSeries, len(keys))
	j := 0
	for i, k := range keys {
		for j < len(old) && seriesKeyOrder(old[j].key, k) < 0 {
			j++
		}
		if j < len(old) && old[j].key == k {
			out[i] = old[j]
			continue
		}
		out[i] = lagSeries{key: k}
	}
	return out
}

// put writes v as the point of step s, and NaN over the steps missed since
// the node's last point.
func (l *lagSeries) put(s uint64, v float32) {
	if l.first == 0 {
		l.first = s
	} else {
		for g := l.end + 1; g < s && g+HistoryPoints > s; g++ {
			l.vals[g%HistoryPoints] = float32(math.NaN())
		}
	}
	l.end = s
	l.vals[s%HistoryPoints] = v
}

// read appends the points of steps from..to (inclusive) to dst.
func (l *lagSeries) read(dst []float32, from, to uint64) []float32 {
	nan := float32(math.NaN())
	for s := from; s <= to; s++ {
		if l.first == 0 || s < l.first || s > l.end || s+HistoryPoints <= l.end {
			dst = append(dst, nan)
			continue
		}
		dst = append(dst, l.vals[s%HistoryPoints])
	}
	return dst
}

// lag returns the history of each key; an unknown key gets all NaN.
func (h *history) lag(keys []flow.NodeKey) LagHistory {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := LagHistory{Step: h.step, At: h.at, Series: make([][]float32, len(keys))}
	if h.steps == 0 {
		for i := range out.Series {
			out.Series[i] = []float32{}
		}
		return out
	}
	to := h.steps
	from := uint64(1)
	if to > HistoryPoints {
		from = to - HistoryPoints + 1
	}
	n := int(to - from + 1)
	buf := make([]float32, 0, n*len(keys))
	for i, k := range keys {
		start := len(buf)
		if j, ok := findSeries(h.series, k); ok {
			buf = h.series[j].read(buf, from, to)
		} else {
			for range n {
				buf = append(buf, float32(math.NaN()))
			}
		}
		out.Series[i] = buf[start:len(buf):len(buf)]
	}
	return out
}

// size is the number of nodes with a history.
func (h *history) size() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.series)
}

// findSeries is where k's series is in series, sorted by key, or would be.
// (A search by index: slices.BinarySearchFunc would copy each ring it
// compares.)
func findSeries(series []lagSeries, k flow.NodeKey) (int, bool) {
	i := sort.Search(len(series), func(i int) bool { return seriesKeyOrder(series[i].key, k) >= 0 })
	return i, i < len(series) && series[i].key == k
}

// seriesKeyOrder is the order of flow.State.Nodes: by stream, then
// consumer.
func seriesKeyOrder(a, b flow.NodeKey) int {
	if c := strings.Compare(a.Stream, b.Stream); c != 0 {
		return c
	}
	return strings.Compare(a.Consumer, b.Consumer)
}

// tickBell wakes whoever waits for the next tick: each waiter holds the
// channel of the tick to come, closed when it has completed.
type tickBell struct {
	mu sync.Mutex
	n  uint64
	ch chan struct{}
}

func (b *tickBell) ring() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n++
	if b.ch != nil {
		close(b.ch)
		b.ch = nil
	}
}

func (b *tickBell) next() (uint64, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch == nil {
		b.ch = make(chan struct{})
	}
	return b.n, b.ch
}

// afterTick runs at the end of every tick, blind or not: it adds the
// tick's lag to the history and wakes whoever waits for a tick.
func (e *Engine) afterTick() {
	if v := e.view.Load(); v != nil {
		e.history.record(v.st, historyStep(e.cfg.HistoryStep, e.cfg.Interval), e.cfg.Interval)
	}
	e.history.bell.ring()
}

// Ticks returns how many ticks have completed and a channel closed when
// the next one completes, blind or not. The web view's live stream waits
// on it.
func (e *Engine) Ticks() (uint64, <-chan struct{}) { return e.history.bell.next() }

// LagHistory returns the recent messagesWaiting of each node in keys,
// oldest first, for sparklines.
func (e *Engine) LagHistory(keys []flow.NodeKey) LagHistory { return e.history.lag(keys) }

// Interval is the engine's sampling interval.
func (e *Engine) Interval() time.Duration { return e.cfg.Interval }
