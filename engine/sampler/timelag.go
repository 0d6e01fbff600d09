package sampler

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/happen-dev/happen/engine/flow"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Time lag is the age of the oldest message a node has not finished: the
// first message past its ack floor that its filter matches. Listings give
// the floor, not the message's time, so the sampler reads that message
// from the stream: with a direct get ($JS.API.DIRECT.GET.<stream>, served
// by any replica from the stream's index) where the stream allows it,
// otherwise through the message API ($JS.API.STREAM.MSG.GET.<stream>),
// asking in both for the next message from the floor on that matches the
// filter, so deleted and unmatched sequences are stepped over. A consumer
// with several filters costs one read per filter.
//
// Reads are made only for nodes with work waiting, and a read stands as
// long as the node's ack floor does not move (and its message is still in
// the stream): a node that is stuck costs one read, not one a tick. What
// is left to read is bounded per tick by Config.TimeLagReads, most lagging
// first by a cheap estimate (interpolating the stream's first and last
// messages and the node's previous read). A node not read this tick gets
// no OldestTime, and the tracker estimates its time lag instead.

// DefaultTimeLagReads is the default read budget per tick. A read is one
// small request answered from the stream's index, plus the message it
// returns; a hundred direct gets take about as long as listing two hundred
// consumers (docs/performance.md), a few percent of a tick at 10,000
// nodes. The bound keeps that load fixed however many nodes lag, while
// every lagging node of an account with up to a hundred of them is exact
// at every tick, and in a larger one the hundred furthest behind are; the
// rest are estimated.
const DefaultTimeLagReads = 100

// lagRead is a read kept for a node: valid while its ack floor stays.
type lagRead struct {
	floor   uint64    // the ack floor (stream sequence) it was read above
	created time.Time // the consumer it was read for
	filter  filterSet
	seq     uint64 // what it found
	at      time.Time
}

// stands reports whether r still answers for consumer c (with filter f)
// on a stream whose first sequence is first: the same consumer, its ack
// floor where it was, and the message found still in the stream. Nothing
// older than that message can appear above an unmoved floor.
func (r *lagRead) stands(c *flow.ConsumerSample, f filterSet, first uint64) bool {
	return r != nil && r.floor == c.AckFloorStream && r.created.Equal(c.Created) &&
		r.filter.equal(f) && r.seq >= first
}

// filterSet is a consumer's filter subjects; none for the whole stream.
type filterSet struct {
	one  string
	many []string
}

func (f filterSet) subjects() []string {
	switch {
	case len(f.many) > 0:
		return f.many
	case f.one != "":
		return []string{f.one}
	}
	return []string{">"}
}

func (f filterSet) equal(o filterSet) bool {
	return f.one == o.one && slices.Equal(f.many, o.many)
}

// filtered reports whether the filters select less than the whole stream:
// a single filter equal to ">" or to the stream's only subject does not.
func (f filterSet) filtered(streamSubjects []string) bool {
	switch {
	case len(f.many) > 1:
		return true
	case len(f.many) == 1:
		return !wholeStream(f.many[0], streamSubjects)
	case f.one != "":
		return !wholeStream(f.one, streamSubjects)
	}
	return false
}

func wholeStream(filter string, streamSubjects []string) bool {
	return filter == ">" || (len(streamSubjects) == 1 && streamSubjects[0] == filter)
}

// waitingNode is a listed consumer with work waiting: a time lag to find.
type waitingNode struct {
	name   string
	filter filterSet
}

// readCand is a node whose time lag needs a read this tick.
type readCand struct {
	idx    int     // in the snapshot's consumers
	rank   float64 // estimated time lag, seconds: the highest are read first
	cost   int     // reads it takes: one per filter
	from   uint64  // the first stream sequence to look at
	stream string
	direct bool
	filter filterSet
}

// planReads is the read budget: the candidates to read this tick, most
// lagging first, their reads adding up to at most budget. A node whose
// filters would overrun what is left is passed over for cheaper ones
// further down. cands is reordered.
func planReads(cands []readCand, budget int) []readCand {
	if budget <= 0 || len(cands) == 0 {
		return nil
	}
	slices.SortFunc(cands, func(a, b readCand) int {
		// Ties (nodes at the same estimate) go by position, so which are
		// read does not change from tick to tick for no reason.
		return cmp.Or(cmp.Compare(b.rank, a.rank), cmp.Compare(a.idx, b.idx))
	})
	n := 0
	for i := range cands {
		if budget == 0 {
			break
		}
		if cands[i].cost <= budget {
			budget -= cands[i].cost
			cands[n] = cands[i]
			n++
		}
	}
	return cands[:n]
}

