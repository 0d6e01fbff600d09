// Package httpapi serves the engine's HTTP endpoints: /healthz for
// orchestrators, /metrics for Prometheus, /api/status as JSON and, when
// the source can feed it, the live web view at / (package webview).
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/happen-dev/happen/engine"
	"github.com/happen-dev/happen/engine/webview"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// roleSource is an engine that may be one of several: /healthz then says
// which part it plays.
type roleSource interface {
	Role() engine.RoleStatus
}

// StatusSource is the part of the engine the endpoints read.
type StatusSource interface {
	Health() (bool, string)
	Status() *engine.Status
}

// Handler returns the mux for src with metrics from g. A src that is also
// a webview.Source (the engine is) serves the web view as well.
func Handler(src StatusSource, g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	if ws, ok := src.(webview.Source); ok {
		webview.Register(mux, ws, webview.Options{})
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		ok, why := src.Health()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "unhealthy: %s\n", why)
			return
		}
		var role engine.RoleStatus
		if rs, ok := src.(roleSource); ok {
			role = rs.Role()
		}
		if role.Leader != "" || len(role.Members) > 0 {
			// With several engines, say which this one is, so a probe's
			// log or a curl tells a healthy standby from the leader.
			switch {
			case role.Leader == "":
				fmt.Fprintf(w, "ok %s", role.Role)
			case role.Role == engine.RoleLeader: // the leader is this engine
				fmt.Fprintf(w, "ok leader %s, lease renewed %.1fs ago", role.Leader, role.LeaseAgeSeconds)
			default:
				fmt.Fprintf(w, "ok %s · leader %s, lease renewed %.1fs ago", role.Role, role.Leader, role.LeaseAgeSeconds)
			}
			if len(role.Members) > 0 {
				fmt.Fprintf(w, " · %d engines share the streams, %d sampled here", len(role.Members), role.OwnedStreams)
			}
			fmt.Fprintln(w)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /api/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		if r.URL.Query().Has("pretty") {
			enc.SetIndent("", "  ")
		}
		enc.Encode(src.Status())
	})
	return mux
}

// Serve listens on addr and serves h until ctx ends. The listener is opened
// before Serve returns its first error, so a port in use fails at start.
func Serve(ctx context.Context, addr string, h http.Handler, log *slog.Logger) (net.Addr, <-chan error, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("http listen on %s: %w", addr, err)
	}
	// Requests live within ctx, so the web view's streams end at shutdown
	// instead of holding it up.
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	done := make(chan error, 1)
	go func() {
		err := srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		done <- err
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			log.Warn("http shutdown", "error", err)
		}
	}()
	log.Info("http listening", "addr", ln.Addr().String(), "endpoints", "/healthz /metrics /api/status "+webview.Endpoints)
	return ln.Addr(), done, nil
}
