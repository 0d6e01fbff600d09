package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/happen-dev/happen/engine/flow"
	"github.com/happen-dev/happen/rules"
	"github.com/happen-dev/happen/sdk/events"
	"github.com/nats-io/nats.go/jetstream"
)

// StateBucket is the JetStream KV bucket where the engine keeps its open
// incidents, so that a restart neither forgets one (its up event, its
// plugins' undo) nor raises it again under a new correlationId.
const StateBucket = "happen_engine"

// incidentRecord is one open incident as stored, with what is needed to
// end it even if its rule is gone by the time the engine is back.
type incidentRecord struct {
	ID          string                     `json:"id"`
	Fingerprint string                     `json:"fingerprint"`
	Rule        string                     `json:"rule"`
	Pattern     string                     `json:"pattern"`
	Emit        string                     `json:"emit"`
	Actions     []rules.Action             `json:"actions,omitempty"`
	Subject     string                     `json:"subject,omitempty"`
	Since       time.Time                  `json:"since"`
	Nodes       []flow.NodeKey             `json:"nodes"`
	Downs       map[string]events.Envelope `json:"downs"` // the down event of each node ("/" for the system)
}

type incidentStore struct {
	kv jetstream.KeyValue
}

func recordKey(id string) string { return "incident." + id }

// openStore opens the bucket, creating it if it does not exist; one an
// operator made (with more replicas, say) is used as it is. It fails for
// good (permanent) when the account cannot have it, and for now when
// JetStream did not answer in time.
func openStore(ctx context.Context, js jetstream.JetStream, replicas int) (s *incidentStore, permanent bool, err error) {
	kv, err := js.KeyValue(ctx, StateBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      StateBucket,
			Description: "happen engine state: open incidents",
			History:     1,
			Replicas:    max(replicas, 1),
		})
		if errors.Is(err, jetstream.ErrBucketExists) { // made meanwhile by another engine
			kv, err = js.KeyValue(ctx, StateBucket)
		}
	}
	if err != nil {
		var apiErr *jetstream.APIError
		return nil, errors.As(err, &apiErr), fmt.Errorf("open engine state bucket %s: %w", StateBucket, err)
	}
	return &incidentStore{kv: kv}, false, nil
}

func (s *incidentStore) load(ctx context.Context) ([]incidentRecord, error) {
	lister, err := s.kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", StateBucket, err)
	}
	var out []incidentRecord
	for key := range lister.Keys() {
		entry, err := s.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s/%s: %w", StateBucket, key, err)
		}
		var rec incidentRecord
		if err := json.Unmarshal(entry.Value(), &rec); err != nil || rec.ID == "" {
			// Not ours to understand; leave it rather than lose it.
			continue
		}
		out = append(out, rec)
	}
	return out, nil
}

func (s *incidentStore) put(ctx context.Context, rec incidentRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	_, err = s.kv.Put(ctx, recordKey(rec.ID), b)
	return err
}

