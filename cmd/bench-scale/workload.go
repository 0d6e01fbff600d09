package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// layout places consumer i on stream i mod streams, in group i mod groups,
// filtered to its own subject bench.<stream>.<i>: every message goes to
// exactly one consumer, so light traffic stays light at 10,000 consumers.
type layout struct {
	streams   []string
	consumers []consumerSpec
	perStream [][]int // consumer indexes of each stream
}

type consumerSpec struct {
	stream  int
	name    string
	group   string
	subject string
}

func newLayout(n, streams, groups int) layout {
	l := layout{streams: make([]string, streams), consumers: make([]consumerSpec, n), perStream: make([][]int, streams)}
	for s := range streams {
		l.streams[s] = fmt.Sprintf("BENCH%03d", s)
	}
	for i := range n {
		s := i % streams
		l.consumers[i] = consumerSpec{
			stream:  s,
			name:    fmt.Sprintf("c%06d", i),
			group:   fmt.Sprintf("g%d", i%groups),
			subject: fmt.Sprintf("bench.%d.%d", s, i),
		}
		l.perStream[s] = append(l.perStream[s], i)
	}
	return l
}

// create makes the streams and durable consumers, reporting progress.
func (l layout) create(ctx context.Context, cfg config, nc *nats.Conn) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream context: %w", err)
	}
	storage := jetstream.FileStorage
	if cfg.storage == "memory" {
		storage = jetstream.MemoryStorage
	}
	for s, name := range l.streams {
		sc := jetstream.StreamConfig{
			Name:     name,
			Subjects: []string{fmt.Sprintf("bench.%d.>", s)},
			Storage:  storage,
			Replicas: cfg.replicas,
			// Bounds the store over a long run; every message is acked
			// within milliseconds, long before it ages out.
			MaxAge: 10 * time.Minute,
		}
		if err := createStream(ctx, js, sc, s == 0); err != nil {
			return err
		}
	}
	cfg.progressf("created %d streams; creating %d consumers", len(l.streams), len(l.consumers))

	const workers = 16
	var (
		next, done atomic.Int64
		wg         sync.WaitGroup
		errOnce    sync.Once
		firstErr   error
	)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(l.consumers) || cctx.Err() != nil {
					return
				}
				c := l.consumers[i]
				_, err := js.CreateConsumer(cctx, l.streams[c.stream], jetstream.ConsumerConfig{
					Durable:       c.name,
					AckPolicy:     jetstream.AckExplicitPolicy,
					FilterSubject: c.subject,
					Metadata:      map[string]string{"happen.group": c.group},
				})
				if err != nil {
					errOnce.Do(func() {
						firstErr = fmt.Errorf("create consumer %s on %s: %w", c.name, l.streams[c.stream], err)
						cancel()
					})
					return
				}
				done.Add(1)
			}
		})
	}
	stopProgress := make(chan struct{})
	var pwg sync.WaitGroup
	pwg.Go(func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stopProgress:
				return
			case <-t.C:
				cfg.progressf("  %d/%d consumers", done.Load(), len(l.consumers))
			}
		}
	})
	wg.Wait()
	close(stopProgress)
	pwg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// createStream creates one stream. The first is retried for a while: a
// new cluster answers only once it has elected its meta leader.
func createStream(ctx context.Context, js jetstream.JetStream, sc jetstream.StreamConfig, retry bool) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := js.CreateStream(rctx, sc)
		cancel()
		if err == nil {
			return nil
		}
		if !retry || time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("create stream %s: %w", sc.Name, err)
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
}

// pullBatch is how many messages one pull request asks for; a consumer
// pulls again when they have come or the request expired.
const pullBatch = 64

// load is the traffic: one publisher at a steady rate per stream, and every
// consumer pulling and acking what it gets, multiplexed over a few
// connections.
type load struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	conns  []*nats.Conn

	pulls                         []pullState
	published, delivered, unusual atomic.Int64
}

type pullState struct {
	conn      *nats.Conn
	subject   string // $JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>
	reply     string
	remaining atomic.Int32
	retry     atomic.Bool // pull again on the next retry tick
}

