package plugins

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/happen-dev/happen/internal/testutil"
	"github.com/happen-dev/happen/sdk/events"
)

func TestRoundTrip(t *testing.T) {
	h := newHarness(t, pluginDir(t, "ok"))
	params, ok := h.m.Params("ok")
	if !ok {
		t.Fatalf("ok not installed: %+v", h.m.Plugins())
	}
	want := []string{"echo", "marker", "note", "permanent", "quiet", "sleep", "subject", "token"}
	if !slices.Equal(params, want) {
		t.Fatalf("params = %v, want %v", params, want)
	}
	infos := h.m.Plugins()
	if len(infos) != 1 || infos[0].Name != "ok" || infos[0].Version != "1.2.3" || !infos[0].Running || infos[0].Pid == 0 || infos[0].Error != "" {
		t.Fatalf("plugins = %+v", infos)
	}

	recs := h.records(t, "rec.rt")
	with := map[string]any{
		"subject": "rec.rt",
		"note":    map[string]any{"list": []any{1, "two", true}, "n": 2.5},
	}
	down := fire("orders-eu-1", "ev-down-1", act("ok", with))
	h.m.Dispatch(context.Background(), down)

	r := next(t, recs, "record of execute")
	if r.Phase != "start" || r.Op != "execute" || r.Resolve || r.EventID != "ev-down-1" ||
		r.EventType != events.TypeNodeDown || r.DownID != "ev-down-1" || r.Rule != "node-failure" {
		t.Fatalf("execute record = %+v", r)
	}
	wantWith := map[string]any{
		"subject": "rec.rt",
		// JSON numbers: plugins see float64.
		"note": map[string]any{"list": []any{1.0, "two", true}, "n": 2.5},
	}
	if !reflect.DeepEqual(r.With, wantWith) {
		t.Fatalf("with = %#v, want %#v", r.With, wantWith)
	}
	if r.IdempotencyKey != "ev-down-1/ok/0/execute" {
		t.Fatalf("idempotency key = %q", r.IdempotencyKey)
	}
	if r := next(t, recs, "end of execute"); r.Phase != "end" {
		t.Fatalf("record = %+v", r)
	}

	h.m.Dispatch(context.Background(), resolution(down, "ev-up-1"))
	r = next(t, recs, "record of undo")
	if r.Op != "undo" || !r.Resolve || r.EventID != "ev-up-1" || r.EventType != events.TypeNodeUp ||
		r.DownID != "ev-down-1" || r.IdempotencyKey != "ev-up-1/ok/0/undo" {
		t.Fatalf("undo record = %+v", r)
	}
	next(t, recs, "end of undo")
	none(t, h.failed, "action.failed")
}

func TestCrashMidActionIsRetriedOnRestartedProcess(t *testing.T) {
	h := newHarness(t, pluginDir(t, "crash"))
	recs := h.records(t, "rec.crash")
	marker := filepath.Join(t.TempDir(), "crashed")
	pid := h.m.Plugins()[0].Pid

	h.m.Dispatch(context.Background(), fire("n1", "ev-1",
		act("crash", map[string]any{"subject": "rec.crash", "marker": marker})))

	first := next(t, recs, "first attempt")
	second := next(t, recs, "retry")
	end := next(t, recs, "end of retry")
	if first.Pid != pid || second.Pid == pid || end.Pid != second.Pid || end.Phase != "end" {
		t.Fatalf("attempts ran in pids %d, %d, %d; first process was %d", first.Pid, second.Pid, end.Pid, pid)
	}
	if first.IdempotencyKey != second.IdempotencyKey || first.IdempotencyKey != "ev-1/crash/0/execute" {
		t.Fatalf("idempotency keys %q and %q", first.IdempotencyKey, second.IdempotencyKey)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("the plugin did not crash: %v", err)
	}
	in := h.m.Plugins()[0]
	if !in.Running || in.Pid != second.Pid || in.Restarts != 1 {
		t.Fatalf("after the crash: %+v", in)
	}
	if processAlive(pid) {
		t.Fatalf("crashed process %d still exists", pid)
	}
	none(t, h.failed, "action.failed")
}

