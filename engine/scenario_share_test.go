package engine_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/happen-dev/happen/engine"
	"github.com/happen-dev/happen/engine/flow"
	"github.com/happen-dev/happen/engine/members"
	"github.com/happen-dev/happen/internal/testutil"
	"github.com/happen-dev/happen/sdk/events"
)

// shareStreams are the streams of shareWorld, one node on each.
var shareStreams = []string{"S0", "S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8"}

// shareWorld is a server with nine streams, one node on each (groups eu
// and us), and work arriving on every stream.
func shareWorld(t *testing.T) *world {
	w := newWorld(t)
	for i, s := range shareStreams {
		subj := strings.ToLower(s)
		w.addStream(s, subj+".>")
		group := "eu"
		if i%2 == 1 {
			group = "us"
		}
		w.addNodeOn(w.url, s, fmt.Sprintf("%s-%s", group, subj), group)
		testutil.StartPublisher(w.t, w.url, subj+".new", 5)
	}
	return w
}

// startShare runs an engine sharing the streams, with a lease and a
// membership of period, on its own connection.
func (w *world) startShare(id string, period time.Duration) *haEngine {
	w.t.Helper()
	return w.startElecting(id, period, defaultSet(w.t), nil, true)
}

// shareLeader waits until one of hs leads, sees every node of shareWorld
// observed, and each of hs owns the streams rendezvous gives it; the
// world's tick helpers then follow the leader.
func (w *world) shareLeader(hs []*haEngine) *haEngine {
	w.t.Helper()
	ids := make([]string, len(hs))
	for i, h := range hs {
		ids[i] = h.id
	}
	var leader *haEngine
	var last string // what the last look saw, for a failure's message
	defer func() {
		if w.t.Failed() {
			w.t.Log(last)
		}
	}()
	testutil.Eventually(w.t, 20*time.Second, func() bool {
		var n int
		n, leader = leaderOf(hs)
		last = fmt.Sprintf("%d leaders", n)
		for _, h := range hs {
			st := h.eng.Status()
			last += fmt.Sprintf("; %s: %s, members %v, owns %d, %d nodes, %d unobserved", h.id, st.Role, st.Members, st.OwnedStreams, len(st.Nodes), len(st.Unobserved))
		}
		if n != 1 {
			return false
		}
		st := leader.eng.Status()
		if len(st.Nodes) != len(shareStreams) || len(st.Unobserved) != 0 {
			return false
		}
		for _, h := range hs {
			if got := h.eng.Status(); !slices.Equal(got.Members, ids) || (h != leader && !ownsItsShare(got, h.id, ids)) {
				return false
			}
		}
		return true
	}, "one leader seeing every node, each of %v sampling its share", ids)
	w.eng = leader.eng
	return leader
}

// owned counts the streams of shareWorld that rendezvous over ids gives
// to id.
func owned(id string, ids []string) int {
	n := 0
	for _, s := range shareStreams {
		if members.Rendezvous(s, ids) == id {
			n++
		}
	}
	return n
}

// ownsItsShare reports whether a member's own status shows exactly the
// nodes of the streams rendezvous over ids gives to id.
func ownsItsShare(st *engine.Status, id string, ids []string) bool {
	var got, want []string
	for _, n := range st.Nodes {
		got = append(got, n.Stream)
	}
	for _, s := range shareStreams {
		if members.Rendezvous(s, ids) == id {
			want = append(want, s)
		}
	}
	slices.Sort(got)
	return slices.Equal(got, want) && st.OwnedStreams >= len(want)
}

// nodeOwnedBy returns the node id of shareWorld on a stream that
// rendezvous over ids gives to id.
func nodeOwnedBy(t *testing.T, id string, ids []string) string {
	t.Helper()
	for i, s := range shareStreams {
		if members.Rendezvous(s, ids) == id {
			group := "eu"
			if i%2 == 1 {
				group = "us"
			}
			return group + "-" + strings.ToLower(s)
		}
	}
	t.Fatalf("no stream of %v goes to %s among %v: pick other names", shareStreams, id, ids)
	return ""
}

