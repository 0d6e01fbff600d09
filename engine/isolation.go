package engine

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/happen-dev/happen/engine/flow"
	"github.com/happen-dev/happen/sdk/events"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// The engine's own isolation: its server is cut from the rest of its
// cluster. Whatever it can sample then is only its own side's, so it must
// not judge the majority's nodes; it reports itself instead (engine.isolated,
// /healthz, happen_engine_isolated) and judges again once it sees the
// cluster, with flow windows refilled as after any blind spell.
//
// An ordinary client has no view of routes. What one connected to a cut
// server sees was measured on a real cut (three servers, routes through a
// proxy that is severed):
//
//   - at once, the server's INFO drops the other servers from connect_urls,
//     so the connection's pool (nc.Servers()) shrinks to the servers still
//     routed to it. Servers it was given as URLs are never pruned, so this
//     shows only what was discovered.
//   - JetStream API requests time out for a few seconds, or, if the cut
//     server was the meta leader, the stream list still answers and every
//     consumer listing fails (its streams unobserved);
//   - then, 3 to 7 seconds after the cut, every request answers 503, code
//     10008, "JetStream system temporarily unavailable": the server knows
//     it has no meta leader.
//
// A pool shrunk below a majority of the largest pool seen, while sampling
// fails or leaves streams unobserved, is isolation at once; a clean sample
// with a small pool is a cluster that was scaled down. The 10008 answer
// alone is also what every server says during a meta-leader election among
// a healthy majority (nats-server's election timeout is 4-9s), so without
// the pool's word it is isolation only once sampling has failed without a
// break for noMetaAfter, longer than an election, and the server has said
// it has no meta leader for noMetaRun without a break: a failure that
// began otherwise (a stream listing waiting on a far cluster's leaders
// during a gateway cut) and ends in the election that follows its healing
// is not isolation. A lost connection is blindness, not isolation: the
// client fails over.

// jsClusterNotAvailable is JetStream's error code for "JetStream system
// temporarily unavailable": the server answering has no meta leader.
const jsClusterNotAvailable jetstream.ErrorCode = 10008

// noMetaAfter is how long sampling must fail, ending with the connected
// server saying it has no meta leader, before the engine calls itself
// isolated on that evidence alone.
const noMetaAfter = 15 * time.Second

// noMetaRun is how long the connected server must have said, without a
// break, that it has no meta leader: longer than nats-server's longest
// election timeout (9s), so an election alone never reads as isolation.
// On a real cut that answer begins 3 to 7 seconds in, so the run ends at
// 13 to 17 seconds, about when noMetaAfter does.
const noMetaRun = 10 * time.Second

// isolationChange is what one observation changed.
type isolationChange int

const (
	isolationSame isolationChange = iota
	isolationBegan
	isolationEnded
)

// isolation is the detector. observe is called on the tick goroutine only;
// current may be read from any goroutine (Health, Status).
type isolation struct {
	noMetaAfter  time.Duration
	known        int       // the most servers the connection has listed
	failingSince time.Time // start of an unbroken run of failed samples while connected; zero if none
	noMetaSince  time.Time // start of an unbroken run of "no meta leader" answers; zero if none

	since  time.Time // isolated since; zero when not isolated
	seen   int
	reason string

	cur atomic.Pointer[isolationView]
}

// isolationView is the isolation as Health and Status read it.
type isolationView struct {
	Since        time.Time
	ServersSeen  int
	ServersKnown int
	Reason       string
}

// observe takes one tick's evidence: whether the connection is up, how many
// servers its pool lists, the sample's error and how many streams it left
// unobserved.
func (d *isolation) observe(now time.Time, connected bool, servers int, err error, unobservedStreams int) isolationChange {
	if !connected {
		d.failingSince, d.noMetaSince = time.Time{}, time.Time{} // the client fails over: a new view
		return isolationSame
	}
	d.known = max(d.known, servers)
	if err == nil {
		d.failingSince = time.Time{}
	} else if d.failingSince.IsZero() {
		d.failingSince = now
	}
	noMeta := isNoMetaLeader(err)
	switch {
	case !noMeta:
		d.noMetaSince = time.Time{}
	case d.noMetaSince.IsZero():
		d.noMetaSince = now
	}
	// A two-server cluster has no majority without both.
	minority := d.known >= 2 && servers < d.known/2+1
	troubled := err != nil || unobservedStreams > 0

	reason, began := "", now
	switch {
	case minority && troubled:
		reason = fmt.Sprintf("isolated from the NATS cluster: the connected server lists %d of %d servers and JetStream cannot be read", servers, d.known)
	case noMeta && now.Sub(d.failingSince) >= d.noMetaAfter && now.Sub(d.noMetaSince) >= noMetaRun:
		reason = fmt.Sprintf("isolated from the NATS cluster: JetStream unreadable for %s and the connected server has no meta leader", now.Sub(d.failingSince).Round(time.Second))
		began = d.failingSince
	}
	switch {
	case d.since.IsZero() && reason != "":
		d.since, d.seen, d.reason = began, servers, reason
		d.publishView()
		return isolationBegan
	case d.since.IsZero():
		return isolationSame
	case err == nil && !minority:
		d.since, d.seen, d.reason = time.Time{}, servers, ""
		d.cur.Store(nil)
		return isolationEnded
	}
	d.seen = servers
	if reason != "" {
		d.reason = reason
	}
	d.publishView()
	return isolationSame
}

func (d *isolation) publishView() {
	d.cur.Store(&isolationView{Since: d.since, ServersSeen: d.seen, ServersKnown: d.known, Reason: d.reason})
}

// current is the isolation now, or nil while the engine is not isolated.
func (d *isolation) current() *isolationView { return d.cur.Load() }

// isNoMetaLeader reports whether err is JetStream's answer of a server that
// has no meta leader.
func isNoMetaLeader(err error) bool {
	var api *jetstream.APIError
	return errors.As(err, &api) && api.ErrorCode == jsClusterNotAvailable
}

// checkIsolation feeds the tick's sample to the detector, reports a change
// (event, metric, log) and returns the isolation as an error while it lasts:
// the tick then counts as blind, whatever it sampled.
func (e *Engine) checkIsolation(ctx context.Context, at time.Time, snap *flow.Snapshot, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	was := e.iso.since
	switch e.iso.observe(at, e.nc.IsConnected(), len(e.nc.Servers()), err, len(snap.UnobservedStreams)) {
	case isolationBegan:
		v := e.iso.current()
		e.met.isolated.Set(1)
		e.log.Warn("engine is isolated from its NATS cluster; reporting nothing about nodes until it rejoins",
			"reason", v.Reason, "serversSeen", v.ServersSeen, "serversKnown", v.ServersKnown)
		e.isoEvent = e.publish(events.TypeEngineIsolated, events.EngineIsolated{
			Since: v.Since.UnixMilli(), ServersSeen: v.ServersSeen, ServersKnown: v.ServersKnown, Reason: v.Reason,
		}, nuid.Next(), "")
	case isolationEnded:
		e.met.isolated.Set(0)
		secs := time.Since(was).Seconds()
		e.log.Info("engine rejoined its NATS cluster", "isolated", time.Since(was).Round(time.Millisecond))
		e.publish(events.TypeEngineRejoined, events.EngineRejoined{
			Since: was.UnixMilli(), IsolatedSeconds: secs, ServersSeen: e.iso.seen,
		}, e.isoEvent.Context.CorrelationID, e.isoEvent.Context.ID)
		e.isoEvent = events.Envelope{}
	}
	if v := e.iso.current(); v != nil {
		return errors.New(v.Reason)
	}
	return nil
}
