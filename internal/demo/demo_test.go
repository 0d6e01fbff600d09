package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/happen-dev/happen/engine"
	"github.com/happen-dev/happen/sdk/events"
)

// lockedBuffer is the demo's output, read by the test while it runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// The whole demo, as `happen demo --keep` runs it: every fault detected
// with the expected pattern and nothing else, every one recovered, the
// summary printed, and the engine's HTTP endpoints answering at the URL it
// printed while it keeps running. It is the one full run of the demo in
// the test suite.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("the full demo takes a minute or two")
	}
	out := &lockedBuffer{}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	type ran struct {
		res *Result
		err error
	}
	done := make(chan ran, 1)
	start := time.Now()
	go func() {
		res, err := Run(ctx, Config{Keep: true, Out: out})
		done <- ran{res, err}
	}()

	// The summary is printed before --keep waits; the endpoints answer.
	var summaryAt time.Duration
	for !strings.Contains(out.String(), "everything keeps running") {
		select {
		case r := <-done:
			t.Fatalf("demo ended before keeping on: %v\n%s", r.err, out.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	summaryAt = time.Since(start)
	webURL := lineValue(t, out.String(), "web view: ")
	if !strings.HasPrefix(webURL, "http://127.0.0.1:") || !strings.HasSuffix(webURL, "/") {
		t.Fatalf("web view URL %q", webURL)
	}
	if code, body := get(t, webURL+"healthz"); code != http.StatusOK {
		t.Errorf("GET /healthz while kept running: %d %s", code, body)
	}
	code, body := get(t, webURL+"api/status")
	var st engine.Status
	if err := json.Unmarshal([]byte(body), &st); code != http.StatusOK || err != nil {
		t.Fatalf("GET /api/status: %d %v: %.300s", code, err, body)
	}
	if len(st.Nodes) != 6 || len(st.Groups) != 2 {
		t.Errorf("/api/status has %d nodes in %d groups, want 6 in 2", len(st.Nodes), len(st.Groups))
	}

	cancel() // Ctrl-C
	var r ran
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("demo did not stop within 30s of its context ending")
	}
	t.Logf("demo output:\n%s", out.String())
	if r.err != nil {
		t.Fatalf("demo: %v", r.err)
	}
	res := r.res
	t.Logf("summary after %.1fs (warm-up %.1fs)", summaryAt.Seconds(), res.WarmUp.Seconds())
	for _, p := range res.Phases {
		t.Logf("%-12s detected %v in %.1fs, recovered %v in %.1fs, settled %v, unexpected %v",
			p.Fault, p.Detected, p.TimeToDetect.Seconds(), p.Recovered, p.TimeToRecover.Seconds(), p.Settled, p.Unexpected)
	}
	if !res.OK() {
		t.Errorf("not every fault was detected as expected and recovered")
	}
	want := []string{"node failure", "partition", "bottleneck", "overload"}
	if len(res.Phases) != len(want) {
		t.Fatalf("%d phases, want %d", len(res.Phases), len(want))
	}
	for i, p := range res.Phases {
		if p.Fault != want[i] || !p.Detected || !p.Recovered || !p.Settled || len(p.Unexpected) > 0 {
			t.Errorf("phase %d: %+v", i, p)
		}
		if p.TimeToDetect <= 0 || p.TimeToDetect > detectTimeout {
			t.Errorf("%s: time to detect %v", p.Fault, p.TimeToDetect)
		}
	}
	// The run itself stays within the three minutes it promises.
	if summaryAt > 3*time.Minute {
		t.Errorf("summary after %v, want under 3m", summaryAt.Round(time.Second))
	}
	text := out.String()
	for _, s := range append([]string{"FAULT INJECTED", "TIME TO DETECT", "embedded NATS listening on nats://",
		"→ node failure: stopping orders-eu-2's worker; its work keeps arriving"}, events.TypeSystemDown, events.TypeNodeUp) {
		if !strings.Contains(text, s) {
			t.Errorf("output lacks %q", s)
		}
	}
	if strings.Contains(text, "\x1b[") {
		t.Error("colour codes in output that is not a terminal")
	}
}

// lineValue is the rest of the first line of out that begins with prefix.
func lineValue(t *testing.T, out, prefix string) string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, prefix); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no line %q in:\n%s", prefix, out)
	return ""
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
