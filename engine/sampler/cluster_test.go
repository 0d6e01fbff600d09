package sampler_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/happen-dev/happen/engine/sampler"
	"github.com/happen-dev/happen/internal/testutil"
	"github.com/nats-io/nats.go/jetstream"
)

func TestCluster(t *testing.T) {
	servers := testutil.RunCluster(t, 3)
	nc := testutil.Connect(t, servers[0].ClientURL())
	js := testutil.JetStream(t, nc)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	testutil.CheckFor(t, 30*time.Second, func() error {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := js.CreateStream(cctx, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}, Replicas: 3, Storage: jetstream.MemoryStorage})
		return err
	})
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "SOLO", Subjects: []string{"solo.>"}, Replicas: 1,
		Storage: jetstream.MemoryStorage, Placement: &jetstream.Placement{Tags: []string{"node:s2"}}}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := js.Publish(ctx, "orders.new", []byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, err := js.CreateOrUpdateConsumer(ctx, "ORDERS", jetstream.ConsumerConfig{Durable: fmt.Sprintf("w%d", i),
			Metadata: map[string]string{"happen.node": fmt.Sprintf("orders-%d", i), "happen.group": fmt.Sprintf("zone-%d", i)}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, "SOLO", jetstream.ConsumerConfig{Durable: "solo"}); err != nil {
		t.Fatal(err)
	}

	// A clustered server gathers infos from the stream and consumer leaders
	// for up to 4s itself.
	s := sampler.New(nc, sampler.Config{Timeout: 10 * time.Second})
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Stop()

	testutil.CheckFor(t, 30*time.Second, func() error {
		snap, err := s.Sample(ctx)
		if err != nil {
			return err
		}
		if got := keys(snap); !slices.Equal(got, []string{"ORDERS/w0", "ORDERS/w1", "ORDERS/w2", "SOLO/solo"}) {
			return fmt.Errorf("consumers %v", got)
		}
		for i := range 3 {
			c, _ := find(snap, "ORDERS", fmt.Sprintf("w%d", i))
			if c.NodeID != fmt.Sprintf("orders-%d", i) || c.Group != fmt.Sprintf("zone-%d", i) || c.NumPending != 3 {
				return fmt.Errorf("w%d = %+v", i, c)
			}
			if !slices.Contains([]string{"s0", "s1", "s2"}, c.Leader) {
				return fmt.Errorf("w%d leader %q, want one of the servers", i, c.Leader)
			}
		}
		// The only replica leads.
		if c, _ := find(snap, "SOLO", "solo"); c.Leader != "s2" {
			return fmt.Errorf("solo leader %q, want s2", c.Leader)
		}
		if len(snap.Streams) != 2 || len(snap.UnobservedStreams) != 0 {
			return fmt.Errorf("streams %+v, unobserved %v", snap.Streams, snap.UnobservedStreams)
		}
		return nil
	})

	// A leader that steps down hands the consumer to another server, and
	// the sample says so.
	snap, err := s.Sample(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w0, _ := find(snap, "ORDERS", "w0")
	testutil.CheckFor(t, 30*time.Second, func() error {
		msg, err := nc.RequestWithContext(ctx, "$JS.API.CONSUMER.LEADER.STEPDOWN.ORDERS.w0", nil)
		if err != nil {
			return err
		}
		var resp struct {
			Success bool                `json:"success"`
			Error   *jetstream.APIError `json:"error"`
		}
		if err := json.Unmarshal(msg.Data, &resp); err != nil {
			return err
		}
		if !resp.Success {
			return fmt.Errorf("step down w0: %v", resp.Error)
		}
		return nil
	})
	testutil.CheckFor(t, 30*time.Second, func() error {
		snap, err := s.Sample(ctx)
		if err != nil {
			return err
		}
		if c, _ := find(snap, "ORDERS", "w0"); c.Leader == "" || c.Leader == w0.Leader {
			return fmt.Errorf("w0 leader %q after %q stepped down", c.Leader, w0.Leader)
		}
		return nil
	})

	// The only server holding SOLO goes down: SOLO is unobserved, not gone,
	// and the replicated stream is still read.
	servers[2].Shutdown()
	servers[2].WaitForShutdown()
	testutil.CheckFor(t, 60*time.Second, func() error {
		snap, err := s.Sample(ctx)
		if err != nil {
			return err
		}
		if !slices.Equal(snap.UnobservedStreams, []string{"SOLO"}) {
			return fmt.Errorf("unobserved streams %v, want [SOLO]", snap.UnobservedStreams)
		}
		if got := keys(snap); !slices.Equal(got, []string{"ORDERS/w0", "ORDERS/w1", "ORDERS/w2"}) {
			return fmt.Errorf("consumers %v", got)
		}
		if _, ok := findStream(snap, "SOLO"); ok {
			return fmt.Errorf("offline SOLO sampled as a stream: %+v", snap.Streams)
		}
		return nil
	})
}
