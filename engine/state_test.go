package engine_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/happen-dev/happen/engine"
	"github.com/happen-dev/happen/engine/hostapi"
	"github.com/happen-dev/happen/internal/testutil"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// A monitoring user that may read JetStream but not create the engine's
// state bucket: the engine keeps sampling, stays healthy, and tries the
// bucket again with backoff rather than on every tick.
func TestReadOnlyAccountBacksOffState(t *testing.T) {
	t.Parallel()
	opts := testutil.ServerOptions(t)
	opts.Users = []*server.User{{Username: "ro", Password: "r", Permissions: &server.Permissions{
		Publish: &server.SubjectPermission{Allow: []string{
			"$JS.API.INFO", "$JS.API.STREAM.LIST", "$JS.API.CONSUMER.LIST.>", "happen.events.>",
		}},
		Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>", "$JS.EVENT.>"}},
	}}}
	srv := testutil.StartServer(t, opts)
	var denied atomic.Int64
	nc := testutil.Connect(t, srv.ClientURL(), nats.UserInfo("ro", "r"),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				denied.Add(1)
			}
		}))
	e := engine.New(nc, defaultSet(t), engine.Config{Interval: time.Second})
	ctx := context.Background()
	const ticks = 8
	for i := range ticks {
		e.Tick(ctx)
		if ok, why := e.Health(); !ok {
			t.Fatalf("tick %d: unhealthy (%s) on an account that may only read", i, why)
		}
	}
	// At most a couple of attempts in 8 back-to-back ticks; every tick
	// tried before, each denied.
	if n := denied.Load(); n == 0 || n > 3 {
		t.Fatalf("%d permission violations in %d ticks, want 1 to 3 (one try, then backoff)", n, ticks)
	}
}

// The host API keeps plugins off the engine's state bucket by default; it
// must name the same bucket the engine uses.
func TestHostAPIGuardsTheStateBucket(t *testing.T) {
	if hostapi.DefaultStateBucket != engine.StateBucket {
		t.Fatalf("hostapi guards %q, the engine keeps its state in %q", hostapi.DefaultStateBucket, engine.StateBucket)
	}
}