// startLoad connects the load generator (connect(i, name) dials a
// connection spread over the servers) and starts its traffic.
func startLoad(ctx context.Context, cfg config, l layout, connect func(i int, name string) (*nats.Conn, error)) (*load, error) {
	ctx, cancel := context.WithCancel(ctx)
	ld := &load{cancel: cancel, pulls: make([]pullState, len(l.consumers))}
	fail := func(err error) (*load, error) {
		ld.stop()
		return nil, err
	}
	for k := range cfg.pullConns {
		nc, err := connect(k, fmt.Sprintf("bench-pull-%d", k))
		if err != nil {
			return fail(err)
		}
		ld.conns = append(ld.conns, nc)
		prefix := fmt.Sprintf("_BENCH.P%d.", k)
		sub, err := nc.Subscribe(prefix+"*", ld.onPullMsg)
		if err != nil {
			return fail(fmt.Errorf("subscribe %s*: %w", prefix, err))
		}
		_ = sub.SetPendingLimits(-1, -1) // a burst must not drop deliveries
		if err := nc.Flush(); err != nil {
			return fail(fmt.Errorf("flush puller %d: %w", k, err))
		}
	}
	for i, c := range l.consumers {
		k := i % cfg.pullConns
		p := &ld.pulls[i]
		p.conn = ld.conns[k]
		p.subject = "$JS.API.CONSUMER.MSG.NEXT." + l.streams[c.stream] + "." + c.name
		p.reply = fmt.Sprintf("_BENCH.P%d.%d", k, i)
		ld.pull(p)
	}
	ld.wg.Go(func() { ld.retryLoop(ctx) })
	if cfg.rate > 0 {
		pub, err := connect(cfg.pullConns, "bench-publish")
		if err != nil {
			return fail(err)
		}
		ld.conns = append(ld.conns, pub)
		ld.wg.Go(func() { ld.publish(ctx, pub, cfg, l) })
	}
	return ld, nil
}

// pull asks for the next batch. Expiries are spread over 20-40s so the
// re-pulls of thousands of consumers do not come in waves.
func (ld *load) pull(p *pullState) {
	p.remaining.Store(pullBatch)
	expires := 20*time.Second + rand.N(20*time.Second)
	body := `{"batch":` + strconv.Itoa(pullBatch) + `,"expires":` + strconv.FormatInt(int64(expires), 10) + `}`
	if err := p.conn.PublishRequest(p.subject, p.reply, []byte(body)); err != nil {
		p.retry.Store(true)
	}
}

// onPullMsg handles a delivery (ack it) or a pull status on a puller
// connection; the subject's last token is the consumer's index.
func (ld *load) onPullMsg(m *nats.Msg) {
	i, err := strconv.Atoi(m.Subject[strings.LastIndexByte(m.Subject, '.')+1:])
	if err != nil || i < 0 || i >= len(ld.pulls) {
		ld.unusual.Add(1)
		return
	}
	p := &ld.pulls[i]
	if status := m.Header.Get("Status"); status != "" && len(m.Data) == 0 {
		switch status {
		case "408": // the pull expired
			ld.pull(p)
		case "100": // heartbeat
		default: // 409 and the like: leadership change, limits; pull again shortly
			ld.unusual.Add(1)
			p.retry.Store(true)
		}
		return
	}
	if m.Reply != "" {
		_ = m.Respond(nil) // an empty reply to the ack subject is +ACK
	}
	ld.delivered.Add(1)
	if p.remaining.Add(-1) == 0 {
		ld.pull(p)
	}
}

func (ld *load) retryLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for i := range ld.pulls {
				if ld.pulls[i].retry.CompareAndSwap(true, false) {
					ld.pull(&ld.pulls[i])
				}
			}
		}
	}
}

// publish sends rate messages per second to each stream, round robin over
// the stream's consumers, in small steps so the rate is steady.
func (ld *load) publish(ctx context.Context, nc *nats.Conn, cfg config, l layout) {
	payload := make([]byte, cfg.payload)
	for i := range payload {
		payload[i] = 'x'
	}
	perSecond := cfg.rate * float64(len(l.streams))
	start := time.Now()
	var sent int64
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		due := int64(perSecond * time.Since(start).Seconds())
		for ; sent < due; sent++ {
			s := int(sent % int64(len(l.streams)))
			list := l.perStream[s]
			c := list[int(sent/int64(len(l.streams)))%len(list)]
			if err := nc.Publish(l.consumers[c].subject, payload); err != nil {
				ld.unusual.Add(1)
				continue
			}
			ld.published.Add(1)
		}
	}
}

// stop ends the traffic and closes the load generator's connections.
func (ld *load) stop() {
	ld.cancel()
	ld.wg.Wait()
	for _, nc := range ld.conns {
		nc.Close()
	}
}
