// Package testutil runs real NATS JetStream servers in-process for tests and
// offers bounded polling, so no test waits with a bare sleep.
package testutil

import (
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ServerOptions returns options for a JetStream server on a random loopback
// port with its store in a fresh temp dir.
func ServerOptions(t testing.TB) *server.Options {
	t.Helper()
	return &server.Options{
		Host:      "127.0.0.1",
		Port:      -1,
		NoLog:     true,
		NoSigs:    true,
		JetStream: true,
		StoreDir:  t.TempDir(),
		// Small limits keep many servers in one test process cheap.
		JetStreamMaxMemory: 256 << 20,
		JetStreamMaxStore:  1 << 30,
	}
}

// RunServer starts a JetStream server and shuts it down when the test ends.
// mods adjust the options before start.
func RunServer(t testing.TB, mods ...func(*server.Options)) *server.Server {
	t.Helper()
	opts := ServerOptions(t)
	for _, m := range mods {
		m(opts)
	}
	return StartServer(t, opts)
}

// StartServer starts a server with exactly opts and shuts it down when the
// test ends.
func StartServer(t testing.TB, opts *server.Options) *server.Server {
	t.Helper()
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("new nats server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		t.Fatalf("nats server on %s:%d not ready", opts.Host, opts.Port)
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// RestartServer stops s, started from opts, and starts a new server on the
// same address and store, the way an operator restarts nats-server.
func RestartServer(t testing.TB, s *server.Server, opts *server.Options) *server.Server {
	t.Helper()
	opts = opts.Clone()
	opts.Port = s.Addr().(*net.TCPAddr).Port
	s.Shutdown()
	s.WaitForShutdown()
	return StartServer(t, opts)
}

// Connect opens a client connection closed when the test ends.
func Connect(t testing.TB, url string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// JetStream returns a JetStream context on nc, failing the test if it
// cannot be made.
func JetStream(t testing.TB, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream context: %v", err)
	}
	return js
}

// Eventually polls cond every 25ms until it holds or timeout passes, then
// fails the test with the message.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, msgAndArgs ...any) {
	t.Helper()
	if err := poll(timeout, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	}); err != nil {
		t.Fatalf("condition not met within %v%s", timeout, describe(msgAndArgs))
	}
}

// CheckFor polls fn until it returns nil or total passes, then fails the
// test with fn's last error.
func CheckFor(t testing.TB, total time.Duration, fn func() error) {
	t.Helper()
	if err := poll(total, fn); err != nil {
		t.Fatalf("not true within %v: %v", total, err)
	}
}

var errNotYet = fmt.Errorf("not yet")

func poll(total time.Duration, fn func() error) error {
	deadline := time.Now().Add(total)
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		<-tick.C
	}
}

func describe(msgAndArgs []any) string {
	if len(msgAndArgs) == 0 {
		return ""
	}
	if f, ok := msgAndArgs[0].(string); ok {
		return ": " + fmt.Sprintf(f, msgAndArgs[1:]...)
	}
	return ": " + fmt.Sprint(msgAndArgs...)
}

// ClientURL is the nats:// URL of s.
func ClientURL(s *server.Server) string { return s.ClientURL() }

// FreePort returns a loopback port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	_, p, _ := net.SplitHostPort(l.Addr().String())
	n, _ := strconv.Atoi(p)
	return n
}