func (s *incidentStore) remove(ctx context.Context, id string) error {
	err := s.kv.Delete(ctx, recordKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	return err
}

// restoreRetryMax bounds the wait between attempts to reach the engine's
// state: an account that may not create the bucket costs one short
// attempt this often, not one every tick.
const restoreRetryMax = 30 * time.Second

// restore opens the store on the first tick that can, and reopens the
// incidents a previous run left: those whose rule is still in force go on
// (judged again once their nodes are observed); the others end, with their
// up events and resolve actions, as a reload would end them. Until it
// succeeds it is tried again with backoff, each attempt bounded well
// within a tick.
func (e *Engine) restore(ctx context.Context, now time.Time, st *flow.State, snap *flow.Snapshot) {
	if e.stateDone || time.Now().Before(e.restoreAt) {
		return
	}
	e.restoreWait = min(max(2*e.restoreWait, e.cfg.Interval), restoreRetryMax)
	e.restoreAt = time.Now().Add(e.restoreWait)
	rctx, cancel := context.WithTimeout(ctx, min(max(e.cfg.Interval/2, 250*time.Millisecond), 2*time.Second))
	defer cancel()
	js, err := jetstream.New(e.nc)
	if err == nil {
		var permanent bool
		e.store, permanent, err = openStore(rctx, js, e.cfg.StateReplicas)
		if permanent {
			e.stateDone = true
			e.log.Warn("engine state not kept: open incidents will not survive a restart", "bucket", StateBucket, "error", err)
			return
		}
	}
	if err != nil {
		e.log.Debug("engine state not reachable yet", "bucket", StateBucket, "retry", e.restoreWait, "error", err)
		return
	}
	recs, err := e.store.load(rctx)
	if err != nil {
		e.store = nil
		e.log.Debug("engine state not readable yet", "bucket", StateBucket, "retry", e.restoreWait, "error", err)
		return
	}
	e.stateDone = true
	// Incidents this run opened before the store could be reached are
	// saved now; their next change would be too late for a restart.
	e.persistActive(ctx)
	// What exists now, read or not: a restored node absent from it was
	// deleted while the engine was away, and has left.
	exists := map[flow.NodeKey]bool{}
	for i := range st.Nodes {
		exists[st.Nodes[i].Key] = true
	}
	for _, k := range snap.Unobserved {
		exists[k] = true
	}
	unread := map[string]bool{}
	for _, name := range snap.UnobservedStreams {
		unread[name] = true
	}
	var ended []rules.Transition
	var left []flow.NodeKey
	for _, rec := range recs {
		for k, env := range rec.Downs {
			e.downs[rec.ID+"|"+k] = env
		}
		reason := events.ReasonRemoved
		switch e.eval.Restore(rec.Fingerprint, rec.Subject, rec.ID, rec.Since, rec.Nodes) {
		case rules.Restored:
			e.log.Info("incident restored", "id", rec.ID, "rule", rec.Rule, "nodes", len(rec.Nodes))
			for _, k := range rec.Nodes {
				if !exists[k] && !unread[k.Stream] {
					left = append(left, k)
				}
			}
			continue
		case rules.AlreadyFiring:
			reason = events.ReasonSuperseded
		}
		gone := &rules.Incident{ID: rec.ID, Since: rec.Since, Nodes: rec.Nodes, Subject: rec.Subject,
			Rule: &rules.Rule{Name: rec.Rule, Pattern: rec.Pattern, Emit: rec.Emit, Actions: rec.Actions}}
		if rec.Emit == events.TypeSystemDown {
			ended = append(ended, rules.Transition{Kind: rules.Resolve, Incident: gone, Reason: reason, At: now})
			continue
		}
		for _, k := range rec.Nodes {
			ended = append(ended, rules.Transition{Kind: rules.Resolve, Incident: gone, Node: k, Reason: reason, At: now})
		}
	}
	ended = append(ended, e.eval.Leave(now, left)...)
	if len(ended) > 0 {
		e.emit(ctx, ended, st)
	}
	// What the bucket holds is what the next save compares with: timers
	// restored here that end at once must be cleared there, or a later
	// takeover would restore them again, long stale.
	ts, err := e.store.loadTimers(rctx)
	if err != nil {
		e.log.Warn("rule timers not restored; pending alerts start their for again", "error", err)
		e.timersUnknown = true
		return
	}
	e.savedTimers, e.timersUnknown = ts, false
	if n := e.eval.RestoreTimers(ts); n > 0 {
		e.log.Info("rule timers restored", "timers", n)
	}
}

// persist writes what this tick changed: the record of every incident a
// transition touched, or its removal once it has ended.
func (e *Engine) persist(ctx context.Context, trs []rules.Transition) {
	if e.store == nil || len(trs) == 0 || !e.leading() {
		return
	}
	active := map[string]*rules.Incident{}
	for _, inc := range e.eval.Active() {
		active[inc.ID] = inc
	}
	done := map[string]bool{}
	// Saved even when the engine is stopping in the middle of the tick.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	for _, tr := range trs {
		id := tr.Incident.ID
		if done[id] {
			continue
		}
		done[id] = true
		var err error
		if inc, ok := active[id]; ok {
			err = e.store.put(pctx, e.record(inc))
		} else {
			err = e.store.remove(pctx, id)
		}
		e.savedOrWarn(id, err)
	}
}

