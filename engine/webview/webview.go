// Package webview serves happen's live web view: a hand-written page at /
// (HTML, CSS and JS embedded in the binary, no build step), a stream of
// per-tick summaries as server-sent events at /api/stream, and the node list
// one page at a time at /api/nodes.
//
// It is built for 10,000 nodes: a tick's summary carries aggregates (counts
// by state per group, totals, incidents, new events), never every node, and
// the page fetches only the rows it shows. The work of a tick (the node
// list, its sort orders, the summary) is done once per tick however many
// browsers watch.
package webview

import (
	"embed"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/happen-dev/happen/engine"
	"github.com/happen-dev/happen/engine/flow"
	"github.com/happen-dev/happen/sdk/events"
)

//go:embed assets
var assets embed.FS

// Source is what the view reads from the engine; *engine.Engine is one.
type Source interface {
	Health() (bool, string)
	Status() *engine.Status
	// Ticks returns the count of completed ticks and a channel closed when
	// the next one completes.
	Ticks() (uint64, <-chan struct{})
	Interval() time.Duration
	LagHistory(keys []flow.NodeKey) engine.LagHistory
	RecentEvents(f engine.EventFilter) []events.Envelope
}

// Options tune the view; the zero value is what the engine uses.
type Options struct {
	// Heartbeat is how often an idle stream sends a comment, so proxies
	// keep it open; default 15s.
	Heartbeat time.Duration
	// WriteTimeout bounds each write to a stream; a browser that stops
	// reading is dropped after it. Default 10s.
	WriteTimeout time.Duration
	Logger       *slog.Logger
}

// Paths the view serves, for the startup log.
const Endpoints = "/ /api/stream /api/nodes"

// Register adds the view's routes to mux.
func Register(mux *http.ServeMux, src Source, opts Options) {
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = 15 * time.Second
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	v := &view{src: src, opts: opts}
	static, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.FileServerFS(static)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeFileFS(w, r, static, "index.html")
	})
	mux.Handle("GET /assets/", http.StripPrefix("/assets/", assetHandler(files)))
	mux.HandleFunc("GET /api/nodes", v.serveNodes)
	mux.HandleFunc("GET /api/stream", v.serveStream)
}

// assetHandler serves the asset files, no folder listing, and makes
// browsers revalidate them, so a new binary's page is never mixed with an
// old script.
func assetHandler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "" || strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		h.ServeHTTP(w, r)
	})
}

// view is the handlers' shared state: the source and the snapshot of the
// last tick.
type view struct {
	src   Source
	opts  Options
	cache snapCache
}
