package plugins

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/happen-dev/happen/internal/testutil"
)

// closeNow ends the test's manager without waiting for what still runs.
func closeNow(h *harness) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_ = h.m.Close(ctx)
}

// waiters is how many callers wait on s.
func (s *sem) waiters() (free, waiting int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.free, len(s.wait)
}

// A plugin whose calls hang takes at most MaxPerPlugin of the MaxParallel
// turns, and its jobs waiting for a slot hold none: another node's action
// on a healthy plugin runs, and ends, while all of them are outstanding.
func TestHungPluginDoesNotStarveOtherNodes(t *testing.T) {
	results := make(chan Result, 100)
	h := newHarness(t, pluginDir(t, "hang", "ok"), func(c *Config) {
		c.MaxParallel = 4 // 2 per plugin
		c.Retries = 3
		c.HungAfter = -1 // this test is about sharing, not restarts
		c.Observe = func(r Result) { results <- r }
	})
	defer closeNow(h)
	hangRecs := h.records(t, "rec.starve.hang")
	okRecs := h.records(t, "rec.starve.ok")
	hang := act("hang", map[string]any{"subject": "rec.starve.hang"})
	hang.Timeout = time.Second // each hang job lasts at least 4s
	keys := []string{"eu-1", "eu-2", "eu-3", "eu-4", "eu-5"}
	for _, k := range keys {
		h.m.Dispatch(context.Background(), fire(k, "ev-"+k, hang))
	}
	next(t, hangRecs, "a hang call")
	next(t, hangRecs, "a second hang call")
	// Two calls in flight, the other three jobs wait for a slot of the
	// plugin, and two turns are free.
	testutil.CheckFor(t, 20*time.Second, func() error {
		_, slotWaiters := h.m.plugins["hang"].slots.waiters()
		turnsFree, _ := h.m.turns.waiters()
		if slotWaiters != 3 || turnsFree != 2 {
			return fmt.Errorf("%d jobs wait for a hang slot, %d turns free; want 3 and 2", slotWaiters, turnsFree)
		}
		return nil
	})

	h.m.Dispatch(context.Background(), fire("us-1", "ev-us-1", act("ok", map[string]any{"subject": "rec.starve.ok"})))
	next(t, okRecs, "start of us-1's action")
	if r := next(t, results, "result"); r.Plugin == "hang" {
		t.Fatalf("a hang job ended (%+v) before us-1's action on the ok plugin", r)
	} else if r.Outcome != OutcomeOK || r.Key != "us-1" {
		t.Fatalf("us-1's result = %+v", r)
	}
	none(t, h.failed, "action.failed")
}

// A job waiting for its retry holds no turn: with one turn, another node's
// job runs in the backoff.
func TestBackoffHoldsNoTurn(t *testing.T) {
	results := make(chan Result, 100)
	h := newHarness(t, pluginDir(t, "fail", "ok"), func(c *Config) {
		c.MaxParallel = 1
		c.Retries = 1
		c.Backoff = 5 * time.Second
		c.Observe = func(r Result) { results <- r }
	})
	defer closeNow(h)
	failRecs := h.records(t, "rec.backoff.fail")
	h.m.Dispatch(context.Background(), fire("n1", "ev-f", act("fail", map[string]any{"subject": "rec.backoff.fail"})))
	next(t, failRecs, "first attempt")
	h.m.Dispatch(context.Background(), fire("n2", "ev-ok", act("ok", map[string]any{"subject": "rec.backoff.ok"})))
	if r := next(t, results, "result"); r.Key != "n2" || r.Outcome != OutcomeOK {
		t.Fatalf("first result = %+v, want n2's action, run in n1's backoff", r)
	}
	none(t, failRecs, "retry")
}

// A plugin whose calls keep timing out is hung: after HungAfter timeouts
// in a row its process is killed and restarted, and later attempts run in
// the new process.
func TestRepeatedTimeoutsRestartHungProcess(t *testing.T) {
	h := newHarness(t, pluginDir(t, "hang"), func(c *Config) {
		c.Retries = 6
		c.MaxBackoff = 200 * time.Millisecond
		c.HungAfter = 3
	})
	defer closeNow(h)
	recs := h.records(t, "rec.hung")
	pid := h.m.Plugins()[0].Pid
	a := act("hang", map[string]any{"subject": "rec.hung"})
	a.Timeout = time.Second
	h.m.Dispatch(context.Background(), fire("n1", "ev-hung", a))

	for i := 1; ; i++ {
		r := next(t, recs, "attempt")
		if r.Pid != pid {
			if i <= 3 {
				t.Fatalf("attempt %d ran in a new process; want the first 3 in %d", i, pid)
			}
			break
		}
		if i > 3 {
			t.Fatalf("attempt %d still ran in process %d, after 3 timeouts in a row", i, pid)
		}
	}
	if in := h.m.Plugins()[0]; in.Restarts < 1 || in.Pid == pid {
		t.Fatalf("after the restart: %+v", in)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return !processAlive(pid) },
		"hung process %d still runs", pid)
	if logs := h.logs.String(); !strings.Contains(logs, "hung: 3 calls in a row timed out") {
		t.Fatalf("no log of the hung process:\n%s", logs)
	}
	// The action still ends the usual way, when its attempts run out.
	f := next(t, h.failed, "action.failed")
	if f.failed.Plugin != "hang" || f.failed.EventID != "ev-hung" {
		t.Fatalf("action.failed = %+v", f.failed)
	}
}