// Three engines share nine streams. Each samples only its own; the leader
// judges every node and reports a node on another member's stream failing,
// and its recovery, once each. Members say nothing.
func TestScenarioShareThreeEngines(t *testing.T) {
	t.Parallel()
	const period = 2 * time.Second
	w := shareWorld(t)
	ids := []string{"a", "b", "c"}
	for _, id := range ids {
		if owned(id, ids) == 0 {
			t.Fatalf("rendezvous gives %s none of the streams: pick other names", id)
		}
	}
	hs := []*haEngine{w.startShare("a", period), w.startShare("b", period), w.startShare("c", period)}
	leader := w.shareLeader(hs)
	for _, h := range hs {
		if h != leader && h.eng.Status().Role != engine.RoleMember {
			t.Fatalf("engine %s: role %q, want member", h.id, h.eng.Status().Role)
		}
	}
	w.quietFor(5, "healthy flow under three sharing engines")

	var other string
	for _, id := range ids {
		if id != leader.id {
			other = id
			break
		}
	}
	victim := nodeOwnedBy(t, other, ids)
	w.worker(victim).Kill()
	down := w.waitNodeDown(25 * time.Second)
	if down.NodeID != victim {
		t.Fatalf("node.down for %s, want %s (on %s's stream): %s", down.NodeID, victim, other, summary(w.all()))
	}
	w.worker(victim).Start()
	testutil.Eventually(t, 30*time.Second, func() bool { return len(w.ofType(events.TypeNodeUp)) > 0 }, "node.up for %s", victim)
	w.ticks(3)
	for _, e := range w.all() {
		if e.Context.Sender != "happen-engine/"+leader.id {
			t.Fatalf("%s from %s, not the leader %s: %s", e.Type, e.Context.Sender, leader.id, summary(w.all()))
		}
	}
	if len(w.ofType(events.TypeNodeDown)) != 1 || len(w.ofType(events.TypeNodeUp)) != 1 {
		t.Fatalf("want one node.down and one node.up: %s", summary(w.all()))
	}
}

// A member owning streams leaves, once cut off without a word and once
// stopping cleanly. The streams it owned are taken over by the others
// within two lease periods, their nodes observed again, and nothing is
// reported: none of them failed.
func TestScenarioShareMemberLeaves(t *testing.T) {
	t.Parallel()
	const period = 2 * time.Second
	for _, how := range []string{"killed", "stopped"} {
		t.Run(how, func(t *testing.T) {
			w := shareWorld(t)
			ids := []string{"a", "b", "c"}
			hs := []*haEngine{w.startShare("a", period), w.startShare("b", period), w.startShare("c", period)}
			leader := w.shareLeader(hs)
			w.quietFor(3, "healthy flow under three sharing engines")

			var gone *haEngine
			var rest []*haEngine
			for _, h := range hs {
				if h != leader && gone == nil && owned(h.id, ids) > 0 {
					gone = h
					continue
				}
				rest = append(rest, h)
			}
			var restIDs []string
			for _, h := range rest {
				restIDs = append(restIDs, h.id)
			}
			left := time.Now()
			if how == "killed" {
				gone.kill()
			} else {
				gone.cancel()
				<-gone.done
			}
			// Taken over: the others own everything between them and the
			// leader sees every node observed, sampled by its new owner.
			testutil.Eventually(t, 2*period+2*time.Second, func() bool {
				st := leader.eng.Status()
				if len(st.Nodes) != len(shareStreams) || len(st.Unobserved) != 0 {
					return false
				}
				for _, h := range rest {
					if got := h.eng.Status(); !slices.Equal(got.Members, restIDs) || (h != leader && !ownsItsShare(got, h.id, restIDs)) {
						return false
					}
				}
				return true
			}, "the streams of %s taken over", gone.id)
			took := time.Since(left)
			t.Logf("%s's streams taken over %v after it %s (lease %v)", gone.id, took.Round(10*time.Millisecond), how, period)
			if took > 2*period {
				t.Fatalf("takeover of %s's streams took %v, want within two lease periods (%v)", gone.id, took, 2*period)
			}
			w.quietFor(8, "flow after a member left")
		})
	}
}

