package summary

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// CollectorConfig tunes a Collector.
type CollectorConfig struct {
	// Self is this engine's member name; its own parts are skipped.
	Self string
	// Stale is how long a member's latest Part counts after it arrived;
	// the Collector also reads back this far when it starts.
	Stale  time.Duration
	Logger *slog.Logger
}

// errLogEvery spaces the log lines about one member's bad chunks.
const errLogEvery = time.Minute

// Collector reads every other member's parts from the stream and keeps the
// latest complete one of each. Latest, Errors and Stop may be called from
// any goroutine while it runs.
type Collector struct {
	js       jetstream.JetStream
	cfg      CollectorConfig
	log      *slog.Logger
	selfTok  string
	errCount atomic.Uint64

	mu      sync.Mutex
	asm     *Assembler
	latest  map[string]received
	logged  map[string]errLog // by subject token
	cc      jetstream.ConsumeContext
	stopped bool
	// intern holds the strings of chunks decoded before (used only by the
	// consumer's callback, which runs one message at a time), and
	// internFor how many strings each member's latest part names.
	intern    map[string]string
	internFor map[string]int
}

type received struct {
	part *Part
	at   time.Time // local receive time of its last chunk
}

type errLog struct {
	at         time.Time
	suppressed int
}

// NewCollector returns a Collector; Start runs it.
func NewCollector(js jetstream.JetStream, cfg CollectorConfig) *Collector {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Collector{
		js:        js,
		cfg:       cfg,
		log:       cfg.Logger,
		selfTok:   Token(cfg.Self),
		asm:       NewAssembler(),
		latest:    make(map[string]received),
		logged:    make(map[string]errLog),
		intern:    make(map[string]string),
		internFor: make(map[string]int),
	}
}

// Start reads the stream with an ordered consumer from Stale ago on, so a
// leader that just took over has every live member's latest Part at once.
func (c *Collector) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cc != nil || c.stopped {
		return fmt.Errorf("summary collector: already started")
	}
	from := time.Now().Add(-c.cfg.Stale)
	cons, err := c.js.OrderedConsumer(ctx, Stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{SubjectPrefix + ">"},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   &from,
	})
	if err != nil {
		return fmt.Errorf("summary collector: consumer on stream %s: %w", Stream, err)
	}
	cc, err := cons.Consume(c.handle, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		c.log.Debug("summary consumer", "err", err)
	}))
	if err != nil {
		return fmt.Errorf("summary collector: consume stream %s: %w", Stream, err)
	}
	c.cc = cc
	return nil
}

func (c *Collector) handle(msg jetstream.Msg) {
	tok := strings.TrimPrefix(msg.Subject(), SubjectPrefix)
	if tok == c.selfTok {
		return
	}
	now := time.Now()
	ch, err := decodeChunkIntern(msg.Data(), c.intern)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return
	}
	if err == nil && Token(ch.member) != tok {
		err = fmt.Errorf("summary chunk of member %q on subject %s, want %s", ch.member, msg.Subject(), Subject(ch.member))
	}
	var p *Part
	if err == nil {
		p, err = c.asm.add(ch, now)
	}
	if err != nil {
		c.failed(tok, err, now)
		return
	}
	if p != nil {
		c.latest[p.Member] = received{part: p, at: now}
		c.internFor[p.Member] = len(p.Nodes) + len(p.Unobserved) + len(p.Owned)
		// Names of nodes gone pile up in the intern table: start it afresh
		// when it holds well over what the members' latest parts name (a
		// node's consumer and id, and the streams).
		live := 0
		for _, n := range c.internFor {
			live += n
		}
		if len(c.intern) > 4*live+4096 {
			clear(c.intern)
		}
	}
}

// failed counts a bad chunk and logs it, once a minute per member.
func (c *Collector) failed(tok string, err error, now time.Time) {
	c.errCount.Add(1)
	l, ok := c.logged[tok]
	if ok && now.Sub(l.at) < errLogEvery {
		l.suppressed++
		c.logged[tok] = l
		return
	}
	c.log.Warn("summary chunk rejected", "subject", SubjectPrefix+tok, "err", err, "suppressed", l.suppressed)
	c.logged[tok] = errLog{at: now}
}

// Latest returns, sorted by member, every other member's latest complete
// Part that arrived within Stale of now. The parts are shared: callers
// must not change them.
func (c *Collector) Latest(now time.Time) []*Part {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*Part
	for name, r := range c.latest {
		if now.Sub(r.at) > c.cfg.Stale {
			// Dropped once stale: a member that comes back is new again.
			delete(c.latest, name)
			continue
		}
		out = append(out, r.part)
	}
	// Incomplete parts of members gone quiet would otherwise stay forever.
	c.asm.Prune(now.Add(-c.cfg.Stale))
	for tok, l := range c.logged {
		if now.Sub(l.at) > errLogEvery {
			delete(c.logged, tok)
		}
	}
	slices.SortFunc(out, func(a, b *Part) int { return strings.Compare(a.Member, b.Member) })
	return out
}

// Errors counts the chunks rejected so far.
func (c *Collector) Errors() uint64 { return c.errCount.Load() }

// Stop ends the consumer. Once it returns, no message is handled any more.
func (c *Collector) Stop() {
	c.mu.Lock()
	c.stopped = true
	cc := c.cc
	c.mu.Unlock()
	if cc == nil {
		return
	}
	cc.Stop()
	<-cc.Closed()
}
