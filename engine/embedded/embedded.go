// Package embedded runs the NATS server with JetStream inside the happen
// process, so `happen engine` works on a bare machine with no NATS of its own.
package embedded

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Config says where the embedded server listens and stores.
type Config struct {
	Listen  string // host:port; port 0 picks a free one
	DataDir string // JetStream storage goes in DataDir/jetstream
	Logger  *slog.Logger
}

// Start runs a JetStream server and waits until it accepts clients. The
// caller shuts it down with Shutdown.
func Start(ctx context.Context, cfg Config) (*server.Server, error) {
	host, portStr, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS listen address %q: %w", cfg.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("embedded NATS listen address %q: bad port %q", cfg.Listen, portStr)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	if host == "" {
		host = "0.0.0.0"
	}
	opts := &server.Options{
		ServerName: "happen-embedded",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   filepath.Join(cfg.DataDir, "jetstream"),
		NoSigs:     true,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS on %s: %w", cfg.Listen, err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// The server reports a listener it cannot open (a port in use) only
	// through its logger, as fatal; it is caught here to fail at once.
	fatal := make(chan string, 1)
	s.SetLoggerV2(&logger{l: log.With("component", "nats-server"), fatal: fatal}, false, false, false)
	go s.Start()
	deadline := time.Now().Add(30 * time.Second)
	if d, ok := ctx.Deadline(); ok {
		deadline = d
	}
	for !s.ReadyForConnections(100 * time.Millisecond) {
		select {
		case msg := <-fatal:
			s.Shutdown()
			return nil, fmt.Errorf("embedded NATS on %s: %s", cfg.Listen, msg)
		case <-ctx.Done():
			s.Shutdown()
			return nil, fmt.Errorf("embedded NATS on %s: %w", cfg.Listen, ctx.Err())
		default:
		}
		if time.Now().After(deadline) {
			s.Shutdown()
			return nil, fmt.Errorf("embedded NATS on %s did not start in time (is %s writable?)", cfg.Listen, opts.StoreDir)
		}
	}
	return s, nil
}

// logger sends the server's log lines to slog. Notices are debug-level: the
// server is an implementation detail of happen here.
type logger struct {
	l     *slog.Logger
	fatal chan<- string
}

func (g *logger) Noticef(f string, v ...any) { g.l.Debug(fmt.Sprintf(f, v...)) }
func (g *logger) Warnf(f string, v ...any)   { g.l.Warn(fmt.Sprintf(f, v...)) }
func (g *logger) Fatalf(f string, v ...any) {
	msg := fmt.Sprintf(f, v...)
	g.l.Error(msg)
	select {
	case g.fatal <- msg:
	default:
	}
}
func (g *logger) Errorf(f string, v ...any) { g.l.Error(fmt.Sprintf(f, v...)) }
func (g *logger) Debugf(f string, v ...any) { g.l.Debug(fmt.Sprintf(f, v...)) }
func (g *logger) Tracef(f string, v ...any) {}
