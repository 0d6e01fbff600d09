// Package sampler reads JetStream flow state for the engine's tick loop: one
// Sample lists every stream the account can see and every consumer of each
// stream, and turns them into a flow.Snapshot.
//
// Each tick costs one paged $JS.API.STREAM.LIST pass and one paged
// $JS.API.CONSUMER.LIST.<stream> pass per stream (both return full infos,
// 256 per page). Consumer listings run with bounded concurrency, each
// request under its own timeout, so one slow or failing stream makes only
// that stream unobserved for the tick. The only per-consumer requests are
// the reads of the oldest message a lagging node has not finished, for its
// time lag: at most Config.TimeLagReads a tick, and none for a node whose
// ack floor has not moved since its last read (see timelag.go).
//
// With Config.System, a connection in the system account, a tick instead
// reads every server's JSZ report with one request, keeps each stream's
// and consumer's values from its leader's report, and takes configs from
// a cache the listing requests fill when something changes (see jsz.go).
// The snapshot is the same; on failure the tick lists as above.
//
// A consumer's leader is read only from a clustered server, which names it;
// a single server reports none, and ConsumerSample.Leader stays empty.
//
// A consumer is a node. Its id is the metadata value happen.node when set,
// otherwise the consumer name; its group is happen.group when set, otherwise
// empty. Both end up in NATS subjects, so a value that is empty, longer than
// 128 bytes, not UTF-8, or contains whitespace, a control character, '.',
// '*' or '>' is refused: the fallback is used and a warning is logged once
// per consumer and value.
//
// Not every consumer is an application node. Skipped are:
//   - consumers whose metadata happen.ignore is "true";
//   - consumers on the internal streams behind KV buckets ("KV_...") and
//     object stores ("OBJ_..."), such as KV watchers, unless they carry
//     happen.node metadata. Such a stream is itself left out of
//     Snapshot.Streams unless one of its consumers is a node, so bucket
//     writes do not count as publishing.
//
// Start subscribes to the consumer advisories for max deliveries, naks and
// terminated messages and counts them per consumer; the counts are
// cumulative and appear in every ConsumerSample. A consumer's counts are
// dropped once a successful listing shows it gone.
package sampler

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/happen-dev/happen/engine/flow"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Consumer metadata keys read by the sampler.
const (
	MetadataNode   = "happen.node"
	MetadataGroup  = "happen.group"
	MetadataIgnore = "happen.ignore"
)

// Config tunes a Sampler. The zero value is usable.
type Config struct {
	APIPrefix   string        // JetStream API subject prefix; default "$JS.API"
	Timeout     time.Duration // per JetStream API request; default 2s
	Concurrency int           // streams listed, or messages read, at once; default 8
	// TimeLagReads bounds the messages read per tick for exact time lags
	// (see timelag.go); default DefaultTimeLagReads, negative for none
	// (every time lag is then estimated).
	TimeLagReads int
	Logger       *slog.Logger // default: discard
	// System, if set, is a connection in the system account: each tick
	// then reads every server's JSZ report through it, one request per
	// server, instead of listing consumers stream by stream (see jsz.go).
	// Time lag reads and advisories stay on the normal connection.
	System *nats.Conn
	// Account is the account the JSZ reports are read for; default: the
	// account of the normal connection, asked of the server once.
	Account string
	// Owns, if set, says which streams are this sampler's to read when
	// several engines share the work: the others are listed (their names
	// go to Snapshot.Share, their samples to Snapshot.Streams) but their
	// consumers are neither read nor reported. It is called for every stream every tick, from the
	// sampling goroutine; nil means every stream.
	Owns func(stream string) bool
}