// persistActive writes the record of every open incident.
func (e *Engine) persistActive(ctx context.Context) {
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	for _, inc := range e.eval.Active() {
		e.savedOrWarn(inc.ID, e.store.put(pctx, e.record(inc)))
	}
}

func (e *Engine) savedOrWarn(id string, err error) {
	if err != nil {
		e.log.Warn("engine state not saved; this incident may not survive a restart", "incident", id, "bucket", StateBucket, "error", err)
	}
}

func (e *Engine) record(inc *rules.Incident) incidentRecord {
	r := inc.Rule
	rec := incidentRecord{
		ID: inc.ID, Fingerprint: r.Fingerprint, Rule: r.Name, Pattern: r.Pattern, Emit: r.Emit,
		Actions: r.Actions, Subject: inc.Subject, Since: inc.Since, Nodes: inc.Nodes,
		Downs: map[string]events.Envelope{},
	}
	keys := inc.Nodes
	if r.Emit == events.TypeSystemDown {
		keys = []flow.NodeKey{{}}
	}
	for _, k := range keys {
		if env, ok := e.downs[inc.ID+"|"+k.String()]; ok {
			rec.Downs[k.String()] = env
		}
	}
	return rec
}

// timersKey holds the rules' pending alerts and cooldowns (rules.Timer),
// so a standby taking over goes on where the leader was: a condition
// that held for part of its `for` fires when it would have, and a
// cooldown still holds. It is written when they change, at most once a
// tick.
const timersKey = "timers"

func (s *incidentStore) putTimers(ctx context.Context, b []byte) error {
	_, err := s.kv.Put(ctx, timersKey, b)
	return err
}

func (s *incidentStore) loadTimers(ctx context.Context) ([]rules.Timer, error) {
	entry, err := s.kv.Get(ctx, timersKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s/%s: %w", StateBucket, timersKey, err)
	}
	var ts []rules.Timer
	if err := json.Unmarshal(entry.Value(), &ts); err != nil {
		return nil, fmt.Errorf("decode %s/%s: %w", StateBucket, timersKey, err)
	}
	return ts, nil
}

// saveTimers writes the rules' timers when they changed since last
// written. Timers too many to fit a message (a mass of pending alerts) are
// not kept: a takeover then starts their `for` again.
func (e *Engine) saveTimers(ctx context.Context, now time.Time) {
	if e.store == nil || !e.leading() {
		return
	}
	ts := e.eval.Timers(now)
	if !e.timersUnknown && slices.EqualFunc(ts, e.savedTimers, sameTimer) {
		return
	}
	b, err := json.Marshal(ts)
	if err != nil {
		return // plain fields: cannot fail
	}
	if limit := e.nc.MaxPayload() / 2; int64(len(b)) > limit {
		if !e.timersTooMany {
			e.log.Warn("rule timers not kept: too many pending alerts for one message; a takeover would start their for again", "timers", len(ts), "bytes", len(b))
		}
		e.timersTooMany = true
		return
	}
	e.timersTooMany = false
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := e.store.putTimers(pctx, b); err != nil {
		e.log.Warn("rule timers not saved; a takeover would start their for again", "bucket", StateBucket, "error", err)
		return
	}
	e.savedTimers, e.timersUnknown = ts, false
}

func sameTimer(a, b rules.Timer) bool {
	return a.Rule == b.Rule && a.Node == b.Node && a.Group == b.Group && a.Owed == b.Owed &&
		a.Pending.Equal(b.Pending) && a.Cooldown.Equal(b.Cooldown)
}