// estimateAge is the ranking estimate of how old the message at seq is,
// at now: linear between the known points around it (the stream's first
// and last messages, and what this node's last read found). Zero times
// are unknown points. It only orders nodes, so it may be rough.
func estimateAge(seq uint64, now time.Time, pts ...seqAt) float64 {
	var lo, hi seqAt
	for _, p := range pts {
		if p.at.IsZero() {
			continue
		}
		if p.seq <= seq && (lo.at.IsZero() || p.seq > lo.seq) {
			lo = p
		}
		if p.seq >= seq && (hi.at.IsZero() || p.seq < hi.seq) {
			hi = p
		}
	}
	var t time.Time
	switch {
	case lo.at.IsZero() && hi.at.IsZero():
		return 0
	case lo.at.IsZero():
		t = hi.at
	case hi.at.IsZero() || hi.seq == lo.seq:
		t = lo.at
	default:
		frac := float64(seq-lo.seq) / float64(hi.seq-lo.seq)
		t = lo.at.Add(time.Duration(frac * float64(hi.at.Sub(lo.at))))
	}
	return max(now.Sub(t).Seconds(), 0)
}

type seqAt struct {
	seq uint64
	at  time.Time
}

// timeLags fills OldestSeq and OldestTime of the waiting nodes of snap:
// from the reads that still stand, then with new reads within the budget.
// streams and results are the tick's, results[i] belonging to streams[i],
// and base[i] is where results[i]'s consumers start in snap.Consumers.
func (s *Sampler) timeLags(ctx context.Context, snap *flow.Snapshot, streams []streamInfo, results []streamResult, base []int) {
	plan := s.planTick(snap, streams, results, base)
	if len(plan) > 0 && ctx.Err() == nil {
		// The listing may have used up the tick: then the nodes not read
		// are estimated, as those beyond the budget are. The reads run
		// side by side, together within one request timeout, so a stream
		// that does not answer delays the tick once, not once per read.
		rctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
		out := s.doReads(rctx, plan)
		cancel()
		s.keepReads(ctx, snap, plan, out)
	}
	s.pruneReads()
}

// planTick fills the waiting nodes of snap whose reads stand, and returns
// the reads to make for the others: the budget's worth, most lagging
// first. It does no I/O. The returned slice is the sampler's scratch,
// valid until the next tick.
func (s *Sampler) planTick(snap *flow.Snapshot, streams []streamInfo, results []streamResult, base []int) []readCand {
	if s.reads == nil {
		s.reads = map[flow.NodeKey]*lagRead{}
	}
	cands := s.cands[:0]
	s.waitingKeys = s.waitingKeys[:0]
	for i := range results {
		r := &results[i]
		if r.state != listed || len(r.waiting) == 0 {
			continue
		}
		si := &streams[i]
		j := 0
		for _, wn := range r.waiting {
			// Both lists are in name order: walk them together.
			for j < len(r.consumers) && r.consumers[j].Key.Consumer < wn.name {
				j++
			}
			if j == len(r.consumers) || r.consumers[j].Key.Consumer != wn.name {
				var ok bool
				if j, ok = slices.BinarySearchFunc(r.consumers, wn.name, func(c flow.ConsumerSample, name string) int { return cmp.Compare(c.Key.Consumer, name) }); !ok {
					continue // not a node (ignored), or listed out of order
				}
			}
			idx := base[i] + j
			c := &snap.Consumers[idx]
			s.waitingKeys = append(s.waitingKeys, c.Key)
			prev := s.reads[c.Key]
			if prev.stands(c, wn.filter, si.State.FirstSeq) {
				c.OldestSeq, c.OldestTime = prev.seq, prev.at
				continue
			}
			from := max(c.AckFloorStream+1, si.State.FirstSeq)
			pts := [3]seqAt{{si.State.FirstSeq, si.State.FirstTime}, {si.State.LastSeq, si.State.LastTime}}
			if prev != nil && prev.created.Equal(c.Created) {
				pts[2] = seqAt{prev.seq, prev.at}
			}
			cands = append(cands, readCand{
				idx: idx, rank: estimateAge(from, c.At, pts[:]...), cost: len(wn.filter.subjects()),
				from: from, stream: r.name, direct: si.Config.AllowDirect, filter: wn.filter,
			})
		}
	}
	s.cands = cands
	return planReads(cands, s.budget())
}

// budget is the reads allowed per tick.
func (s *Sampler) budget() int {
	switch {
	case s.cfg.TimeLagReads < 0:
		return 0
	case s.cfg.TimeLagReads == 0:
		return DefaultTimeLagReads
	}
	return s.cfg.TimeLagReads
}

// readOutcome is what one planned read found: a sequence and its time,
// sequence 0 if there was nothing to find, or an error.
type readOutcome struct {
	seq uint64
	at  time.Time
	err error
}

// doReads makes the planned reads with bounded concurrency, each under the
// request timeout. out[i] belongs to plan[i].
func (s *Sampler) doReads(ctx context.Context, plan []readCand) []readOutcome {
	out := make([]readOutcome, len(plan))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(s.cfg.Concurrency, len(plan)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(plan) {
					return
				}
				o := &out[i]
				o.seq, o.at, o.err = s.readOldest(ctx, &plan[i])
			}
		})
	}
	wg.Wait()
	return out
}