// Sampler produces flow snapshots from a NATS connection. Sample calls are
// serialised; Start, Stop and Sample may be called from any goroutine.
type Sampler struct {
	nc  *nats.Conn
	cfg Config
	log *slog.Logger

	streamListSubj  string
	streamNamesSubj string
	streamInfoPre   string
	consumerListPre string

	adv *advisories
	jsz *jszSource // nil: no system access

	life    sync.Mutex // guards what follows
	stop    chan struct{}
	done    chan struct{}
	runCtx  context.Context // the running Start's context
	started bool

	mu      sync.Mutex          // serialises Sample and guards what follows
	warned  map[warnKey]string  // odd metadata already warned about, by consumer and key
	failing map[string]struct{} // streams whose consumers could not be listed last time
	streams streamPage          // reused stream list page
	infos   []streamInfo        // reused stream list
	missing []string            // reused missing stream names
	body    []byte              // reused stream list request
	workers []*worker           // reused per-worker buffers
	results []streamResult      // reused per-stream results
	// hadConsumers holds the streams that had consumers (or could not be
	// listed) last tick: only those are listed even when the stream list
	// says they have none now, so a count that lags never hides a node.
	hadConsumers map[string]struct{}
	// While the stream list times out, streams are read one by one until
	// byOneUntil; infoFailing holds those whose info did not come (byone.go).
	byOneUntil  time.Time
	infoFailing map[string]struct{}

	// Time lag reads (timelag.go): those that stand, per node, and the
	// tick's scratch.
	reads        map[flow.NodeKey]*lagRead
	readsFailing bool
	cands        []readCand
	waitingKeys  []flow.NodeKey
	base         []int
}

