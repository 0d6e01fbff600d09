package sampler_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/happen-dev/happen/engine/sampler"
	"github.com/happen-dev/happen/internal/testutil"
	"github.com/nats-io/nats.go"
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

// BenchmarkSampleTimeLag is one tick at 10,000 consumers over 10 streams
// on an in-process server, with the cost of time lag in it: every node
// lagging (100 messages waiting each, none consumed) with the default read
// budget or with reads off, and none lagging (the streams purged). Each
// iteration is a new sampler, so no read stands from an earlier tick: the
// whole budget is spent every time, the worst case. reads/op counts the
// read requests the server saw.
func BenchmarkSampleTimeLag(b *testing.B) {
	srv := testutil.RunServer(b)
	nc := testutil.Connect(b, srv.ClientURL())
	js := testutil.JetStream(b, nc)
	ctx := context.Background()
	const streams, perStream = 10, 1000
	var wg sync.WaitGroup
	for i := range streams {
		name := fmt.Sprintf("S%02d", i)
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{fmt.Sprintf("s%02d.>", i)},
			Storage: jetstream.MemoryStorage, AllowDirect: true, MaxMsgs: 100_000}); err != nil {
			b.Fatal(err)
		}
		for range 100 {
			if _, err := js.PublishAsync(fmt.Sprintf("s%02d.x", i), []byte("x")); err != nil {
				b.Fatal(err)
			}
		}
		wg.Go(func() {
			for j := range perStream {
				if _, err := js.CreateOrUpdateConsumer(ctx, name, jetstream.ConsumerConfig{
					Durable: fmt.Sprintf("c%04d", j), AckPolicy: jetstream.AckExplicitPolicy, MemoryStorage: true,
				}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	<-js.PublishAsyncComplete()
	var reads atomic.Int64
	counter := testutil.Connect(b, srv.ClientURL())
	if _, err := counter.Subscribe("$JS.API.DIRECT.GET.>", func(*nats.Msg) { reads.Add(1) }); err != nil {
		b.Fatal(err)
	}
	counter.Flush()

	run := func(b *testing.B, cfg sampler.Config, lagging bool) {
		reads.Store(0)
		b.ReportAllocs()
		for b.Loop() {
			snap, err := sampler.New(nc, cfg).Sample(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if len(snap.Consumers) != streams*perStream || (snap.Consumers[0].NumPending > 0) != lagging {
				b.Fatalf("%d consumers, the first with %d pending", len(snap.Consumers), snap.Consumers[0].NumPending)
			}
		}
		counter.Flush()
		b.ReportMetric(float64(reads.Load())/float64(b.N), "reads/op")
	}
	b.Run("lagging=all/reads=100", func(b *testing.B) { run(b, sampler.Config{}, true) })
	b.Run("lagging=all/reads=off", func(b *testing.B) { run(b, sampler.Config{TimeLagReads: -1}, true) })
	for i := range streams {
		st, err := js.Stream(ctx, fmt.Sprintf("S%02d", i))
		if err == nil {
			err = st.Purge(ctx)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	b.Run("lagging=none/reads=100", func(b *testing.B) { run(b, sampler.Config{}, false) })
}
