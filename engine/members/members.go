// Package members lets several engines share the work of watching one NATS
// system. Every live engine is a member, listed in a JetStream KV bucket
// (happen_members), and each stream is assigned to exactly one live member
// by rendezvous hashing, so each engine samples only its share.
//
// Liveness. Each member puts its own key every third of a period; the
// bucket's TTL (the period, 5s by default) ages out the key of a member
// that stops. An entry that ages out by TTL leaves no delete marker, so a
// watcher is never told that a member went away: liveness cannot rest on
// deletes. Instead every member watches all keys and counts another member
// live while its last put was received, by the local clock, within one
// period. A member counts itself live while its last successful put was
// sent within one period; the send precedes the others' receipt, so a
// member cut off from NATS drops itself no later than the others drop it.
// The live set is recomputed on every update and at the next moment an
// entry runs out, so a silent member leaves everyone's view one period
// after its last put arrived. A member that stops cleanly deletes its key,
// which the others see at once.
//
// Assignment. Rendezvous (highest random weight) hashing gives each stream
// to the member with the highest hash of (member, stream). A member that
// joins takes only the streams it now wins, and one that leaves gives up
// only its own, so a change of membership moves no more than it must. The
// hash is FNV-1a 64 and a splitmix64 finaliser, the same in every process
// and on every platform, so members that agree on the live set agree on
// every owner without talking to each other.
package members

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/happen-dev/happen/engine/internal/ttlbucket"
	"github.com/happen-dev/happen/engine/lease"
	"github.com/nats-io/nats.go/jetstream"
)

// Bucket is the KV bucket listing the members.
const Bucket = "happen_members"

// Config tunes Members.
type Config struct {
	// Identity is this engine's instance name, unique among the members.
	Identity string
	// Period is the bucket's TTL when this member creates it; default
	// lease.DefaultPeriod. An existing bucket keeps its own TTL, which
	// every member then uses.
	Period time.Duration
	// Replicas of the bucket when created; default 1.
	Replicas int
	Logger   *slog.Logger
	// OnChange, if set, is called from Run's goroutine with the sorted live
	// set whenever it changes, and once when the first full read of the
	// bucket is done (from then on Owns answers).
	OnChange func(live []string)
}

// Status is what this member knows of the membership.
type Status struct {
	Self   string        `json:"self"`
	Live   []string      `json:"live"`
	Ready  bool          `json:"ready"`
	Period time.Duration `json:"period"`
	// Joins and Leaves count members that entered or left the live set;
	// Changes counts the changes of the live set (each a reassignment of
	// streams); Heartbeats counts this member's successful puts.
	Joins      uint64 `json:"-"`
	Leaves     uint64 `json:"-"`
	Changes    uint64 `json:"-"`
	Heartbeats uint64 `json:"-"`
}

// record is a member's value in the bucket: its name (the key may be an
// encoding of it) and what `happen status` may show.
type record struct {
	Instance string    `json:"instance"`
	Since    time.Time `json:"since"`
	Beat     time.Time `json:"beat"` // when this put was sent, member's clock
	Host     string    `json:"host,omitempty"`
	PID      int       `json:"pid,omitempty"`
}

// view is an immutable snapshot of the live set that Owns reads without a
// lock: seeds[i] is the hash state after names[i] and its separator, so a
// lookup hashes only the stream name.
type view struct {
	names []string
	seeds []uint64
	self  int // index of Identity in names, -1 when not live
	ready bool
}

var emptyView = &view{self: -1}

// peer is another member as this one last heard of it.
type peer struct {
	name string
	rev  uint64
	seen time.Time // local receipt (monotonic), or an estimate for initial values
}

// Members takes part in the membership. Create it with New, run it with
// Run; the other methods may be called from any goroutine.
type Members struct {
	js  jetstream.JetStream
	cfg Config
	log *slog.Logger
	key string

	kv     jetstream.KeyValue
	period time.Duration
	since  time.Time

	v    atomic.Pointer[view]
	poke chan struct{} // a heartbeat finished: recompute

	mu         sync.Mutex
	status     Status    // counters and Period; Live/Ready come from v
	selfUntil  time.Time // self is live before this (monotonic)
	okSince    time.Time // send of the first of the puts succeeding in a row
	beatFailed bool
}