// New returns a Sampler reading through nc. It does no I/O.
func New(nc *nats.Conn, cfg Config) *Sampler {
	if cfg.APIPrefix == "" {
		cfg.APIPrefix = "$JS.API"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 8
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Sampler{
		nc:              nc,
		cfg:             cfg,
		log:             cfg.Logger,
		streamListSubj:  cfg.APIPrefix + ".STREAM.LIST",
		streamNamesSubj: cfg.APIPrefix + ".STREAM.NAMES",
		streamInfoPre:   cfg.APIPrefix + ".STREAM.INFO.",
		consumerListPre: cfg.APIPrefix + ".CONSUMER.LIST.",
		adv:             newAdvisories(cfg.Logger),
		warned:          map[warnKey]string{},
		failing:         map[string]struct{}{},
	}
	if cfg.System != nil {
		s.jsz = newJSZSource(cfg.System, cfg.Account)
	}
	return s
}

// Start subscribes to consumer advisories. The subscriptions end when ctx
// ends or Stop is called. It fails only if the subscriptions cannot be made;
// while disconnected, the client makes them on reconnect.
func (s *Sampler) Start(ctx context.Context) error {
	s.life.Lock()
	defer s.life.Unlock()
	if s.started {
		if s.runCtx.Err() == nil {
			return errors.New("sampler already started")
		}
		<-s.done // ended with its context: start again once it is tidied up
	}
	subs, err := s.adv.subscribe(s.nc)
	if err != nil {
		return err
	}
	if s.jsz != nil {
		csubs, err := s.jsz.subscribe(s.nc)
		if err != nil {
			for _, sub := range subs {
				_ = sub.Unsubscribe()
			}
			return err
		}
		subs = append(subs, csubs...)
	}
	if s.nc.IsConnected() {
		// Servers publish advisories only while someone listens: make sure
		// the interest is registered before Start returns.
		fctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
		if err := s.nc.FlushWithContext(fctx); err != nil {
			s.log.Warn("advisory subscriptions not yet confirmed by the server", "error", err)
		}
		cancel()
	}
	stop, done := make(chan struct{}), make(chan struct{})
	s.stop, s.done, s.runCtx, s.started = stop, done, ctx, true
	go func() {
		defer close(done)
		select {
		case <-ctx.Done():
		case <-stop:
		}
		for _, sub := range subs {
			_ = sub.Unsubscribe() // fails only on a closed connection, where it is moot
		}
		if s.jsz != nil {
			s.jsz.stopAudit()
		}
	}()
	return nil
}

// Stop ends the advisory subscriptions and waits for them to be removed.
// Stop without Start does nothing. Start may be called again after Stop or
// once the previous Start's context has ended.
func (s *Sampler) Stop() {
	s.life.Lock()
	defer s.life.Unlock()
	if !s.started {
		return
	}
	close(s.stop)
	<-s.done
	s.started = false
}

// stream outcomes of one tick
const (
	listed  = iota // consumers listed completely
	gone           // stream deleted since the stream list was read
	failed         // consumers could not be listed: the stream is unobserved
	notMine        // another engine samples the stream (Config.Owns)
)

type streamResult struct {
	name       string
	subjects   []string // the stream's subjects
	state      int
	skip       bool // no consumers, by the stream list and by the last tick
	err        error
	listedAt   time.Time // local time the consumer listing began
	consumers  []flow.ConsumerSample
	unobserved []flow.NodeKey
	odd        []oddValue
	waiting    []waitingNode // consumers with work waiting, for time lag
}

// worker holds one listing goroutine's reusable buffers.
type worker struct {
	page    consumerPage
	infos   []consumerInfo
	missing []string
	body    []byte
}

// Sample reads the state of every stream and consumer. It returns an error
// when the stream list cannot be read at all (not connected, timeout, API
// error), so the caller is blind for this tick, or when ctx is cancelled. A
// stream whose consumers cannot be listed in time, including every stream
// not yet listed when ctx's deadline passes, is reported in
// Snapshot.UnobservedStreams instead.
func (s *Sampler) Sample(ctx context.Context) (flow.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	start := time.Now()
	if !s.nc.IsConnected() {
		return flow.Snapshot{}, fmt.Errorf("list streams: not connected to NATS (connection %s)", s.nc.Status())
	}
	streams, missing, results, viaJSZ := s.sampleJSZ(ctx, start)
	if err := ctx.Err(); errors.Is(err, context.Canceled) {
		return flow.Snapshot{}, fmt.Errorf("sample through system access: %w", err)
	}
	if !viaJSZ {
		var err error
		streams, missing, err = s.listStreams(ctx, start)
		if err != nil {
			return flow.Snapshot{}, fmt.Errorf("list streams: %w", err)
		}

		results = s.listConsumers(ctx, streams)
		if err := ctx.Err(); errors.Is(err, context.Canceled) {
			// The caller gave up on this tick; a deadline instead leaves the
			// streams not yet listed unobserved.
			return flow.Snapshot{}, fmt.Errorf("list consumers: %w", err)
		}
	}

	snap := flow.Snapshot{
		At:      start,
		Streams: make([]flow.StreamSample, 0, len(streams)),
	}
	if s.cfg.Owns != nil {
		snap.Share = &flow.Share{}
	}
	for _, name := range missing {
		if snap.Share != nil {
			snap.Share.Listed = append(snap.Share.Listed, name)
			if !s.cfg.Owns(name) {
				continue
			}
			snap.Share.Owned = append(snap.Share.Owned, name)
		}
		snap.UnobservedStreams = append(snap.UnobservedStreams, name)
	}
	var odd []oddValue
	n := 0
	for i := range results {
		n += len(results[i].consumers)
	}
	snap.Consumers = make([]flow.ConsumerSample, 0, n)
	s.base = s.base[:0]
	for i := range results {
		r := &results[i]
		si := &streams[i]
		if viaJSZ && s.cfg.Owns != nil && r.state != gone && !s.cfg.Owns(r.name) {
			// A server's report holds every stream; listing asked only
			// for this sampler's (listConsumers).
			r.state, r.listedAt = notMine, time.Now()
		}
		s.noteFailure(r)
		s.base = append(s.base, len(snap.Consumers))
		if snap.Share != nil && r.state != gone {
			snap.Share.Listed = append(snap.Share.Listed, r.name)
			if r.state != notMine {
				snap.Share.Owned = append(snap.Share.Owned, r.name)
			}
		}
		switch r.state {
		case gone:
			continue
		case notMine:
			// Another engine reads its consumers, but every engine keeps
			// every stream's sample: the system's publish rate is over all
			// of them, and the leader computes it from its own tick.
			if !isInternal(r.name) {
				snap.Streams = append(snap.Streams, streamSample(r.name, si))
			}
			continue
		case failed:
			snap.UnobservedStreams = append(snap.UnobservedStreams, r.name)
		}
		snap.Consumers = append(snap.Consumers, r.consumers...)
		snap.Unobserved = append(snap.Unobserved, r.unobserved...)
		odd = append(odd, r.odd...)
		if isInternal(r.name) && len(r.consumers) == 0 {
			continue
		}
		snap.Streams = append(snap.Streams, streamSample(r.name, si))
	}
	s.timeLags(ctx, &snap, streams, results, s.base)
	if snap.Share != nil {
		slices.Sort(snap.Share.Listed)
		slices.Sort(snap.Share.Owned)
	}

	if s.hadConsumers == nil {
		s.hadConsumers = map[string]struct{}{}
	}
	clear(s.hadConsumers)
	for i := range results {
		r := &results[i]
		if r.state == failed || len(r.consumers) > 0 || len(r.unobserved) > 0 {
			s.hadConsumers[r.name] = struct{}{}
		}
	}

	s.warnOdd(odd)
	v := view{start: start, results: results, missing: missing}
	s.adv.prune(v.keepCounters)
	s.pruneWarned(&v, odd)
	s.pruneFailing(&v)
	return snap, nil
}

// streamSample is what a snapshot keeps of a listed stream.
func streamSample(name string, si *streamInfo) flow.StreamSample {
	return flow.StreamSample{
		Name:              name,
		At:                orNow(si.TimeStamp),
		LastSeq:           si.State.LastSeq,
		Msgs:              si.State.Msgs,
		FirstSeq:          si.State.FirstSeq,
		FirstTime:         si.State.FirstTime,
		LastTime:          si.State.LastTime,
		Bytes:             si.State.Bytes,
		MaxMsgs:           si.Config.MaxMsgs,
		MaxBytes:          si.Config.MaxBytes,
		MaxAge:            time.Duration(max(si.Config.MaxAge, 0)),
		MaxMsgsPerSubject: si.Config.MaxMsgsPerSubject,
		DiscardNew:        si.Config.Discard == "new",
	}
}

// listConsumers lists the consumers of every stream with bounded
// concurrency. results[i] belongs to streams[i].
func (s *Sampler) listConsumers(ctx context.Context, streams []streamInfo) []streamResult {
	if cap(s.results) < len(streams) {
		s.results = append(s.results[:cap(s.results)], make([]streamResult, len(streams)-cap(s.results))...)
	}
	results := s.results[:len(streams)]
	for i := range results {
		r := &results[i]
		*r = streamResult{
			name:       streams[i].Config.Name,
			subjects:   streams[i].Config.Subjects,
			consumers:  r.consumers[:0],
			unobserved: r.unobserved[:0],
			odd:        r.odd[:0],
			waiting:    r.waiting[:0],
		}
		if s.cfg.Owns != nil && !s.cfg.Owns(r.name) {
			r.state, r.skip, r.listedAt = notMine, true, time.Now()
			continue
		}
		// Streams with no consumers (KV buckets nobody watches, archives)
		// cost no request: the stream list already said so.
		if _, had := s.hadConsumers[r.name]; !had && streams[i].State.Consumers == 0 {
			r.state, r.skip, r.listedAt = listed, true, time.Now()
		}
	}
	nw := min(s.cfg.Concurrency, len(streams))
	for len(s.workers) < nw {
		s.workers = append(s.workers, &worker{})
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for _, w := range s.workers[:nw] {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(results) {
					return
				}
				if !results[i].skip {
					s.listStream(ctx, w, &results[i])
				}
			}
		})
	}
	wg.Wait()
	return results
}

