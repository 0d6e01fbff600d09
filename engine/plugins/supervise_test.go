package plugins

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/happen-dev/happen/internal/testutil"
)

// restartedFrom waits until p runs a process other than pid, restarted
// once.
func restartedFrom(t *testing.T, p *plug, pid int) {
	t.Helper()
	testutil.CheckFor(t, 20*time.Second, func() error {
		if in := p.info(); !in.Running || in.Pid == pid || in.Restarts != 1 {
			return fmt.Errorf("not restarted: %+v", in)
		}
		return nil
	})
}

// A caller may drop the first process (markBroken, as a worker does when it
// finds the process exited) the moment Start returns, before the
// supervisor goroutine has run. The supervisor was then left with no
// process to watch and dereferenced nil, killing the engine; it must
// restart the plugin instead.
func TestMarkBrokenBeforeSupervisorRuns(t *testing.T) {
	h := newHarness(t, pluginDir(t, "ok"))
	p := h.m.plugins["ok"]
	cur, err := p.get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	p.markBroken(cur, "test")
	restartedFrom(t, p, cur.Pid())
	testutil.Eventually(t, 10*time.Second, func() bool { return !processAlive(cur.Pid()) },
		"dropped process %d still runs", cur.Pid())
}

// A supervisor given no process starts one, through the restart loop.
func TestSuperviseWithoutProcessStartsOne(t *testing.T) {
	h := newHarness(t, pluginDir(t, "ok"))
	found, err := discover(h.m.cfg.Dir)
	if err != nil || len(found) != 1 {
		t.Fatalf("discover: %v %+v", err, found)
	}
	// A second plug of the same file, apart from the manager's.
	p := newPlug(h.m, found[0])
	p.first(context.Background())
	first := p.info()
	if !first.Running {
		t.Fatalf("not started: %+v", first)
	}
	inst := p.cur
	p.clear(inst)
	inst.Kill()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.supervise(ctx, nil)
	}()
	restartedFrom(t, p, first.Pid)
	pid := p.info().Pid
	cancel()
	<-done
	if processAlive(pid) {
		t.Fatalf("process %d survived its supervisor", pid)
	}
}