// The leader, which samples a share of its own, is killed while a node on
// another member's stream is down. The new leader gathers every member's
// summary before it judges: no second node.down, and the node.up comes
// once, under the same correlationId.
func TestScenarioShareLeaderKilledMidIncident(t *testing.T) {
	t.Parallel()
	const period = 2 * time.Second
	w := shareWorld(t)
	ids := []string{"a", "b", "c"}
	hs := []*haEngine{w.startShare("a", period), w.startShare("b", period), w.startShare("c", period)}
	leader := w.shareLeader(hs)
	w.quietFor(3, "healthy flow under three sharing engines")

	// A node on a stream that stays with its owner when the leader goes.
	var victim string
	var rest []*haEngine
	var restIDs []string
	for _, h := range hs {
		if h != leader {
			rest = append(rest, h)
			restIDs = append(restIDs, h.id)
		}
	}
	for i, s := range shareStreams {
		if o := members.Rendezvous(s, ids); o != leader.id && members.Rendezvous(s, restIDs) == o {
			group := "eu"
			if i%2 == 1 {
				group = "us"
			}
			victim = group + "-" + strings.ToLower(s)
			break
		}
	}
	if victim == "" {
		t.Fatalf("no stream outside the leader %s's share among %v", leader.id, ids)
	}
	w.worker(victim).Kill()
	w.waitNodeDown(25 * time.Second)
	corr := w.ofType(events.TypeNodeDown)[0].Context.CorrelationID

	leader.kill()
	var next *haEngine
	testutil.Eventually(t, 4*period, func() bool {
		var n int
		n, next = leaderOf(rest)
		return n == 1
	}, "a new leader")
	w.eng = next.eng
	testutil.Eventually(t, 4*period, func() bool {
		st := next.eng.Status()
		return len(st.Nodes) == len(shareStreams) && len(st.Incidents) == 1
	}, "the new leader sees every node and the open incident")
	w.ticks(5)
	if n := len(w.ofType(events.TypeNodeDown)); n != 1 {
		t.Fatalf("after the takeover %d node.down, want one: %s", n, summary(w.all()))
	}
	w.worker(victim).Start()
	testutil.Eventually(t, 30*time.Second, func() bool { return len(w.ofType(events.TypeNodeUp)) > 0 }, "node.up for %s", victim)
	w.ticks(3)
	ups := w.ofType(events.TypeNodeUp)
	if len(ups) != 1 || ups[0].Context.CorrelationID != corr || ups[0].Context.Sender != "happen-engine/"+next.id {
		t.Fatalf("want one node.up under %s from %s: %s", corr, next.id, summary(w.all()))
	}
	if len(w.ofType(events.TypeNodeDown)) != 1 {
		t.Fatalf("want one node.down: %s", summary(w.all()))
	}
}

// The summaries' stream is deleted by hand under three sharing engines.
// The members make it again as they publish, the leader reads it afresh,
// and every node is judged again; nothing is reported meanwhile.
func TestScenarioShareSummariesDeleted(t *testing.T) {
	t.Parallel()
	const period = 2 * time.Second
	w := shareWorld(t)
	hs := []*haEngine{w.startShare("a", period), w.startShare("b", period), w.startShare("c", period)}
	leader := w.shareLeader(hs)
	w.quietFor(3, "healthy flow under three sharing engines")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.js.DeleteStream(ctx, "happen_summaries"); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	// A summary counts for two missed samples and the one in flight after
	// it arrived (the engine's stale), and the status is up to a tick old:
	// past both, every summary the leader shows arrived after the deletion.
	const interval = time.Second
	past := flow.BlindReset(interval) + interval + 2*interval
	testutil.Eventually(t, 30*time.Second, func() bool {
		st := leader.eng.Status()
		return time.Since(deleted) > past && len(st.Nodes) == len(shareStreams) && len(st.Unobserved) == 0
	}, "every node judged again after the summaries' stream was deleted")
	t.Logf("every node judged again %v after the deletion", time.Since(deleted).Round(100*time.Millisecond))
	w.quietFor(5, "flow after the summaries' stream came back")
}