// listStream lists the consumers of one stream into r.
func (s *Sampler) listStream(ctx context.Context, w *worker, r *streamResult) {
	r.listedAt = time.Now()
	if err := ctx.Err(); err != nil {
		r.state, r.err = failed, err
		return
	}
	infos, missing, err := listAll(ctx, s, s.consumerListPre+r.name, &w.page, consumerName, w.infos[:0], w.missing[:0], &w.body)
	w.infos, w.missing = infos[:0], missing[:0]
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamNotFound {
			r.state = gone
			return
		}
		r.state, r.err = failed, err
		return
	}
	r.state = listed
	for _, name := range missing {
		r.unobserved = append(r.unobserved, flow.NodeKey{Stream: r.name, Consumer: name})
	}
	internal := isInternal(r.name)
	for i := range infos {
		r.add(&infos[i], internal)
	}
	r.finish(s.adv)
}

// add appends the sample of one consumer to r, unless it is not a node.
// internal says r's stream backs a KV bucket or an object store.
func (r *streamResult) add(ci *consumerInfo, internal bool) {
	md := &ci.Config.Metadata
	if md.ignore || (internal && !md.hasNode) {
		return
	}
	key := flow.NodeKey{Stream: r.name, Consumer: ci.Name}
	id := ci.Name
	if md.hasNode {
		if why := invalidID(md.node); why == "" {
			id = md.node
		} else {
			r.odd = append(r.odd, oddValue{key: warnKey{key, MetadataNode}, value: md.node, reason: why, fallback: ci.Name})
		}
	}
	group := ""
	if md.hasGroup {
		if why := invalidID(md.group); why == "" {
			group = md.group
		} else {
			r.odd = append(r.odd, oddValue{key: warnKey{key, MetadataGroup}, value: md.group, reason: why, fallback: ""})
		}
	}
	filter := filterSet{one: ci.Config.FilterSubject, many: ci.Config.FilterSubjects}
	if ci.NumPending > 0 || ci.NumAckPending > 0 {
		r.waiting = append(r.waiting, waitingNode{name: ci.Name, filter: filter})
	}
	r.consumers = append(r.consumers, flow.ConsumerSample{
		Key:             key,
		NodeID:          id,
		Group:           group,
		At:              orNow(ci.TimeStamp),
		Created:         ci.Created,
		NumPending:      ci.NumPending,
		NumAckPending:   nonNeg(ci.NumAckPending),
		NumRedelivered:  nonNeg(ci.NumRedelivered),
		NumWaiting:      nonNeg(ci.NumWaiting),
		Delivered:       ci.Delivered.Consumer,
		DeliveredStream: ci.Delivered.Stream,
		AckFloor:        ci.AckFloor.Consumer,
		AckFloorStream:  ci.AckFloor.Stream,
		LastDelivery:    ci.Delivered.Last,
		LastAck:         ci.AckFloor.Last,
		Leader:          ci.Cluster.Leader,
		Push:            ci.Config.DeliverSubject != "",
		PushBound:       ci.PushBound,
		Paused:          ci.Paused,
		AckNone:         ci.Config.AckPolicy == "none",
		AckWait:         time.Duration(max(ci.Config.AckWait, 0)),
		Filtered:        filter.filtered(r.subjects),
	})
}