// New returns Members using js. It does no I/O.
func New(js jetstream.JetStream, cfg Config) *Members {
	if cfg.Period <= 0 {
		cfg.Period = lease.DefaultPeriod
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Members{js: js, cfg: cfg, log: cfg.Logger, key: keyFor(cfg.Identity), period: cfg.Period,
		poke: make(chan struct{}, 1), status: Status{Self: cfg.Identity, Period: cfg.Period}}
	m.v.Store(emptyView)
	return m
}

// Ready reports whether the first full read of the bucket is done. Before
// it, Owns is false for every stream, so a member starting up never claims
// everything for a moment.
func (m *Members) Ready() bool { return m.v.Load().ready }

// Live returns the live members, sorted; it includes this member while its
// own heartbeat stands.
func (m *Members) Live() []string { return slices.Clone(m.v.Load().names) }

// Owner returns the live member that owns stream, or "" when none is live.
func (m *Members) Owner(stream string) string {
	v := m.v.Load()
	if i := v.pick(stream); i >= 0 {
		return v.names[i]
	}
	return ""
}

// Owns reports whether this member owns stream: false until Ready and
// while this member is not live. It allocates nothing.
func (m *Members) Owns(stream string) bool {
	v := m.v.Load()
	return v.ready && v.self >= 0 && v.pick(stream) == v.self
}

// Status returns the membership as this member sees it now.
func (m *Members) Status() Status {
	v := m.v.Load()
	m.mu.Lock()
	s := m.status
	m.mu.Unlock()
	s.Live, s.Ready = slices.Clone(v.names), v.ready
	return s
}

// Run takes part until ctx ends, then deletes this member's key, so the
// others reassign its streams at once instead of after a period. After Run
// returns this member owns nothing.
func (m *Members) Run(ctx context.Context) error {
	if m.cfg.Identity == "" {
		return fmt.Errorf("members bucket %s: this engine has no identity to be listed under", Bucket)
	}
	for m.kv == nil {
		if err := m.open(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			m.log.Warn("cannot open the members bucket; retrying", "bucket", Bucket, "error", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(m.period / 3):
			}
		}
	}
	m.since = time.Now()
	// The first put precedes the first read, so that read finds this
	// member's fresh entry: its server timestamp dates the others'.
	m.beat(ctx)
	hbctx, stopBeats := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { m.heartbeats(hbctx) })
	m.watch(ctx)
	stopBeats()
	wg.Wait()
	m.leave()
	return nil
}

func (m *Members) open(ctx context.Context) error {
	octx, cancel := context.WithTimeout(ctx, m.period)
	defer cancel()
	kv, ttl, err := ttlbucket.Open(octx, m.js, jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "happen engines sharing the work (scale-out members)",
		History:     1,
		TTL:         m.cfg.Period,
		Replicas:    max(m.cfg.Replicas, 1),
	}, "a member that vanished would stay listed")
	if err != nil {
		return err
	}
	m.kv, m.period = kv, ttl
	m.mu.Lock()
	m.status.Period = m.period
	m.mu.Unlock()
	if m.period != m.cfg.Period {
		m.log.Info("the members bucket has its own period", "bucket", Bucket, "period", m.period)
	}
	return nil
}

func (m *Members) heartbeats(ctx context.Context) {
	t := time.NewTicker(m.period / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m.beat(ctx)
		select {
		case m.poke <- struct{}{}:
		default:
		}
	}
}

