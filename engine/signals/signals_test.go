package signals_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/happen-dev/happen/engine/flow"
	"github.com/happen-dev/happen/engine/signals"
	"github.com/happen-dev/happen/internal/testutil"
	"github.com/nats-io/nats.go/jetstream"
)

// On a real cluster: a consumer leader stepping down is an election, and a
// server shutting down is announced and read as down at once, its routes
// not counted as lost; once it is back it is up again.
func TestWatcherOnACluster(t *testing.T) {
	srvs := testutil.RunCluster(t, 3, testutil.WithSystemAccount)
	url := srvs[0].ClientURL()
	sys := testutil.Connect(t, url, testutil.As(testutil.SysUser))
	app := testutil.Connect(t, url, testutil.As(testutil.AppUser))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)

	w := signals.New(sys, app, signals.Config{})
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}

	js := testutil.JetStream(t, app)
	var stream jetstream.Stream
	testutil.Eventually(t, 20*time.Second, func() bool {
		var err error
		stream, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}, Replicas: 3})
		return err == nil
	}, "R3 stream created")
	cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "w1", AckPolicy: jetstream.AckExplicitPolicy, Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	key := flow.NodeKey{Stream: "ORDERS", Consumer: "w1"}
	elected := func() (flow.Election, bool) {
		sig := w.Read()
		i := slices.IndexFunc(sig.Elected, func(e flow.Election) bool { return e.Key == key })
		if i < 0 {
			return flow.Election{}, false
		}
		return sig.Elected[i], true
	}

	// Every server is heard, with its two peers routed.
	testutil.Eventually(t, 20*time.Second, func() bool {
		sig := w.Read()
		return sig.Servers && len(sig.Down) == 0 && sig.RoutesLost == 0
	}, "servers heard")

	info, err := cons.Info(ctx)
	if err != nil || info.Cluster == nil || info.Cluster.Leader == "" {
		t.Fatalf("consumer info: %+v, %v", info, err)
	}
	before, _ := elected()
	if _, err := app.Request("$JS.API.CONSUMER.LEADER.STEPDOWN.ORDERS.w1", nil, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, func() bool {
		el, ok := elected()
		return ok && el.At.After(before.At) && el.Leader != "" && el.Leader != info.Cluster.Leader
	}, "the step-down's election heard")

	// The engine's connection is to s0: shut down s2.
	srvs[2].Shutdown()
	testutil.Eventually(t, 20*time.Second, func() bool {
		sig := w.Read()
		return len(sig.Down) == 1 && sig.Down[0].Name == "s2" && sig.Down[0].Announced && sig.RoutesLost == 0
	}, "s2 announced down, no route counted lost")
}
