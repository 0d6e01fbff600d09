package httpapi_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/happen-dev/happen/engine/httpapi"
	"github.com/happen-dev/happen/engine/webview/webviewtest"
	"github.com/happen-dev/happen/internal/testutil"
	"github.com/prometheus/client_golang/prometheus"
)

// The web view in a real browser: headless Chromium driven with chromedp.
// Every wait is a bounded poll of the DOM, every browser call has a
// timeout, and the browser itself dies after a few minutes whatever
// happens, so a hung browser fails the test instead of hanging it.

const noChromium = "chromium not found; `make test` installs Debian's chromium with apt-get (scripts/ensure-chromium.sh)"

func findChromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// browser is one headless Chromium tab, and every JS error it reported.
type browser struct {
	t   *testing.T
	ctx context.Context

	mu   sync.Mutex
	errs []string
}

func newBrowser(t *testing.T, width, height int) *browser {
	t.Helper()
	path := findChromium()
	if path == "" {
		t.Skip(noChromium)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // CI runs as root
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.WindowSize(width, height),
	)
	life, cancelLife := context.WithTimeout(context.Background(), 4*time.Minute)
	actx, cancelAlloc := chromedp.NewExecAllocator(life, opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
		cancelLife()
	})
	b := &browser{t: t, ctx: ctx}
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start %s: %v", path, err)
	}
	if err := chromedp.Listen(ctx, func(ev any) {
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			b.addErr("exception: " + (&chromedp.ExceptionError{ExceptionDetails: e.ExceptionDetails}).Error())
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeAssert {
				var args []string
				for _, a := range e.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				b.addErr("console.error: " + strings.Join(args, " "))
			}
		}
	}); err != nil {
		t.Fatalf("listen to the browser: %v", err)
	}
	return b
}

func (b *browser) addErr(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.errs = append(b.errs, s)
}

// noErrors fails the test if the page threw or logged an error.
func (b *browser) noErrors() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.errs) > 0 {
		b.t.Fatalf("the page reported %d JS error(s):\n%s", len(b.errs), strings.Join(b.errs, "\n"))
	}
}

// do runs actions within d.
func (b *browser) do(d time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, d)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("browser: %v", err)
	}
}

// eval evaluates a JS expression within 10s.
func eval[T any](b *browser, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr))
}

func mustEval[T any](b *browser, expr string) T {
	b.t.Helper()
	v, err := eval[T](b, expr)
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitFor polls the JS expression until it is true, at most d.
func (b *browser) waitFor(what string, d time.Duration, expr string) {
	b.t.Helper()
	testutil.CheckFor(b.t, d, func() error {
		ok, err := eval[bool](b, expr)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if !ok {
			rows, _ := eval[string](b, `[...document.querySelectorAll('#rows tr')].slice(0, 8).map(r => r.textContent.replace(/\s+/g, ' ')).join(' | ')`)
			return fmt.Errorf("%s; first rows: %s", what, rows)
		}
		return nil
	})
}

// screenshot writes a full-page PNG to path (relative to the module root).
func (b *browser) screenshot(path string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot: %v", err)
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(moduleRoot(b.t), path)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot written to %s", path)
}

func moduleRoot(t *testing.T) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			t.Fatalf("no go.mod above %s", dir)
		}
	}
}

// rowsJS is the node rows in the DOM, as "id@group" sorted.
const rowsJS = `[...document.querySelectorAll('#rows tr.node')].map(r => r.dataset.id + '@' + r.children[1].textContent).sort().join(' ')`

