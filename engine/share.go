package engine

import (
	"context"
	"slices"
	"time"

	"github.com/happen-dev/happen/engine/flow"
	"github.com/happen-dev/happen/engine/members"
	"github.com/happen-dev/happen/engine/summary"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Past what one engine can watch, several share the streams (scale-out):
// Config.Members lists the live engines in the KV bucket happen_members and
// assigns each stream to one of them by rendezvous hashing, so a join or a
// leave moves only the streams that must move. Every member samples its
// own streams, tracks their nodes with its own flow windows and publishes
// the nodes' metrics each tick on a JetStream subject (engine/summary).
// The leader, elected through the lease as without sharing, reads every
// member's latest summary, adds its own, computes the groups and the system
// over all of them (flow.Aggregator) and evaluates the rules: one voice,
// as with a single engine. The others, members, evaluate, emit and act on
// nothing.
//
// A stream that changes hands is new to its new owner: its nodes warm up
// there, and rules neither fire nor resolve on a warming node, so a
// member leaving raises nothing false. While no member's fresh summary
// covers a stream (the old owner gone, the new one not yet sampled it),
// its nodes are unobserved, never left: a node leaves only when the
// member owning its stream samples the stream without it, or the stream
// is no longer listed.

// RoleMember is the role of an engine sharing the streams that does not
// lead.
const RoleMember = "member"

// summaryChunk asks for summary messages as large as the server takes (the
// publisher keeps them under its max payload, 1 MB by default, with room
// for headers): about 12,000 nodes a message, so a member's summary is
// usually one message, which the leader decodes without joining chunks.
const summaryChunk = 1 << 20

// share is one engine's part in sharing the streams.
type share struct {
	members *members.Members
	js      jetstream.JetStream
	pub     *summary.Publisher
	agg     *flow.Aggregator
	// stale is how old a member's summary may be and still stand: two
	// missed samples (flow.BlindReset, after which an engine's own
	// windows no longer span its gap) and the one in flight.
	stale time.Duration

	streamOK bool      // the summary stream exists
	retryAt  time.Time // no attempt to create it before this
	seq      uint64
	pubFail  bool // the last publish failed (logged once until one works)

	// While leading: the collector of the others' summaries, when this
	// tenure began, and whether every live member's summary has come in
	// since (or the wait for one ran out).
	col       *summary.Collector
	stopCol   context.CancelFunc
	leadSince time.Time
	ready     bool
	colFail   bool           // the last try to read the summaries failed (logged once)
	known     []flow.NodeKey // nodes in the last combined state, observed or not, sorted
}

func newShare(js jetstream.JetStream, m *members.Members, cfg *Config) *share {
	return &share{
		members: m,
		js:      js,
		pub:     summary.NewPublisher(js, cfg.Instance, summaryChunk),
		agg:     flow.NewAggregator(cfg.Flow),
		stale:   flow.BlindReset(cfg.Interval) + cfg.Interval,
	}
}

// publishShare sends this engine's nodes of the tick for the leader, and
// returns them as a summary to combine when it leads.
func (e *Engine) publishShare(ctx context.Context, st *flow.State, snap *flow.Snapshot) *summary.Part {
	s := e.share
	s.seq++
	p := &summary.Part{
		Member:     e.cfg.Instance,
		Seq:        s.seq,
		At:         snap.At,
		Nodes:      st.Nodes,
		Unobserved: st.Unobserved,
	}
	if snap.Share != nil {
		p.Owned = snap.Share.Owned
	}
	now := time.Now()
	if !s.streamOK && now.Before(s.retryAt) {
		return p
	}
	pctx, cancel := context.WithTimeout(ctx, max(e.cfg.Interval, time.Second))
	defer cancel()
	if !s.streamOK {
		if err := summary.EnsureStream(pctx, s.js, summary.Config{Replicas: e.cfg.StateReplicas, MaxAge: 2 * s.stale}); err != nil {
			s.retryAt = now.Add(s.stale)
			if !s.pubFail {
				e.log.Error("cannot create the summary stream; the leader does not see this engine's streams until it can", "stream", summary.Stream, "retry_in", s.stale, "error", err)
			}
			s.pubFail = true
			e.met.summaries.WithLabelValues("error").Inc()
			return p
		}
		s.streamOK = true
	}
	if err := s.pub.Publish(pctx, p); err != nil {
		// The stream may be gone (deleted by hand): make sure of it again
		// before the next summary.
		s.streamOK = false
		if !s.pubFail {
			e.log.Error("cannot publish this engine's summary; the leader sees its streams as unobserved until one goes through", "error", err)
		}
		s.pubFail = true
		e.met.summaries.WithLabelValues("error").Inc()
		return p
	}
	if s.pubFail {
		e.log.Info("summaries published again")
	}
	s.pubFail = false
	e.met.summaries.WithLabelValues("ok").Inc()
	return p
}

// reset forgets what a tenure read of the summaries: on every change of
// role, and when Run returns. A new tenure starts reading in combine.
func (s *share) reset() {
	if s.col != nil {
		s.stopCol()
		s.col.Stop()
		s.col, s.stopCol = nil, nil
	}
	s.ready, s.known = false, nil
}

// start begins reading the others' summaries for a tenure; on failure it
// is tried again at the next tick, and the engine judges nothing meanwhile.
func (s *share) start(ctx context.Context, e *Engine) {
	s.reset()
	s.leadSince = time.Now()
	cctx, cancel := context.WithCancel(ctx)
	// A leader elected before any member published makes the stream
	// itself: the members' first summaries then have somewhere to go.
	ectx, ecancel := context.WithTimeout(cctx, max(e.cfg.Interval, time.Second))
	err := summary.EnsureStream(ectx, s.js, summary.Config{Replicas: e.cfg.StateReplicas, MaxAge: 2 * s.stale})
	ecancel()
	col := summary.NewCollector(s.js, summary.CollectorConfig{Self: e.cfg.Instance, Stale: s.stale, Logger: e.log})
	if err == nil {
		err = col.Start(cctx)
	}
	if err != nil {
		cancel()
		if !s.colFail {
			e.log.Error("cannot read the members' summaries; judging nothing until it can", "stream", summary.Stream, "error", err)
		}
		s.colFail = true
		return
	}
	if s.colFail {
		e.log.Info("reading the members' summaries again")
	}
	s.streamOK, s.colFail = true, false
	s.col, s.stopCol = col, cancel
}

// combine returns the flow over every member's nodes, own included, with
// the streams no fresh summary covers (their nodes unobserved). It returns
// false while a new leader waits for the members' summaries: judging before
// they came in would read their nodes as gone.
func (e *Engine) combine(ctx context.Context, own *summary.Part, ownSnap *flow.Snapshot, now time.Time) (*flow.State, []string, bool) {
	s := e.share
	if s.col == nil {
		s.start(ctx, e)
		if s.col == nil {
			return nil, nil, false
		}
	}
	// The collector reads with an ordered consumer, which the client
	// makes again when it is lost, the stream deleted and made again
	// included (TestScenarioShareSummariesDeleted).
	others := s.col.Latest(time.Now())
	parts := append(others, own)
	if !s.ready {
		have := map[string]bool{}
		for _, p := range parts {
			have[p.Member] = true
		}
		all := true
		for _, m := range s.members.Live() {
			all = all && have[m]
		}
		if !all && time.Since(s.leadSince) < s.stale {
			return nil, nil, false
		}
		s.ready = true
	}
	var listed []string
	if ownSnap.Share != nil {
		listed = ownSnap.Share.Listed
	}
	st, known, unread := mergeParts(now, parts, s.members.Owner, listed, s.known)
	s.known = known
	// Every engine samples every stream itself (only the consumers are
	// shared), so this engine's own streams are the system's, counted
	// once whatever the members' views during a handover.
	rate, rateKnown, streams := e.tracker.StreamTotals()
	s.agg.Combine(st, rate, rateKnown, streams)
	return st, unread, true
}

// mergeParts combines the members' summaries: every node, each stream's
// from one summary, in key order; the nodes not readable; and, against
// known (the last merge's nodes, sorted), the nodes that left. owner names
// a stream's owner by this engine's view of the members; listed is the
// streams this engine's own tick listed, sorted. It returns the state
// without groups and system, the keys to pass as known next time, and the
// listed streams no summary covers.
func mergeParts(now time.Time, parts []*summary.Part, owner func(string) string, listed []string, known []flow.NodeKey) (st *flow.State, next []flow.NodeKey, unread []string) {
	// Each stream's nodes come from one summary: its owner's by this
	// engine's view of the members, else the first that sampled it (views
	// differ for a moment after a join or a leave).
	from := map[string]string{}
	for _, p := range parts {
		for _, name := range p.Owned {
			if cur, ok := from[name]; !ok || (cur != p.Member && owner(name) == p.Member) {
				from[name] = p.Member
			}
		}
	}
	// Each summary's nodes are sorted by key, and each stream's come from
	// one summary: merging keeps them sorted, each node copied once (a
	// sort of 30,000 nodes of 400-odd bytes would move each many times).
	n := 0
	type head struct {
		nodes  []flow.Node
		member string
	}
	heads := make([]head, 0, len(parts))
	for _, p := range parts {
		n += len(p.Nodes)
		if nodes := p.Nodes; len(nodes) > 0 {
			byKey := func(a, b flow.Node) int { return flow.CompareKeys(a.Key, b.Key) }
			if !slices.IsSortedFunc(nodes, byKey) {
				// Not a tracker's order: sorted here rather than trusted,
				// on a copy (the part is shared with the collector).
				nodes = slices.Clone(nodes)
				slices.SortFunc(nodes, byKey)
			}
			heads = append(heads, head{nodes, p.Member})
		}
	}
	st = &flow.State{At: now, Nodes: make([]flow.Node, 0, n)}
	// A stream's nodes are a run in each summary holding them, and only
	// one summary's run is kept: runs, taken stream by stream, keep the
	// key order, and move in one copy each.
	for len(heads) > 0 {
		m := 0
		for h := 1; h < len(heads); h++ {
			if heads[h].nodes[0].Key.Stream < heads[m].nodes[0].Key.Stream {
				m = h
			}
		}
		nodes := heads[m].nodes
		stream := nodes[0].Key.Stream
		end := 1
		for end < len(nodes) && nodes[end].Key.Stream == stream {
			end++
		}
		if from[stream] == heads[m].member {
			st.Nodes = append(st.Nodes, nodes[:end]...)
		}
		if heads[m].nodes = nodes[end:]; len(heads[m].nodes) == 0 {
			heads = slices.Delete(heads, m, m+1)
		}
	}
	for _, p := range parts {
		for _, k := range p.Unobserved {
			if from[k.Stream] == p.Member {
				st.Unobserved = append(st.Unobserved, k)
			}
		}
	}
	slices.SortFunc(st.Unobserved, flow.CompareKeys)
	// Nodes of the last combined state absent now: left, or unobserved.
	// Both lists are sorted, so one walk finds them.
	cur := mergeKeys(st.Nodes, st.Unobserved, make([]flow.NodeKey, 0, len(st.Nodes)+len(st.Unobserved)))
	var carried []flow.NodeKey
	for i, k := 0, 0; i < len(known); i++ {
		key := known[i]
		for k < len(cur) && flow.CompareKeys(cur[k], key) < 0 {
			k++
		}
		if k < len(cur) && cur[k] == key {
			continue
		}
		_, isListed := slices.BinarySearch(listed, key.Stream)
		if _, covered := from[key.Stream]; covered || !isListed {
			st.Left = append(st.Left, key)
			continue
		}
		carried = append(carried, key)
	}
	if len(carried) > 0 {
		st.Unobserved = append(st.Unobserved, carried...)
		slices.SortFunc(st.Unobserved, flow.CompareKeys)
		cur = mergeKeys(st.Nodes, st.Unobserved, cur[:0])
	}
	for _, name := range listed {
		if _, ok := from[name]; !ok {
			unread = append(unread, name)
		}
	}
	return st, cur, unread
}

// registerShareMetrics exposes the sharing: the live members, the streams
// this engine owns, and the reassignments (changes of the live set) seen.
func registerShareMetrics(reg prometheus.Registerer, m *members.Members, owned func() float64) {
	if reg == nil || m == nil {
		return
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "happen_members", Help: "Engines sharing the streams, live as this engine sees them.",
		}, func() float64 { return float64(len(m.Live())) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "happen_owned_streams", Help: "Streams this engine sampled as their owner at the last tick.",
		}, owned),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "happen_reassignments_total", Help: "Changes of the live members this engine saw, each reassigning streams.",
		}, func() float64 { return float64(m.Status().Changes) }),
	)
}

// mergeKeys appends to out the keys of nodes and unobserved, both sorted
// by key, in order.
func mergeKeys(nodes []flow.Node, unobserved []flow.NodeKey, out []flow.NodeKey) []flow.NodeKey {
	i, j := 0, 0
	for i < len(nodes) || j < len(unobserved) {
		if j == len(unobserved) || (i < len(nodes) && flow.CompareKeys(nodes[i].Key, unobserved[j]) <= 0) {
			out = append(out, nodes[i].Key)
			i++
			continue
		}
		out = append(out, unobserved[j])
		j++
	}
	return out
}