// beat puts this member's key. Self counts as live for a period from the
// send of the last put that succeeded.
func (m *Members) beat(ctx context.Context) {
	host, _ := os.Hostname()
	sent := time.Now()
	rec := record{Instance: m.cfg.Identity, Since: m.since, Beat: sent, Host: host, PID: os.Getpid()}
	b, _ := json.Marshal(rec) // cannot fail: plain fields
	pctx, cancel := context.WithTimeout(ctx, m.period/3)
	defer cancel()
	_, err := m.kv.Put(pctx, m.key, b)
	m.mu.Lock()
	failedBefore := m.beatFailed
	m.beatFailed = err != nil
	if err == nil {
		if failedBefore || m.okSince.IsZero() {
			m.okSince = sent
		}
		m.selfUntil = sent.Add(m.period)
		m.status.Heartbeats++
	}
	m.mu.Unlock()
	switch {
	case err != nil && ctx.Err() != nil:
	case err != nil && !failedBefore:
		m.log.Warn("cannot put this member's heartbeat", "bucket", Bucket, "key", m.key, "error", err)
	case err != nil:
		m.log.Debug("cannot put this member's heartbeat", "bucket", Bucket, "key", m.key, "error", err)
	case failedBefore:
		m.log.Info("heartbeat restored", "bucket", Bucket, "key", m.key)
	}
}

// leave deletes this member's key so the others drop it at once.
func (m *Members) leave() {
	m.v.Store(emptyView)
	m.mu.Lock()
	m.selfUntil = time.Time{}
	m.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), m.period/3)
	defer cancel()
	if err := m.kv.Delete(ctx, m.key); err != nil {
		m.log.Debug("member key not deleted; it will age out", "bucket", Bucket, "key", m.key, "error", err)
	}
}

// watcher is one KV watch on all keys, with what the first read brings.
type watcher struct {
	w       jetstream.KeyWatcher
	cancel  context.CancelFunc
	started time.Time
	initial bool                      // still receiving the current values
	batch   []jetstream.KeyValueEntry // those values, applied together at the end marker
}

func (w *watcher) stop() {
	_ = w.w.Stop()
	w.cancel()
}

// startWatch watches every key: the current value of each (no history),
// then updates. Its context lives as long as the watch (cancelling it ends
// the subscription), so creation is bounded by a timer instead.
func (m *Members) startWatch(ctx context.Context) (*watcher, error) {
	wctx, cancel := context.WithCancel(ctx)
	timer := time.AfterFunc(m.period, cancel)
	kw, err := m.kv.WatchAll(wctx)
	if !timer.Stop() && err == nil {
		_ = kw.Stop()
		err = context.DeadlineExceeded
	}
	if err != nil {
		cancel()
		return nil, fmt.Errorf("watch KV bucket %s: %w", Bucket, err)
	}
	return &watcher{w: kw, cancel: cancel, started: time.Now(), initial: true}, nil
}