// A real engine watching real workers: the page shows the nodes in their
// groups, and when a worker is killed it shows the node down with its
// pattern, the incident and the node.down event, all without a reload.
//
// HAPPEN_SCREENSHOT=docs/webview.png also writes the page as screenshots:
// that path in the dark theme, and docs/webview-light.png in the light one
// (and TestBrowser10kNodes docs/webview-10k.png).
func TestBrowserLiveView(t *testing.T) {
	b := newBrowser(t, 1440, 900)
	r := startRig(t, 250*time.Millisecond)

	b.do(30*time.Second, chromedp.Navigate(r.base+"/"))
	mustEval[chromedp.Void](b, `window.happenTestMarker = 'same page'`)
	b.waitFor("the five nodes in their groups", 20*time.Second,
		rowsJS+` === 'eu-1@eu eu-2@eu eu-3@eu us-1@us us-2@us'`)
	b.waitFor("the groups eu and us", 5*time.Second,
		`[...document.querySelectorAll('#groups .gname')].map(e => e.textContent).sort().join(',') === 'All groups,eu,us'`)
	b.waitFor("health and rules", 5*time.Second,
		`document.getElementById('health').textContent === 'healthy' && document.querySelectorAll('#rules tbody tr').length === `+fmt.Sprint(len(r.set.Rules)))

	r.judged()
	r.workers["eu-2"].Kill()
	b.waitFor("eu-2 down with pattern node-failure", 30*time.Second,
		`(() => { const r = document.querySelector('#rows tr.node[data-id="eu-2"]');
			return !!r && r.classList.contains('st-down') && r.textContent.includes('down · node-failure'); })()`)
	b.waitFor("node.down for eu-2 in recent events", 10*time.Second,
		`[...document.querySelectorAll('#events li[data-type="node.down"]')].some(li => li.textContent.includes('eu-2') && li.textContent.includes('node-failure'))`)
	b.waitFor("the incident", 10*time.Second,
		`(() => { const t = document.querySelector('#incidents tbody').textContent; return t.includes('node-failure') && t.includes('eu-2'); })()`)
	b.waitFor("eu-2 first: trouble first", 5*time.Second,
		`document.querySelector('#rows tr.node').dataset.id === 'eu-2'`)
	b.waitFor("the eu group shows one down", 5*time.Second,
		`[...document.querySelectorAll('#groups button')].some(b => b.textContent.startsWith('eu') && b.textContent.includes('1 down'))`)
	if got := mustEval[string](b, `window.happenTestMarker || 'reloaded'`); got != "same page" {
		t.Fatalf("the page was reloaded (%q): updates must come live", got)
	}

	// A reload of the rules shows as the last reload result, live too.
	r.eng.Reload(r.set)
	b.waitFor("the reload applied", 10*time.Second,
		`document.getElementById('reload').textContent.includes('applied') && document.getElementById('reload').textContent.includes('`+fmt.Sprint(len(r.set.Rules))+` rules')`)

	// Choosing a group shows its nodes only.
	b.do(10*time.Second, chromedp.Click(chromedp.CSS(`#groups button[data-key="g:us"]`)))
	b.waitFor("the us group only", 10*time.Second, rowsJS+` === 'us-1@us us-2@us'`)
	b.do(10*time.Second, chromedp.Click(chromedp.CSS(`#groups button[data-key="all"]`)))
	b.waitFor("every group again", 10*time.Second, rowsJS+` === 'eu-1@eu eu-2@eu eu-3@eu us-1@us us-2@us'`)

	shot := os.Getenv("HAPPEN_SCREENSHOT")
	if shot != "" {
		// Let the down node's work pile up for a while, so its sparkline
		// shows the climb.
		b.waitFor("eu-2's work piling up", 30*time.Second,
			`parseInt(document.querySelector('#rows tr.node[data-id="eu-2"]').children[3].textContent.replace(/,/g, '')) >= 150`)
		b.screenshot(strings.TrimSuffix(shot, ".png") + "-light.png")
	}
	// The theme toggle switches and is remembered.
	before := mustEval[string](b, `document.documentElement.dataset.theme || ''`)
	b.do(10*time.Second, chromedp.Click(chromedp.ID("theme")))
	after := mustEval[string](b, `document.documentElement.dataset.theme + '/' + localStorage.getItem('happen-theme')`)
	if before == "dark" || after != "dark/dark" {
		t.Fatalf("theme %q, then %q after the toggle; want dark, remembered", before, after)
	}
	if shot != "" {
		b.screenshot(shot)
	}
	b.noErrors()
}

