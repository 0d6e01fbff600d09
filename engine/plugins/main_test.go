package plugins

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/happen-dev/happen/engine/action"
	"github.com/happen-dev/happen/engine/hostapi"
	"github.com/happen-dev/happen/engine/plugins/testdata/testplugin"
	"github.com/happen-dev/happen/internal/testutil"
	"github.com/happen-dev/happen/rules"
	"github.com/happen-dev/happen/sdk/events"
)

// binDir holds the test plugins TestMain builds; tests only read it.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "happen-test-plugins-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := buildPlugins(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	binDir = dir
	return m.Run()
}

// buildPlugins builds each plugin of testdata, plus one announcing another
// protocol version.
func buildPlugins(dir string) error {
	builds := []struct{ name, src, ldflags string }{
		{"ok", "./testdata/ok", ""},
		{"crash", "./testdata/crash", ""},
		{"hang", "./testdata/hang", ""},
		{"fail", "./testdata/fail", ""},
		{"wrongproto", "./testdata/ok", "-X github.com/happen-dev/happen/sdk/internal/wire.servedVersion=2"},
	}
	var wg sync.WaitGroup
	errs := make([]error, len(builds))
	for i, b := range builds {
		wg.Go(func() {
			args := []string{"build", "-o", filepath.Join(dir, Prefix+b.name)}
			if b.ldflags != "" {
				args = append(args, "-ldflags", b.ldflags)
			}
			cmd := exec.Command(goTool(), append(args, b.src)...)
			if out, err := cmd.CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("build test plugin %s: %v\n%s", b.name, err, out)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(os.Getenv("GOROOT"), "bin", "go")
}

// pluginDir returns a fresh plugin folder holding the named test plugins.
func pluginDir(t testing.TB, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range names {
		install(t, filepath.Join(binDir, Prefix+n), filepath.Join(dir, Prefix+n), 0o755)
	}
	return dir
}

// install copies a built plugin; tests may change a copy's mode freely.
func install(t testing.TB, from, to string, mode os.FileMode) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

// failure is one action.failed the manager emitted.
type failure struct {
	failed events.ActionFailed
	cause  events.Envelope
}

// harness is a manager over a real JetStream server, with its logs and
// action.failed events captured.
type harness struct {
	nc     *nats.Conn
	m      *Manager
	logs   *testutil.LogBuffer
	failed chan failure
}

func newHarness(t testing.TB, dir string, mods ...func(*Config)) *harness {
	t.Helper()
	s := testutil.RunServer(t)
	nc := testutil.Connect(t, s.ClientURL())
	h := &harness{nc: nc, logs: &testutil.LogBuffer{}, failed: make(chan failure, 100)}
	cfg := Config{
		Dir:            dir,
		Host:           hostapi.New(nc),
		Logger:         slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		DefaultTimeout: 5 * time.Second,
		Backoff:        20 * time.Millisecond,
		Emit: func(_ context.Context, f events.ActionFailed, cause events.Envelope) {
			h.failed <- failure{f, cause}
		},
	}
	for _, mod := range mods {
		mod(&cfg)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = m.Close(ctx)
	})
	h.m = m
	return h
}

// records subscribes to what test plugins publish on subject.
func (h *harness) records(t testing.TB, subject string) <-chan testplugin.Record {
	t.Helper()
	raw := make(chan *nats.Msg, 1000)
	sub, err := h.nc.ChanSubscribe(subject, raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	out := make(chan testplugin.Record, 1000)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for msg := range raw {
			var r testplugin.Record
			if err := json.Unmarshal(msg.Data, &r); err != nil {
				t.Errorf("record on %s: %v", subject, err)
				continue
			}
			out <- r
		}
	}()
	t.Cleanup(func() {
		_ = sub.Unsubscribe()
		close(raw)
		<-done
	})
	return out
}

func next[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(20 * time.Second):
		t.Fatalf("no %s within 20s", what)
		var zero T
		return zero
	}
}

// none fails if ch yields anything right now: by the time a test calls it,
// whatever it guards against would already have been delivered.
func none[T any](t testing.TB, ch <-chan T, what string) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("unexpected %s: %+v", what, v)
	default:
	}
}

func envelope(typ, id string) events.Envelope {
	return events.Envelope{
		Type:    typ,
		Payload: json.RawMessage(`{"nodeId":"orders-eu-1","pattern":"node-failure"}`),
		Context: events.Context{
			ID: id, Timestamp: 1732400000000, Sender: "happen-engine/test",
			CorrelationID: "corr-" + id,
		},
	}
}

// fire is a node.down job for key running actions.
func fire(key, id string, actions ...rules.Action) action.Job {
	ev := envelope(events.TypeNodeDown, id)
	return action.Job{Event: ev, Down: ev, Rule: "node-failure", Key: key, Actions: actions}
}

// resolution is the node.up job ending down.
func resolution(down action.Job, id string) action.Job {
	up := envelope(events.TypeNodeUp, id)
	up.Context.CorrelationID = down.Event.Context.CorrelationID
	return action.Job{Event: up, Down: down.Event, Resolve: true, Rule: down.Rule, Key: down.Key, Actions: down.Actions}
}

func act(plugin string, with map[string]any) rules.Action {
	return rules.Action{Plugin: plugin, With: with}
}

func mustContain(t testing.TB, s, sub, what string) {
	t.Helper()
	if !strings.Contains(s, sub) {
		t.Fatalf("%s %q does not contain %q", what, s, sub)
	}
}
