package sampler_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/happen-dev/happen/engine/sampler"
	"github.com/happen-dev/happen/internal/testutil"
	"github.com/nats-io/nats.go/jetstream"
)

// BenchmarkSample samples 1,000 consumers over 10 streams, each with some
// state to report, on an in-process server.
func BenchmarkSample(b *testing.B) {
	srv := testutil.RunServer(b)
	nc := testutil.Connect(b, srv.ClientURL())
	js := testutil.JetStream(b, nc)
	ctx := context.Background()
	const streams, perStream = 10, 100
	for i := range streams {
		name := fmt.Sprintf("S%02d", i)
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{fmt.Sprintf("s%02d.>", i)},
			Storage: jetstream.MemoryStorage}); err != nil {
			b.Fatal(err)
		}
		for range 10 {
			if _, err := js.Publish(ctx, fmt.Sprintf("s%02d.x", i), []byte("x")); err != nil {
				b.Fatal(err)
			}
		}
		for j := range perStream {
			if _, err := js.CreateOrUpdateConsumer(ctx, name, jetstream.ConsumerConfig{
				Durable:   fmt.Sprintf("c%03d", j),
				AckPolicy: jetstream.AckExplicitPolicy,
				Metadata:  map[string]string{"happen.node": fmt.Sprintf("n%02d-%03d", i, j), "happen.group": fmt.Sprintf("g%d", j%4)},
			}); err != nil {
				b.Fatal(err)
			}
		}
	}
	s := sampler.New(nc, sampler.Config{})
	if err := s.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer s.Stop()

	b.ReportAllocs()
	for b.Loop() {
		snap, err := s.Sample(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if len(snap.Consumers) != streams*perStream {
			b.Fatalf("%d consumers, want %d", len(snap.Consumers), streams*perStream)
		}
	}
}
