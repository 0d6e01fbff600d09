// Package lease elects one leader among several engines watching the same
// NATS system, through a JetStream KV bucket: the lease is the only
// arbiter, so no two engines act at once, however the network splits them.
//
// The bucket (happen_lease) keeps one key, whose value names the holder.
// Its entries age out after the bucket's TTL, the lease period (5s by
// default). An engine takes the lease by creating the key, which succeeds
// only while nobody holds it, and keeps it by updating the key with the
// revision it last wrote, every third of a period. Every write renews the
// server's countdown, so a holder that stops writing (crashed, cut off, its
// KV's quorum unreachable) loses the key one period after its last write
// was stored.
//
// A holder counts its own lease from when it *sent* its last successful
// write, which precedes the store, and gives it up a safety margin (a
// fifth of the period) before that period ends, so it stops acting before
// anyone else can take over: two engines never both believe they lead.
// A write refused because the revision moved (another engine holds the
// key) ends the lease at once.
//
// The record's revision is the lease's term: it rises with every write, and
// each takeover starts at a revision above every earlier term's, so it can
// fence what a leader does (the idempotency keys of actions).
package lease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/happen-dev/happen/engine/internal/ttlbucket"
	"github.com/nats-io/nats.go/jetstream"
)

// Bucket is the KV bucket holding the lease.
const Bucket = "happen_lease"

const key = "leader"

// DefaultPeriod is the lease period when neither the config nor an
// existing bucket says otherwise.
const DefaultPeriod = 5 * time.Second

// Config tunes a Lease.
type Config struct {
	// Identity names this engine in the lease (its instance name, unique
	// among the engines).
	Identity string
	// Period is the lease's TTL for a bucket this engine creates; default
	// DefaultPeriod. A bucket that exists keeps its own, which every
	// engine then uses.
	Period time.Duration
	// Replicas of the bucket when created; default 1.
	Replicas int
	Logger   *slog.Logger
	// OnChange, if set, is called (from Run's goroutine) whenever this
	// engine gains or loses the lead.
	OnChange func(Status)
}

// Role is an engine's part in the election.
type Role string

const (
	Leader  Role = "leader"
	Standby Role = "standby"
)

// Status is what the lease says now.
type Status struct {
	Role Role `json:"role"`
	// Holder is the engine leading, as last read; empty when unknown or
	// none.
	Holder string `json:"leader,omitempty"`
	// Term is the revision that started the holder's tenure (0 unknown).
	Term uint64 `json:"term,omitempty"`
	// Since is when the holder's tenure began, by the server's clock.
	Since time.Time `json:"since,omitzero"`
	// Renewed is when the lease was last written, by the server's clock.
	Renewed time.Time `json:"renewed,omitzero"`
	// Period is the lease period in force.
	Period time.Duration `json:"period"`
	// Elections counts the tenures this engine began; Renewals its
	// successful renewals.
	Elections uint64 `json:"-"`
	Renewals  uint64 `json:"-"`
}

// record is the key's value.
type record struct {
	Holder string    `json:"holder"`
	Term   uint64    `json:"term"`  // revision of the create that began the tenure
	Since  time.Time `json:"since"` // holder's clock, informational
}

// Lease takes part in the election. Create it with New, run it with Run;
// IsLeader and Status may be called from any goroutine.
type Lease struct {
	js  jetstream.JetStream
	cfg Config
	log *slog.Logger

	kv     jetstream.KeyValue
	period time.Duration

	mu       sync.Mutex
	status   Status
	rev      uint64    // the revision this engine last wrote, while leading
	deadline time.Time // local: leading only before this (monotonic)
}

// New returns a Lease using js. It does no I/O.
func New(js jetstream.JetStream, cfg Config) *Lease {
	if cfg.Period <= 0 {
		cfg.Period = DefaultPeriod
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Lease{js: js, cfg: cfg, log: cfg.Logger, period: cfg.Period, status: Status{Role: Standby, Period: cfg.Period}}
}

// IsLeader reports whether this engine holds the lease now. It turns false
// on its own once the lease is about to run out, even if Run is stuck.
func (l *Lease) IsLeader() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.status.Role == Leader && time.Now().Before(l.deadline)
}

// Status returns the lease as last seen, with the role as IsLeader says.
func (l *Lease) Status() Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.status
	if s.Role == Leader && !time.Now().Before(l.deadline) {
		s.Role = Standby
	}
	return s
}

// margin is how long before its own count of the period a holder stops
// acting: the time a write may take to be stored after it was sent is
// already on the safe side, so this covers only timer slack.
func (l *Lease) margin() time.Duration { return l.period / 5 }

// Run takes part until ctx ends, then gives the lease up if it holds it,
// so a standby takes over at once instead of after a period.
func (l *Lease) Run(ctx context.Context) error {
	for l.kv == nil {
		if err := l.open(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			l.log.Warn("cannot open the lease bucket; standing by", "bucket", Bucket, "error", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(l.period / 3):
			}
		}
	}
	t := time.NewTicker(l.period / 3)
	defer t.Stop()
	for {
		l.step(ctx)
		select {
		case <-ctx.Done():
			l.release()
			return nil
		case <-t.C:
		}
	}
}