// watch follows the bucket until ctx ends, keeping the live set current.
// It owns peers and the view's changes.
func (m *Members) watch(ctx context.Context) {
	peers := map[string]*peer{}
	var (
		w        *watcher
		retryAt  time.Time
		backoff  = m.period / 3
		lastEcho time.Time // when the watch last delivered this member's own put
		ready    bool
	)
	defer func() {
		if w != nil {
			w.stop()
		}
	}()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		now := time.Now()
		if w == nil && !now.Before(retryAt) {
			var err error
			if w, err = m.startWatch(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				// Warn once per outage; the retries that follow are expected.
				lvl := slog.LevelDebug
				if backoff == m.period/3 {
					lvl = slog.LevelWarn
				}
				m.log.Log(ctx, lvl, "cannot watch the members; retrying", "bucket", Bucket, "error", err, "in", backoff)
				retryAt = time.Now().Add(backoff)
				backoff = min(2*backoff, m.period)
			} else {
				backoff = m.period / 3
			}
			now = time.Now()
		}
		var updates <-chan jetstream.KeyValueEntry
		if w != nil {
			updates = w.w.Updates()
		}
		m.recompute(now, peers, ready)

		// Wake at the next moment something runs out: a peer, self, the
		// retry of a failed watch, or the patience with a silent one.
		next := now.Add(m.period / 3)
		for _, p := range peers {
			if t := p.seen.Add(m.period); t.Before(next) {
				next = t
			}
		}
		m.mu.Lock()
		selfUntil := m.selfUntil
		m.mu.Unlock()
		if selfUntil.After(now) && selfUntil.Before(next) {
			next = selfUntil
		}
		if w == nil && retryAt.Before(next) {
			next = retryAt
		}
		timer.Reset(max(time.Until(next), time.Millisecond))

		select {
		case <-ctx.Done():
			return
		case <-m.poke:
		case <-timer.C:
		case e, ok := <-updates:
			switch {
			case !ok:
				m.log.Warn("the members watch ended; re-creating it", "bucket", Bucket, "in", backoff)
				w.cancel()
				w, retryAt = nil, time.Now().Add(backoff)
			case e == nil:
				m.applyInitial(time.Now(), peers, w.batch)
				w.initial, w.batch, ready = false, nil, true
			case w.initial:
				w.batch = append(w.batch, e)
			default:
				if e.Key() == m.key {
					lastEcho = time.Now()
				}
				m.apply(time.Now(), peers, e)
			}
		}

		// Own puts come back through the watch every third of a period. If
		// they have succeeded for a period but none came back, the watch is
		// stuck (its consumer lost with a server restart): make a new one
		// now rather than when the client library notices.
		now = time.Now()
		m.mu.Lock()
		selfUntil, okSince := m.selfUntil, m.okSince
		m.mu.Unlock()
		if w != nil && !w.initial && selfUntil.After(now) && now.Sub(later(later(lastEcho, w.started), okSince)) > m.period {
			m.log.Warn("the members watch delivers nothing, not even this member's heartbeats; re-creating it", "bucket", Bucket)
			w.stop()
			w, retryAt = nil, now
		}
	}
}

// apply records one update.
func (m *Members) apply(now time.Time, peers map[string]*peer, e jetstream.KeyValueEntry) {
	if e.Key() == m.key {
		return // self is live by its own sends
	}
	if e.Operation() != jetstream.KeyValuePut {
		delete(peers, e.Key())
		return
	}
	name, ok := nameOf(e.Key())
	if !ok {
		m.log.Debug("ignoring a key that names no member", "bucket", Bucket, "key", e.Key())
		return
	}
	if p := peers[e.Key()]; p != nil && e.Revision() <= p.rev {
		return // a value already seen, re-read by a new watch
	}
	peers[e.Key()] = &peer{name: name, rev: e.Revision(), seen: now}
}

// applyInitial takes a full read of the bucket. Those values were put some
// time ago: each is dated by its age relative to the newest of them, by the
// server's timestamps (no clock skew between hosts enters), and the newest
// is normally this member's own put from just before. Keys absent from the
// read are gone (aged out while no watch was running).
func (m *Members) applyInitial(now time.Time, peers map[string]*peer, batch []jetstream.KeyValueEntry) {
	var newest time.Time
	in := make(map[string]bool, len(batch))
	for _, e := range batch {
		in[e.Key()] = true
		newest = later(newest, e.Created())
	}
	for k := range peers {
		if !in[k] {
			delete(peers, k)
		}
	}
	for _, e := range batch {
		known := peers[e.Key()] != nil
		m.apply(now, peers, e)
		if p := peers[e.Key()]; p != nil && !known {
			p.seen = now.Add(-max(newest.Sub(e.Created()), 0))
		}
	}
}