// finish sorts r's consumers by name, so the tick's bookkeeping can binary
// search, and fills in their advisory counts.
func (r *streamResult) finish(adv *advisories) {
	slices.SortFunc(r.consumers, func(a, b flow.ConsumerSample) int { return cmp.Compare(a.Key.Consumer, b.Key.Consumer) })
	adv.fill(r.consumers)
}

// noteFailure logs when a stream's consumers become unreadable and when
// they are readable again, not on every tick in between.
func (s *Sampler) noteFailure(r *streamResult) {
	_, was := s.failing[r.name]
	switch {
	case r.state == failed && !was:
		s.failing[r.name] = struct{}{}
		s.log.Warn("cannot list consumers; the stream's nodes are unobserved", "stream", r.name, "error", r.err)
	case r.state == listed && was:
		delete(s.failing, r.name)
		s.log.Info("consumers listed again", "stream", r.name)
	case r.state == gone:
		delete(s.failing, r.name)
	}
}

func (s *Sampler) pruneFailing(v *view) {
	for name := range s.failing {
		if _, ok := v.result(name); !ok {
			delete(s.failing, name)
		}
	}
}

// view answers, after a tick, what its listings proved about a consumer.
type view struct {
	start   time.Time
	results []streamResult // sorted by stream name
	missing []string       // sorted
}

func (v *view) result(stream string) (*streamResult, bool) {
	i, ok := slices.BinarySearchFunc(v.results, stream, func(r streamResult, name string) int { return cmp.Compare(r.name, name) })
	if !ok {
		return nil, false
	}
	return &v.results[i], true
}

// conclusive reports whether this tick proved the consumer key present or
// absent, and since when the proof holds.
func (v *view) conclusive(key flow.NodeKey) (present bool, since time.Time, ok bool) {
	r, found := v.result(key.Stream)
	if !found {
		if _, isMissing := slices.BinarySearch(v.missing, key.Stream); isMissing {
			return false, time.Time{}, false
		}
		return false, v.start, true // the stream is gone
	}
	switch r.state {
	case failed:
		return false, time.Time{}, false
	case gone, notMine:
		// Another engine's stream counts as absent here: its counters
		// are that engine's to keep.
		return false, r.listedAt, true
	}
	_, present = slices.BinarySearchFunc(r.consumers, key.Consumer, func(c flow.ConsumerSample, name string) int { return cmp.Compare(c.Key.Consumer, name) })
	return present, r.listedAt, true
}

// keepCounters keeps a node's advisory counters unless the tick proved it
// absent. Counters touched after its listing began may belong to a consumer
// created since, so they stay.
func (v *view) keepCounters(key flow.NodeKey, touched time.Time) bool {
	present, since, ok := v.conclusive(key)
	return !ok || present || !touched.Before(since)
}

func orNow(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now()
	}
	return t
}

func nonNeg(n int64) uint64 {
	if n < 0 {
		return 0
	}
	return uint64(n)
}