// 10,000 nodes in 50 groups from a synthetic source: the page stays small
// (a few dozen rows in the DOM), scrolls to the last node, finds a node by
// its id, and reports no JS error; one tick's message stays small too.
func TestBrowser10kNodes(t *testing.T) {
	b := newBrowser(t, 1440, 900)
	src := webviewtest.New(10_000, 50, 500*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { src.Run(ctx) })
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	addr, done, err := httpapi.Serve(ctx, "127.0.0.1:0", httpapi.Handler(src, prometheus.NewRegistry()), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		if err := <-done; err != nil {
			t.Errorf("http server: %v", err)
		}
	})
	base := "http://" + addr.String()

	if n := firstMessageSize(t, base); n > 64<<10 {
		t.Fatalf("one tick's message is %d bytes at 10,000 nodes, want under 64 KiB", n)
	}

	b.do(30*time.Second, chromedp.Navigate(base+"/"))
	b.waitFor("the node count", 20*time.Second, `document.getElementById('node-count').textContent === '10,000 nodes'`)
	b.waitFor("a down node first", 10*time.Second,
		`(() => { const r = document.querySelector('#rows tr.node'); return !!r && r.dataset.id === 'node-09000' && r.classList.contains('st-down'); })()`)
	small := `document.querySelectorAll('#rows tr.node').length > 0 && document.querySelectorAll('#rows tr.node').length < 300 && document.querySelectorAll('tr').length < 400`
	b.waitFor("few rows in the DOM", 5*time.Second, small)
	b.waitFor("all 50 groups listed", 5*time.Second, `document.querySelectorAll('#groups button').length === 51`)

	// By id, then scrolled to the very end: the last nodes are there.
	b.do(10*time.Second, chromedp.SetValue(chromedp.ID("sort"), "id"))
	mustEval[chromedp.Void](b, `document.getElementById('sort').dispatchEvent(new Event('change'))`)
	b.waitFor("node-00000 first by id", 10*time.Second, `document.querySelector('#rows tr.node').dataset.id === 'node-00000'`)
	mustEval[chromedp.Void](b, `(s => { s.scrollTop = s.scrollHeight; })(document.getElementById('scroller'))`)
	b.waitFor("the last node after scrolling to the end", 10*time.Second,
		`!!document.querySelector('#rows tr.node[data-id="node-09999"]') && (`+small+`)`)
	if shot := os.Getenv("HAPPEN_SCREENSHOT"); shot != "" {
		b.screenshot(strings.TrimSuffix(shot, ".png") + "-10k.png")
	}
	visible := mustEval[bool](b, `(() => {
		const s = document.getElementById('scroller').getBoundingClientRect();
		const r = document.querySelector('#rows tr.node[data-id="node-09999"]').getBoundingClientRect();
		return r.top >= s.top && r.bottom <= s.bottom + 1; })()`)
	if !visible {
		t.Fatal("node-09999 is in the DOM but not in view at the end of the list")
	}

	// The filter box finds one node among 10,000.
	b.do(10*time.Second, chromedp.SendKeys(chromedp.ID("q"), "node-04321"))
	b.waitFor("the filter finds node-04321", 10*time.Second,
		`(() => { const r = document.querySelectorAll('#rows tr.node'); return r.length === 1 && r[0].dataset.id === 'node-04321'; })()`)
	b.waitFor("one node counted", 5*time.Second, `document.getElementById('node-count').textContent === '1 node'`)

	// A group of 200 from the selector.
	mustEval[chromedp.Void](b, `(q => { q.value = ''; q.dispatchEvent(new Event('input')); })(document.getElementById('q'))`)
	b.do(10*time.Second, chromedp.Click(chromedp.CSS(`#groups button[data-key="g:zone-07"]`)))
	b.waitFor("zone-07's 200 nodes", 10*time.Second,
		`document.getElementById('node-count').textContent === '200 nodes' && [...document.querySelectorAll('#rows tr.node')].every(r => r.children[1].textContent === 'zone-07')`)
	b.noErrors()
}

// firstMessageSize is the size of the first message of /api/stream.
func firstMessageSize(t *testing.T, base string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/stream", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("read stream: %v", err)
		}
		if strings.HasPrefix(line, "data: ") {
			return len(line)
		}
	}
}