// keepReads fills the nodes read and keeps what was found. A read that
// failed leaves its node to the tracker's estimate; failing reads are
// warned about when they begin, not at every tick.
func (s *Sampler) keepReads(ctx context.Context, snap *flow.Snapshot, plan []readCand, out []readOutcome) {
	var failed error
	for i := range plan {
		p, o := &plan[i], &out[i]
		c := &snap.Consumers[p.idx]
		switch {
		case o.err != nil:
			failed = cmp.Or(failed, o.err)
			delete(s.reads, c.Key)
		case o.seq == 0:
			// Nothing past the floor after all: acked since the listing.
			delete(s.reads, c.Key)
		default:
			c.OldestSeq, c.OldestTime = o.seq, o.at
			s.reads[c.Key] = &lagRead{floor: c.AckFloorStream, created: c.Created, filter: p.filter, seq: o.seq, at: o.at}
		}
	}
	if ctx.Err() != nil {
		failed = nil // the tick's time ran out: not the stream's fault
	}
	switch {
	case failed != nil && !s.readsFailing:
		s.readsFailing = true
		s.log.Warn("cannot read oldest messages; time lags are estimated", "error", failed)
	case failed == nil && s.readsFailing:
		s.readsFailing = false
		s.log.Info("oldest messages read again; time lags are exact")
	}
}

// pruneReads forgets the reads of nodes with nothing waiting this tick,
// those deleted among them: a read stands only while work waits.
func (s *Sampler) pruneReads() {
	if len(s.reads) == len(s.waitingKeys) {
		return // every read belongs to a waiting node
	}
	slices.SortFunc(s.waitingKeys, compareKeys)
	for k := range s.reads {
		if _, ok := slices.BinarySearchFunc(s.waitingKeys, k, compareKeys); !ok {
			delete(s.reads, k)
		}
	}
}

func compareKeys(a, b flow.NodeKey) int {
	return cmp.Or(cmp.Compare(a.Stream, b.Stream), cmp.Compare(a.Consumer, b.Consumer))
}

// readOldest finds the first message at or after p.from that the node's
// filters match: its sequence and publish time, or sequence 0 if there is
// none.
func (s *Sampler) readOldest(ctx context.Context, p *readCand) (uint64, time.Time, error) {
	var best uint64
	var bestAt time.Time
	for _, subj := range p.filter.subjects() {
		seq, at, err := s.readNext(ctx, p.stream, p.direct, p.from, subj)
		if err != nil {
			return 0, time.Time{}, err
		}
		if seq != 0 && (best == 0 || seq < best) {
			best, bestAt = seq, at
		}
	}
	return best, bestAt, nil
}

// msgGetReply is the message API's answer; the payload is skipped unread.
type msgGetReply struct {
	Error   *jetstream.APIError `json:"error"`
	Message *struct {
		Seq  uint64    `json:"seq"`
		Time time.Time `json:"time"`
	} `json:"message"`
}

// readNext asks stream for the next message from seq on matching subject.
// Sequence 0 means there is none.
func (s *Sampler) readNext(ctx context.Context, stream string, direct bool, seq uint64, subject string) (uint64, time.Time, error) {
	rctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	body, err := json.Marshal(struct {
		Seq  uint64 `json:"seq"`
		Next string `json:"next_by_subj"`
	}{seq, subject})
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("read %s from %d: %w", stream, seq, err)
	}
	subj := s.cfg.APIPrefix + ".STREAM.MSG.GET." + stream
	if direct {
		subj = s.cfg.APIPrefix + ".DIRECT.GET." + stream
	}
	msg, err := s.nc.RequestWithContext(rctx, subj, body)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("%s from %d (%s): %w", subj, seq, subject, err)
	}
	if direct {
		return directReply(msg, subj, seq)
	}
	var r msgGetReply
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		return 0, time.Time{}, fmt.Errorf("%s from %d: decode response: %w", subj, seq, err)
	}
	switch {
	case r.Error != nil && (r.Error.Code == 404 || r.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound):
		return 0, time.Time{}, nil
	case r.Error != nil:
		return 0, time.Time{}, fmt.Errorf("%s from %d: %w", subj, seq, r.Error)
	case r.Message == nil || r.Message.Seq == 0:
		return 0, time.Time{}, fmt.Errorf("%s from %d: response holds no message", subj, seq)
	}
	return r.Message.Seq, r.Message.Time, nil
}

// directReply decodes a direct get's answer: the message with its
// sequence and time in headers, or a status.
func directReply(msg *nats.Msg, subj string, seq uint64) (uint64, time.Time, error) {
	if st := msg.Header.Get("Status"); st != "" {
		if st == "404" {
			return 0, time.Time{}, nil
		}
		return 0, time.Time{}, fmt.Errorf("%s from %d: status %s %s", subj, seq, st, msg.Header.Get("Description"))
	}
	got, err := strconv.ParseUint(msg.Header.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("%s from %d: sequence header: %w", subj, seq, err)
	}
	at, err := time.Parse(time.RFC3339Nano, msg.Header.Get(jetstream.TimeStampHeaer))
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("%s from %d: time stamp header: %w", subj, seq, err)
	}
	return got, at, nil
}