// recompute publishes the live set as of now.
func (m *Members) recompute(now time.Time, peers map[string]*peer, ready bool) {
	live := make([]string, 0, len(peers)+1)
	m.mu.Lock()
	selfLive := now.Before(m.selfUntil)
	m.mu.Unlock()
	if selfLive {
		live = append(live, m.cfg.Identity)
	}
	for _, p := range peers {
		if now.Sub(p.seen) < m.period && p.name != m.cfg.Identity {
			live = append(live, p.name)
		}
	}
	slices.Sort(live)
	old := m.v.Load()
	if slices.Equal(live, old.names) && ready == old.ready {
		return
	}
	joins, leaves := diff(old.names, live)
	v := newView(live, m.cfg.Identity)
	v.ready = ready
	m.v.Store(v)
	changed := joins+leaves > 0
	m.mu.Lock()
	m.status.Joins += uint64(joins)
	m.status.Leaves += uint64(leaves)
	if changed {
		m.status.Changes++
	}
	m.mu.Unlock()
	if changed {
		m.log.Info("members changed", "live", live, "joined", joins, "left", leaves)
	}
	if m.cfg.OnChange != nil {
		m.cfg.OnChange(slices.Clone(live))
	}
}

// diff counts the names only in b (joins) and only in a (leaves); both
// sorted.
func diff(a, b []string) (joins, leaves int) {
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || i < len(a) && a[i] < b[j]:
			leaves++
			i++
		case i == len(a) || b[j] < a[i]:
			joins++
			j++
		default:
			i++
			j++
		}
	}
	return joins, leaves
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func newView(names []string, self string) *view {
	v := &view{names: names, seeds: make([]uint64, len(names)), self: -1}
	for i, n := range names {
		v.seeds[i] = seed(n)
		if n == self {
			v.self = i
		}
	}
	return v
}

// pick returns the index of the member owning stream, -1 when none. Equal
// weights go to the member first in sorted order, as Rendezvous does.
func (v *view) pick(stream string) int {
	best, bw := -1, uint64(0)
	for i, s := range v.seeds {
		if w := weight(s, stream); best < 0 || w > bw {
			best, bw = i, w
		}
	}
	return best
}

// FNV-1a 64 parameters.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// seed is the FNV-1a 64 state after member and a 0 byte, which keeps
// ("ab","c") apart from ("a","bc").
func seed(member string) uint64 {
	h := uint64(fnvOffset)
	for i := 0; i < len(member); i++ {
		h ^= uint64(member[i])
		h *= fnvPrime
	}
	h *= fnvPrime // the 0 byte: xor with 0 leaves h as it is
	return h
}

// weight continues the hash over stream and mixes it (the splitmix64
// finaliser): FNV alone spreads the last bytes poorly into the high bits,
// which the comparison of weights rests on.
func weight(seed uint64, stream string) uint64 {
	h := seed
	for i := 0; i < len(stream); i++ {
		h ^= uint64(stream[i])
		h *= fnvPrime
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

// Rendezvous returns the member of members that owns stream: the one with
// the highest weight of (member, stream), the smallest name on a tie; ""
// when members is empty. The result does not depend on the order of
// members, and is the same in every process and on every platform.
func Rendezvous(stream string, members []string) string {
	names := slices.Clone(members)
	slices.Sort(names)
	v := newView(names, "")
	if i := v.pick(stream); i >= 0 {
		return names[i]
	}
	return ""
}

// keyPrefix marks a key that encodes a member name in hex. A name that is
// a valid key and does not start with it is its own key; every other name
// is encoded, so no two names share a key.
const keyPrefix = "="

// keyFor returns the KV key for a member name. KV keys allow only
// [-/_=.a-zA-Z0-9], may not start or end with '.', nor hold "..".
func keyFor(name string) string {
	if validKey(name) && !strings.HasPrefix(name, keyPrefix) {
		return name
	}
	return keyPrefix + hex.EncodeToString([]byte(name))
}

// nameOf reverses keyFor.
func nameOf(key string) (string, bool) {
	if !strings.HasPrefix(key, keyPrefix) {
		return key, key != ""
	}
	b, err := hex.DecodeString(key[len(keyPrefix):])
	if err != nil || len(b) == 0 {
		return "", false
	}
	return string(b), true
}

func validKey(k string) bool {
	if k == "" || k[0] == '.' || k[len(k)-1] == '.' || strings.Contains(k, "..") {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-/_=.", c) >= 0) {
			return false
		}
	}
	return true
}
