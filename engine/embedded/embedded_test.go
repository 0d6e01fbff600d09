package embedded

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/happen-dev/happen/internal/testutil"
	"github.com/nats-io/nats.go"
)

func TestStartServesJetStream(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := Start(ctx, Config{Listen: "127.0.0.1:0", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js := testutil.JetStream(t, nc)
	if _, err := js.AccountInfo(ctx); err != nil {
		t.Fatalf("JetStream not enabled: %v", err)
	}
}

// A port already taken is reported as such, not as a server that was slow
// to start.
func TestStartPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := Start(ctx, Config{Listen: l.Addr().String(), DataDir: t.TempDir()})
	if err == nil {
		s.Shutdown()
		t.Fatalf("started on %s, which is in use", l.Addr())
	}
	if !strings.Contains(err.Error(), l.Addr().String()) || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("error %q should name the address and say it is in use", err)
	}
}
