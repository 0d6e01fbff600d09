package pluginhost_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/happen-dev/happen/engine/hostapi"
	"github.com/happen-dev/happen/internal/testutil"
	"github.com/happen-dev/happen/sdk"
	"github.com/happen-dev/happen/sdk/events"
	"github.com/happen-dev/happen/sdk/pluginhost"
)

// plugins maps a name to a plugin binary TestMain built; tests only read it.
var plugins = map[string]string{}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "happen-pluginhost-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	for name, ldflags := range map[string]string{
		"hostcall": "",
		"v7":       "-X github.com/happen-dev/happen/sdk/internal/wire.servedVersion=7",
	} {
		out := filepath.Join(dir, "happen-plugin-"+name)
		args := []string{"build", "-o", out}
		if ldflags != "" {
			args = append(args, "-ldflags", ldflags)
		}
		if b, err := exec.Command("go", append(args, "./testdata/hostcall")...).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", name, err, b)
			return 1
		}
		plugins[name] = out
	}
	return m.Run()
}

type env struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	logs *testutil.LogBuffer
	p    *pluginhost.Plugin
}

func start(t *testing.T, mods ...func(*pluginhost.Config)) *env {
	t.Helper()
	s := testutil.RunServer(t)
	nc := testutil.Connect(t, s.ClientURL())
	js := testutil.JetStream(t, nc)
	e := &env{nc: nc, js: js, logs: &testutil.LogBuffer{}}
	cfg := pluginhost.Config{
		Path:   plugins["hostcall"],
		Host:   hostapi.New(nc),
		Logger: slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, m := range mods {
		m(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p, err := pluginhost.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	e.p = p
	return e
}

func (e *env) exec(t *testing.T, with map[string]any) (*sdk.ExecuteResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return e.p.Execute(ctx, &sdk.ExecuteRequest{With: with})
}

func (e *env) message(t *testing.T, with map[string]any) string {
	t.Helper()
	r, err := e.exec(t, with)
	if err != nil {
		t.Fatalf("execute %v: %v", with, err)
	}
	return r.Message
}

func TestDescribeAndEcho(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	d, err := e.p.Describe(ctx, &sdk.DescribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "hostcall" || d.Version != "9.8.7" || len(d.Params) != 6 ||
		d.Params[0] != (sdk.Param{Name: "op", Description: "what to do", Required: true}) || !d.Params[5].Secret {
		t.Fatalf("describe = %+v", d)
	}
	if e.p.Pid() == 0 {
		t.Fatal("no pid")
	}

	down := events.Envelope{
		Type:    events.TypeNodeDown,
		Payload: json.RawMessage(`{"nodeId":"n1","lagMetrics":{"ackRate":1.5}}`),
		Context: events.Context{ID: "d1", Timestamp: 42, Sender: "happen-engine/x", CausationID: "c0", CorrelationID: "k1"},
	}
	up := events.Envelope{
		Type:    events.TypeNodeUp,
		Payload: json.RawMessage(`{"nodeId":"n1","downSeconds":3}`),
		Context: events.Context{ID: "u1", Timestamp: 43, Sender: "happen-engine/x", CorrelationID: "k1"},
	}
	req := &sdk.ExecuteRequest{
		Event: up, Down: down, Rule: "r", Resolve: true, IdempotencyKey: "idem",
		With: map[string]any{"op": "echo", "n": 1, "list": []any{"a", false}, "m": map[string]any{"x": nil}},
	}
	r, err := e.p.Undo(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	var seen struct {
		Event, Down    events.Envelope
		Rule           string
		With           map[string]any
		Resolve        bool
		IdempotencyKey string
		Method         string
	}
	if err := json.Unmarshal([]byte(r.Message), &seen); err != nil {
		t.Fatal(err)
	}
	wantJSON := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	if wantJSON(seen.Event) != wantJSON(up) || wantJSON(seen.Down) != wantJSON(down) {
		t.Fatalf("events arrived as %s and %s", wantJSON(seen.Event), wantJSON(seen.Down))
	}
	if seen.Rule != "r" || !seen.Resolve || seen.IdempotencyKey != "idem" || seen.Method != "Undo" ||
		wantJSON(seen.With) != `{"list":["a",false],"m":{"x":null},"n":1,"op":"echo"}` {
		t.Fatalf("seen = %+v", seen)
	}
}

func TestHostCallsReachNATS(t *testing.T) {
	e := start(t)
	sub, err := e.nc.SubscribeSync("plug.out")
	if err != nil {
		t.Fatal(err)
	}
	if got := e.message(t, map[string]any{"op": "publish", "subject": "plug.out"}); got != "published" {
		t.Fatal(got)
	}
	msg, err := sub.NextMsg(5 * time.Second)
	if err != nil || string(msg.Data) != "hello" {
		t.Fatalf("published message %v, %v", msg, err)
	}

	if got := e.message(t, map[string]any{"op": "kv", "bucket": "plug_kv"}); got != `["found=false","found=true value=v1","found=false"]` {
		t.Fatalf("kv steps = %s", got)
	}

	ctx := context.Background()
	if _, err := e.js.CreateStream(ctx, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.js.CreateOrUpdateConsumer(ctx, "ORDERS", jetstream.ConsumerConfig{Durable: "worker", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 100}); err != nil {
		t.Fatal(err)
	}
	if got := e.message(t, map[string]any{"op": "consumer", "stream": "ORDERS", "consumer": "worker"}); got != "7" {
		t.Fatalf("plugin read max_ack_pending %s", got)
	}
	c, err := e.js.Consumer(ctx, "ORDERS", "worker")
	if err != nil {
		t.Fatal(err)
	}
	if n := c.CachedInfo().Config.MaxAckPending; n != 7 {
		t.Fatalf("max_ack_pending = %d on the server", n)
	}

	// A host refusal reaches the plugin with the host's own words.
	if got := e.message(t, map[string]any{"op": "hosterr"}); !strings.HasPrefix(got, "hostapi: publish") {
		t.Fatalf("host error = %q", got)
	}
}

func TestPluginErrors(t *testing.T) {
	e := start(t)
	var ae *pluginhost.ActionError
	_, err := e.exec(t, map[string]any{"op": "fail"})
	if !errors.As(err, &ae) || ae.Message != "transient trouble" || ae.Permanent {
		t.Fatalf("fail: %#v", err)
	}
	_, err = e.exec(t, map[string]any{"op": "permanent"})
	if !errors.As(err, &ae) || ae.Message != "nothing to retry" || !ae.Permanent {
		t.Fatalf("permanent: %#v", err)
	}
	_, err = e.exec(t, map[string]any{"op": "panic"})
	if !errors.As(err, &ae) || ae.Message != "Execute panicked: boom" {
		t.Fatalf("panic: %#v", err)
	}
	// The panic cost one call, not the process.
	if got := e.message(t, map[string]any{"op": "echo"}); !strings.Contains(got, `"method":"Execute"`) {
		t.Fatalf("after the panic: %s", got)
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		return strings.Contains(e.logs.String(), `"msg":"plugin panicked"`)
	}, "the panic's log line")

	// A process that exits mid-call is reported unavailable, and Done ends.
	_, err = e.exec(t, map[string]any{"op": "exit"})
	if !errors.Is(err, pluginhost.ErrUnavailable) {
		t.Fatalf("exit: %v", err)
	}
	select {
	case <-e.p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done not closed after the process exited")
	}
}

func TestTimeoutIsTheCallersDeadline(t *testing.T) {
	e := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel()
	<-ctx.Done()
	_, err := e.p.Execute(ctx, &sdk.ExecuteRequest{With: map[string]any{"op": "echo"}})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
}

func TestOutputIsLoggedRedacted(t *testing.T) {
	e := start(t, func(c *pluginhost.Config) {
		c.Redact = func(s string) string { return strings.ReplaceAll(s, "hunter2", "***") }
	})
	if got := e.message(t, map[string]any{"op": "log", "token": "hunter2"}); got != "logged" {
		t.Fatal(got)
	}
	want := []string{
		`"level":"WARN","msg":"late warning"`, `"token":"***"`, `"n":3`,
		`"level":"ERROR","msg":"early error"`, `"where":"before Serve"`,
		`"level":"INFO","msg":"a plain line with ***"`,
	}
	testutil.CheckFor(t, 10*time.Second, func() error {
		logs := e.logs.String()
		for _, w := range want {
			if !strings.Contains(logs, w) {
				return fmt.Errorf("log lacks %s:\n%s", w, logs)
			}
		}
		return nil
	})
	if strings.Contains(e.logs.String(), "hunter2") {
		t.Fatal("the secret reached the log")
	}
}

func TestStartRefusals(t *testing.T) {
	s := testutil.RunServer(t)
	host := hostapi.New(testutil.Connect(t, s.ClientURL()))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	_, err := pluginhost.Start(ctx, pluginhost.Config{Path: plugins["v7"], Host: host})
	var ve *pluginhost.VersionError
	if !errors.As(err, &ve) || ve.Plugin != 7 || ve.Engine != pluginhost.ProtocolVersion || ve.Path != plugins["v7"] {
		t.Fatalf("wrong version: %#v", err)
	}
	for _, w := range []string{plugins["v7"], "protocol version 7", "engine speaks version 1"} {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("%q lacks %q", err, w)
		}
	}

	sum := sha256.Sum256([]byte("another build"))
	_, err = pluginhost.Start(ctx, pluginhost.Config{Path: plugins["hostcall"], Host: host, Checksum: sum[:]})
	if err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Fatalf("checksum: %v", err)
	}

	script := filepath.Join(t.TempDir(), "happen-plugin-script")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho not a plugin\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = pluginhost.Start(ctx, pluginhost.Config{Path: script, Host: host})
	if err == nil || !strings.Contains(err.Error(), script) {
		t.Fatalf("not a plugin: %v", err)
	}

	_, err = pluginhost.Start(ctx, pluginhost.Config{Path: filepath.Join(t.TempDir(), "absent"), Host: host})
	if err == nil {
		t.Fatal("started a file that does not exist")
	}
}