func TestKilledProcessIsRestarted(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := newHarness(t, pluginDir(t, "ok"), func(c *Config) { c.Registry = reg })
	pid := h.m.Plugins()[0].Pid
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 10*time.Second, func() error {
		if in := h.m.Plugins()[0]; !in.Running || in.Pid == pid || in.Restarts != 1 {
			return fmt.Errorf("not restarted: %+v", in)
		}
		return nil
	})
	if n := metricValue(t, reg, "happen_plugin_restarts_total", "plugin", "ok"); n != 1 {
		t.Fatalf("restarts metric = %v", n)
	}
	recs := h.records(t, "rec.kill")
	h.m.Dispatch(context.Background(), fire("n1", "ev-k", act("ok", map[string]any{"subject": "rec.kill"})))
	if r := next(t, recs, "record"); r.Pid == pid {
		t.Fatalf("ran in the killed process %d", pid)
	}
	next(t, recs, "end")
	testutil.CheckFor(t, 10*time.Second, func() error {
		if n := metricValue(t, reg, "happen_plugin_actions_total", "plugin", "ok", "result", OutcomeOK); n != 1 {
			return fmt.Errorf("ok actions metric = %v", n)
		}
		return nil
	})
}

// metricValue reads one counter or gauge from reg; labels are name, value
// pairs. It is 0 when the series does not exist.
func metricValue(t testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue series
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

func TestHangTimesOutThenFails(t *testing.T) {
	h := newHarness(t, pluginDir(t, "hang"), func(c *Config) { c.Retries = 2 })
	recs := h.records(t, "rec.hang")
	a := act("hang", map[string]any{"subject": "rec.hang"})
	a.Timeout = 300 * time.Millisecond
	h.m.Dispatch(context.Background(), fire("n1", "ev-hang", a))

	for i := range 3 {
		r := next(t, recs, "attempt")
		if r.IdempotencyKey != "ev-hang/hang/0/execute" {
			t.Fatalf("attempt %d key %q", i+1, r.IdempotencyKey)
		}
	}
	f := next(t, h.failed, "action.failed")
	if f.failed.Plugin != "hang" || f.failed.Action != OpExecute || f.failed.EventID != "ev-hang" || f.cause.Context.ID != "ev-hang" {
		t.Fatalf("action.failed = %+v", f)
	}
	mustContain(t, f.failed.Error, "timed out after 300ms", "error")
	none(t, recs, "fourth attempt")
	if in := h.m.Plugins()[0]; !in.Running || in.Restarts != 0 {
		t.Fatalf("a hanging call must not cost the process: %+v", in)
	}
}

func TestErrorsAreRetriedThenReported(t *testing.T) {
	const secret = "tok-3f9a1c77e2"
	t.Setenv("HAPPEN_TEST_TOKEN", secret)
	h := newHarness(t, pluginDir(t, "fail"))
	recs := h.records(t, "rec.fail")

	h.m.Dispatch(context.Background(), fire("n1", "ev-f", act("fail",
		map[string]any{"subject": "rec.fail", "token": "${env:HAPPEN_TEST_TOKEN}"})))
	for range 4 { // the first attempt and 3 retries
		if r := next(t, recs, "attempt"); r.With["token"] != secret {
			t.Fatalf("plugin got token %v", r.With["token"])
		}
	}
	f := next(t, h.failed, "action.failed")
	if f.failed.Plugin != "fail" || f.failed.EventID != "ev-f" {
		t.Fatalf("action.failed = %+v", f.failed)
	}
	mustContain(t, f.failed.Error, "webhook refused token [REDACTED]", "error")
	none(t, recs, "fifth attempt")

	// A permanent error is not retried.
	h.m.Dispatch(context.Background(), fire("n1", "ev-p", act("fail",
		map[string]any{"subject": "rec.fail", "permanent": true})))
	next(t, recs, "attempt")
	f = next(t, h.failed, "action.failed")
	if f.failed.EventID != "ev-p" {
		t.Fatalf("action.failed = %+v", f.failed)
	}
	none(t, recs, "retry of a permanent error")
	if strings.Contains(h.logs.String(), secret) {
		t.Fatal("the secret appears in the log")
	}
}

func TestPluginsThatCannotRun(t *testing.T) {
	dir := pluginDir(t, "ok", "wrongproto")
	install(t, filepath.Join(binDir, Prefix+"ok"), filepath.Join(dir, Prefix+"noexec"), 0o644)
	elsewhere := t.TempDir()
	install(t, filepath.Join(binDir, Prefix+"ok"), filepath.Join(elsewhere, Prefix+"ok"), 0o755)
	if err := os.Symlink(filepath.Join(elsewhere, Prefix+"ok"), filepath.Join(dir, Prefix+"outside")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, Prefix+"folder"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A file a rule could not name, and one that is no plugin at all.
	install(t, filepath.Join(binDir, Prefix+"ok"), filepath.Join(dir, Prefix+"Bad"), 0o755)
	if err := os.WriteFile(filepath.Join(dir, "README"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}

	h := newHarness(t, dir)
	byName := map[string]Info{}
	for _, in := range h.m.Plugins() {
		byName[in.Name] = in
	}
	if len(byName) != 6 {
		t.Fatalf("plugins = %+v", h.m.Plugins())
	}
	if !byName["ok"].Running {
		t.Fatalf("ok = %+v", byName["ok"])
	}
	wrong := filepath.Join(dir, Prefix+"wrongproto")
	for name, want := range map[string][]string{
		"wrongproto": {wrong, "protocol version 2", "engine speaks version 1"},
		"noexec":     {"not executable"},
		"outside":    {"outside the plugin folder"},
		"folder":     {"not a regular file"},
		"Bad":        {"not one a rule can use"},
	} {
		in := byName[name]
		if in.Running {
			t.Fatalf("%s runs: %+v", name, in)
		}
		for _, w := range want {
			mustContain(t, in.Error, w, name+" error")
		}
		if _, ok := h.m.Params(name); ok {
			t.Fatalf("%s counts as installed", name)
		}
	}
	mustContain(t, h.m.Plugins()[0].Error+h.logs.String(), "protocol version 2", "log")
	if _, ok := h.m.Params("missing"); ok {
		t.Fatal("a plugin with no file counts as installed")
	}

	// A missing plugin fails its action; an optional one is skipped; the
	// installed one still runs.
	recs := h.records(t, "rec.mix")
	opt := act("missing", nil)
	opt.Optional = true
	h.m.Dispatch(context.Background(), fire("n1", "ev-m",
		act("missing", nil), opt, act("ok", map[string]any{"subject": "rec.mix"})))
	f := next(t, h.failed, "action.failed")
	if f.failed.Plugin != "missing" || f.failed.EventID != "ev-m" {
		t.Fatalf("action.failed = %+v", f.failed)
	}
	mustContain(t, f.failed.Error, "not installed", "error")
	next(t, recs, "ok's record")
	next(t, recs, "ok's end")
	none(t, h.failed, "second action.failed")
}

func TestNoPluginFolder(t *testing.T) {
	h := newHarness(t, filepath.Join(t.TempDir(), "absent"))
	if len(h.m.Plugins()) != 0 {
		t.Fatalf("plugins = %+v", h.m.Plugins())
	}
	h.m.Dispatch(context.Background(), fire("n1", "ev", act("ok", nil)))
	f := next(t, h.failed, "action.failed")
	mustContain(t, f.failed.Error, "not installed", "error")
}

func TestOrderPerKeyParallelAcrossKeys(t *testing.T) {
	h := newHarness(t, pluginDir(t, "ok"), func(c *Config) { c.MaxParallel = 2 })

	// One key: jobs run in the order dispatched.
	order := h.records(t, "rec.order")
	for i := range 6 {
		h.m.Dispatch(context.Background(), fire("same", "ev-"+string(rune('a'+i)),
			act("ok", map[string]any{"subject": "rec.order", "sleep": "15ms"})))
	}
	var got []string
	for range 6 {
		r := next(t, order, "start")
		e := next(t, order, "end")
		if e.EventID != r.EventID {
			t.Fatalf("job %s started before %s ended", e.EventID, r.EventID)
		}
		got = append(got, r.EventID)
	}
	if want := []string{"ev-a", "ev-b", "ev-c", "ev-d", "ev-e", "ev-f"}; !slices.Equal(got, want) {
		t.Fatalf("order = %v, want %v", got, want)
	}

	// Four keys: two run at once, never more.
	par := h.records(t, "rec.par")
	for _, k := range []string{"k1", "k2", "k3", "k4"} {
		h.m.Dispatch(context.Background(), fire(k, "ev-"+k,
			act("ok", map[string]any{"subject": "rec.par", "sleep": "700ms"})))
	}
	active, most := 0, 0
	for range 8 {
		r := next(t, par, "record")
		if r.Phase == "start" {
			active++
		} else {
			active--
		}
		most = max(most, active)
	}
	if most != 2 {
		t.Fatalf("%d actions ran at once, want 2", most)
	}
}

func TestQueueOverflowDropsOldest(t *testing.T) {
	h := newHarness(t, pluginDir(t, "ok"), func(c *Config) { c.MaxParallel = 1; c.QueueSize = 2 })
	recs := h.records(t, "rec.q")
	job := func(id, sleep string) {
		h.m.Dispatch(context.Background(), fire("k", id,
			act("ok", map[string]any{"subject": "rec.q", "sleep": sleep})))
	}
	job("ev-0", "500ms")
	if r := next(t, recs, "start of the first job"); r.EventID != "ev-0" {
		t.Fatalf("record = %+v", r)
	}
	job("ev-1", "0s")
	job("ev-2", "0s")
	job("ev-3", "0s") // pushes ev-1 out
	f := next(t, h.failed, "action.failed")
	if f.failed.EventID != "ev-1" || f.failed.Plugin != "ok" {
		t.Fatalf("action.failed = %+v", f.failed)
	}
	mustContain(t, f.failed.Error, "dropped", "error")
	var ran []string
	for range 5 {
		if r := next(t, recs, "record"); r.Phase == "end" {
			ran = append(ran, r.EventID)
		}
	}
	if want := []string{"ev-0", "ev-2", "ev-3"}; !slices.Equal(ran, want) {
		t.Fatalf("ran %v, want %v", ran, want)
	}
}

// A key waiting its turn (not running) whose queue overflows stays in line
// once.
func TestQueueOverflowOfWaitingKey(t *testing.T) {
	h := newHarness(t, pluginDir(t, "ok"), func(c *Config) { c.MaxParallel = 1; c.QueueSize = 1 })
	recs := h.records(t, "rec.q1")
	dispatch := func(key, id, sleep string) {
		h.m.Dispatch(context.Background(), fire(key, id,
			act("ok", map[string]any{"subject": "rec.q1", "sleep": sleep})))
	}
	dispatch("a", "ev-a", "300ms")
	next(t, recs, "start of a")
	dispatch("b", "ev-b1", "0s")
	dispatch("b", "ev-b2", "0s")
	if f := next(t, h.failed, "action.failed"); f.failed.EventID != "ev-b1" {
		t.Fatalf("dropped %+v", f.failed)
	}
	dispatch("c", "ev-c", "0s")
	var ran []string
	for range 5 {
		if r := next(t, recs, "record"); r.Phase == "end" {
			ran = append(ran, r.EventID)
		}
	}
	if want := []string{"ev-a", "ev-b2", "ev-c"}; !slices.Equal(ran, want) {
		t.Fatalf("ran %v, want %v", ran, want)
	}
	none(t, h.failed, "second action.failed")
}

func TestSecretsAreExpandedAndNeverShown(t *testing.T) {
	const envSecret = "env-9d2b7c41aa"
	const fileSecret = "file-5e8f03bd66"
	t.Setenv("HAPPEN_TEST_SECRET", envSecret)
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte(fileSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, pluginDir(t, "ok", "fail"))
	recs := h.records(t, "rec.sec")

	h.m.Dispatch(context.Background(), fire("n1", "ev-s", act("ok", map[string]any{
		"subject": "rec.sec",
		"token":   "Bearer ${env:HAPPEN_TEST_SECRET}",
		"note":    []any{map[string]any{"key": "${file:" + secretFile + "}"}},
		"echo":    true,
	})))
	r := next(t, recs, "record")
	if r.With["token"] != "Bearer "+envSecret {
		t.Fatalf("token = %v", r.With["token"])
	}
	if n, _ := r.With["note"].([]any); len(n) != 1 || !reflect.DeepEqual(n[0], map[string]any{"key": fileSecret}) {
		t.Fatalf("note = %#v", r.With["note"])
	}
	next(t, recs, "end")
	// The plugin printed both secrets; the engine logged the line redacted
	// (token is a parameter the plugin marks secret, so all of it goes).
	testutil.Eventually(t, 10*time.Second, func() bool {
		return strings.Contains(h.logs.String(), "token is [REDACTED], note is [map[key:[REDACTED]]]")
	}, "plugin output in the log: %s", h.logs)

	// Missing references fail the action at once, naming the reference.
	h.m.Dispatch(context.Background(), fire("n1", "ev-miss", act("ok", map[string]any{
		"subject": "rec.sec", "token": "${env:HAPPEN_TEST_UNSET}",
	})))
	f := next(t, h.failed, "action.failed")
	mustContain(t, f.failed.Error, "with.token: ${env:HAPPEN_TEST_UNSET}: environment variable HAPPEN_TEST_UNSET is not set", "error")
	absent := filepath.Join(t.TempDir(), "absent")
	h.m.Dispatch(context.Background(), fire("n1", "ev-nofile", act("ok", map[string]any{
		"subject": "rec.sec", "note": map[string]any{"deep": "${file:" + absent + "}"},
	})))
	f = next(t, h.failed, "action.failed")
	mustContain(t, f.failed.Error, "with.note.deep: ${file:"+absent+"}", "error")
	none(t, recs, "a call with an unresolved reference")

	// A plugin's error quoting the secret reaches action.failed redacted.
	h.m.Dispatch(context.Background(), fire("n1", "ev-err", act("fail", map[string]any{
		"subject": "rec.sec", "token": "${env:HAPPEN_TEST_SECRET}", "permanent": true,
	})))
	next(t, recs, "attempt")
	f = next(t, h.failed, "action.failed")
	if f.failed.Error != "webhook refused token [REDACTED]" {
		t.Fatalf("error = %q", f.failed.Error)
	}
	logs := h.logs.String()
	for _, s := range []string{envSecret, fileSecret} {
		if strings.Contains(logs, s) {
			t.Fatalf("secret %q appears in the log", s)
		}
	}
}

func TestDryRunRunsNothing(t *testing.T) {
	h := newHarness(t, pluginDir(t, "ok"), func(c *Config) { c.DryRun = true })
	if _, ok := h.m.Params("ok"); !ok {
		t.Fatal("dry run must still describe plugins, to check rules")
	}
	recs := h.records(t, "rec.dry")
	h.m.Dispatch(context.Background(), fire("n1", "ev-d", act("ok", map[string]any{"subject": "rec.dry"})))
	mustContain(t, h.logs.String(), "dry run: would run action", "log")
	// Flush a round trip through the server: a record would be in by now.
	if err := h.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	none(t, recs, "record")
}

func TestCloseStopsEverything(t *testing.T) {
	// Earlier tests' managers are closed, so none of this is left.
	if g := pluginGoroutines(); len(g) != 0 {
		t.Fatalf("plugin goroutines before the test:\n%s", strings.Join(g, "\n\n"))
	}
	h := newHarness(t, pluginDir(t, "ok", "hang"))
	recs := h.records(t, "rec.close")
	var pids []int
	for _, in := range h.m.Plugins() {
		pids = append(pids, in.Pid)
	}
	h.m.Dispatch(context.Background(), fire("n1", "ev-h", act("hang", map[string]any{"subject": "rec.close"})))
	next(t, recs, "hang's start")
	h.m.Dispatch(context.Background(), fire("n1", "ev-queued", act("ok", map[string]any{"subject": "rec.close"})))

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := h.m.Close(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close = %v, want the deadline: jobs were abandoned", err)
	}
	mustContain(t, err.Error(), "1 queued jobs not run", "Close error")
	for _, pid := range pids {
		if processAlive(pid) {
			t.Fatalf("plugin process %d survived Close", pid)
		}
	}
	testutil.CheckFor(t, 10*time.Second, func() error {
		if g := pluginGoroutines(); len(g) > 0 {
			return errors.New("goroutines left:\n" + strings.Join(g, "\n\n"))
		}
		return nil
	})
	none(t, h.failed, "action.failed for work abandoned at shutdown")
	// After Close, dispatching is refused without running anything.
	h.m.Dispatch(context.Background(), fire("n1", "ev-late", act("ok", map[string]any{"subject": "rec.close"})))
	mustContain(t, h.logs.String(), "the plugin manager is not running", "log")
}

// pluginGoroutines lists the stacks of goroutines running code of this
// package, of the plugin protocol or of go-plugin.
func pluginGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		// The tests' own goroutines are not the manager's.
		if strings.Contains(g, "engine/plugins.Test") || strings.Contains(g, "engine/plugins.(*harness)") {
			continue
		}
		if strings.Contains(g, "happen/engine/plugins.") || strings.Contains(g, "happen/sdk/") ||
			strings.Contains(g, "hashicorp/go-plugin") {
			out = append(out, g)
		}
	}
	return out
}

func processAlive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}

// An optional action whose ${env:..} is unset is off, not failing: it is
// skipped with one warning, and the job's other actions still run.
func TestOptionalActionSkippedWhileEnvUnset(t *testing.T) {
	h := newHarness(t, pluginDir(t, "ok"))
	recs := h.records(t, "rec.opt")
	off := act("ok", map[string]any{"subject": "rec.opt", "token": "${env:HAPPEN_TEST_NEVER_SET}"})
	off.Optional = true
	on := act("ok", map[string]any{"subject": "rec.opt", "echo": true})
	for _, id := range []string{"ev-o1", "ev-o2"} {
		h.m.Dispatch(context.Background(), fire("n1", id, off, on))
		r := next(t, recs, "record of the second action")
		if _, ok := r.With["token"]; ok {
			t.Fatalf("the skipped action ran: %+v", r.With)
		}
	}
	none(t, h.failed, "action.failed for an optional action")
	if n := strings.Count(h.logs.String(), "optional action skipped while its environment variable is unset"); n != 1 {
		t.Fatalf("warned %d times, want once:\n%s", n, h.logs)
	}
}