func (l *Lease) open(ctx context.Context) error {
	octx, cancel := context.WithTimeout(ctx, l.period)
	defer cancel()
	kv, ttl, err := ttlbucket.Open(octx, l.js, jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "happen engine leader lease",
		History:     1,
		TTL:         l.cfg.Period,
		Replicas:    max(l.cfg.Replicas, 1),
	}, "a lease there would never end")
	if err != nil {
		return err
	}
	l.kv, l.period = kv, ttl
	l.mu.Lock()
	l.status.Period = l.period
	l.mu.Unlock()
	if l.period != l.cfg.Period {
		l.log.Info("the lease bucket has its own period", "bucket", Bucket, "period", l.period)
	}
	return nil
}

// step renews the lease if held, or tries to take it.
func (l *Lease) step(ctx context.Context) {
	l.mu.Lock()
	leading, rev, deadline := l.status.Role == Leader, l.rev, l.deadline
	l.mu.Unlock()
	if leading && !time.Now().Before(deadline) {
		l.lose("the lease ran out before it could be renewed")
		leading = false
	}
	rctx, cancel := context.WithTimeout(ctx, l.period/3)
	defer cancel()
	sent := time.Now()
	if leading {
		rec := l.current()
		newRev, err := l.kv.Update(rctx, key, encode(rec), rev)
		switch {
		case err == nil:
			l.mu.Lock()
			l.rev, l.deadline = newRev, sent.Add(l.period-l.margin())
			l.status.Renewals++
			l.status.Renewed = time.Now()
			l.mu.Unlock()
		case isWrongRevision(err):
			l.lose(fmt.Sprintf("another engine holds the lease: %v", err))
		default:
			// Unknown outcome (timeout, disconnected): keep acting until the
			// deadline only; the next step tries again.
			if left := time.Until(deadline); left > 0 {
				l.log.Warn("cannot renew the lease; still leading until it runs out", "error", err, "left", left.Round(time.Millisecond))
			} else {
				l.lose(fmt.Sprintf("the lease ran out before it could be renewed: %v", err))
			}
		}
		return
	}
	rec := record{Holder: l.cfg.Identity, Since: sent}
	newRev, err := l.kv.Create(rctx, key, encode(rec))
	if err == nil {
		// The term is the create's revision, written back with the first
		// renewal so standbys read it.
		rec.Term = newRev
		l.mu.Lock()
		l.rev, l.deadline = newRev, sent.Add(l.period-l.margin())
		l.status = Status{Role: Leader, Holder: l.cfg.Identity, Term: newRev, Since: sent, Renewed: time.Now(), Period: l.period,
			Elections: l.status.Elections + 1, Renewals: l.status.Renewals}
		st := l.status
		l.mu.Unlock()
		l.log.Info("took the lead", "term", newRev, "period", l.period)
		if l.cfg.OnChange != nil {
			l.cfg.OnChange(st)
		}
		return
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		l.log.Debug("cannot take the lease", "error", err)
	}
	l.observe(rctx)
}

// current is the record a holder writes on renewal.
func (l *Lease) current() record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return record{Holder: l.cfg.Identity, Term: l.status.Term, Since: l.status.Since}
}

// observe reads who holds the lease, for a standby's status.
func (l *Lease) observe(ctx context.Context) {
	e, err := l.kv.Get(ctx, key)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			l.status.Holder, l.status.Term, l.status.Since, l.status.Renewed = "", 0, time.Time{}, time.Time{}
		}
		return
	}
	var rec record
	if json.Unmarshal(e.Value(), &rec) != nil {
		return
	}
	term := rec.Term
	if term == 0 {
		term = e.Revision() // read before the holder's first renewal
	}
	l.status.Holder, l.status.Term, l.status.Since, l.status.Renewed = rec.Holder, term, rec.Since, e.Created()
}

func (l *Lease) lose(why string) {
	l.mu.Lock()
	was := l.status.Role == Leader
	l.status.Role, l.rev, l.deadline = Standby, 0, time.Time{}
	st := l.status
	l.mu.Unlock()
	if was {
		l.log.Warn("stepped down", "reason", why)
		if l.cfg.OnChange != nil {
			l.cfg.OnChange(st)
		}
	}
}

// release deletes the key if this engine still holds it (revision
// unchanged), so a standby need not wait for it to age out.
func (l *Lease) release() {
	l.mu.Lock()
	leading, rev := l.status.Role == Leader && time.Now().Before(l.deadline), l.rev
	l.mu.Unlock()
	if !leading {
		return
	}
	l.lose("stopping")
	ctx, cancel := context.WithTimeout(context.Background(), l.period/3)
	defer cancel()
	if err := l.kv.Delete(ctx, key, jetstream.LastRevision(rev)); err != nil {
		l.log.Debug("lease not released; it will run out", "error", err)
	}
}

func encode(r record) []byte {
	b, _ := json.Marshal(r) // cannot fail: plain fields
	return b
}

// isWrongRevision tells a refused write (the key moved on) from one whose
// outcome is unknown.
func isWrongRevision(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		errors.Is(err, jetstream.ErrKeyExists)
}
