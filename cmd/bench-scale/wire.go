package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// wire watches, on its own connection to the engine's server, the engine's
// JetStream API requests and the replies it gets, and every event the
// engine publishes. From the traffic it times each tick's sample: from the
// tick's first request (a STREAM.LIST at offset 0) to the last reply before
// the next tick.
//
// The engine's requests are told from the load generator's by their reply
// subject: the engine's client uses the default _INBOX prefix, this
// program's connections never do.
//
// On the system access path a tick starts with the engine's JSZ request in
// the system account, which a second monitor connection, in that account,
// watches along with the replies; there a STREAM.LIST (a config refresh)
// does not start a tick.
type wire struct {
	nc       *nats.Conn
	prefix   string // the engine's event subject prefix
	minTick  time.Duration
	ch       chan *nats.Msg
	done     chan struct{}
	mu       sync.Mutex // guards what follows
	subs     []*nats.Subscription
	stopped  bool
	inbox    string // the engine's reply prefix, once seen
	sysNC    *nats.Conn
	sysInbox string // the engine's system connection's reply prefix
	sysTicks bool   // ticks start with the JSZ request
	ticks    []wireTick
	events   map[string]int
	falses   []string // false events, one line each
	inboxErr error
}

type wireTick struct {
	start, last time.Time
	requests    int
	kinds       map[string]int
}

// jszSubject is the request the engine's system access path sends.
const jszSubject = "$SYS.REQ.SERVER.PING.JSZ"

// startWire subscribes on nc and, if not nil, on sys, a connection in the
// system account. Events count from now on.
func startWire(nc, sys *nats.Conn, eventPrefix string, interval time.Duration) (*wire, error) {
	w := &wire{
		nc: nc, sysNC: sys, prefix: eventPrefix + ".", minTick: interval / 2,
		ch: make(chan *nats.Msg, 1<<16), done: make(chan struct{}), events: map[string]int{},
	}
	// One channel for every subscription keeps the order the server sent
	// them in, which the timing relies on.
	go w.loop()
	for _, subj := range []string{"$JS.API.>", eventPrefix + ".>"} {
		sub, err := nc.ChanSubscribe(subj, w.ch)
		if err != nil {
			w.stop()
			return nil, fmt.Errorf("subscribe %s: %w", subj, err)
		}
		w.mu.Lock()
		w.subs = append(w.subs, sub)
		w.mu.Unlock()
	}
	if sys != nil {
		sub, err := sys.ChanSubscribe(jszSubject, w.ch)
		if err != nil {
			w.stop()
			return nil, fmt.Errorf("subscribe %s: %w", jszSubject, err)
		}
		w.mu.Lock()
		w.subs = append(w.subs, sub)
		w.mu.Unlock()
		if err := sys.Flush(); err != nil {
			w.stop()
			return nil, fmt.Errorf("flush system monitor subscriptions: %w", err)
		}
	}
	if err := nc.Flush(); err != nil {
		w.stop()
		return nil, fmt.Errorf("flush monitor subscriptions: %w", err)
	}
	return w, nil
}

func (w *wire) loop() {
	defer close(w.done)
	for m := range w.ch {
		if m == nil {
			return
		}
		w.handle(m, time.Now())
	}
}

func (w *wire) handle(m *nats.Msg, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case m.Subject == jszSubject:
		w.jsz(m, at)
	case w.sysInbox != "" && strings.HasPrefix(m.Subject, w.sysInbox):
		if n := len(w.ticks); n > 0 {
			w.ticks[n-1].last = at
		}
	case strings.HasPrefix(m.Subject, "$JS.API."):
		if !strings.HasPrefix(m.Reply, "_INBOX.") {
			return // the load generator's pulls
		}
		w.request(m, at)
	case strings.HasPrefix(m.Subject, w.prefix):
		typ := strings.TrimPrefix(m.Subject, w.prefix)
		if strings.HasPrefix(typ, "api.") {
			return // a request to the engine's API, not an event
		}
		w.events[typ]++
		if typ == "node.down" || typ == "system.down" {
			w.falses = append(w.falses, describeEvent(typ, m.Data))
		}
	case w.inbox != "" && strings.HasPrefix(m.Subject, w.inbox):
		if n := len(w.ticks); n > 0 {
			w.ticks[n-1].last = at
		}
	}
}

func (w *wire) request(m *nats.Msg, at time.Time) {
	if w.inbox == "" && w.inboxErr == nil && !w.stopped {
		// _INBOX.<nuid>.<token>: the client's one reply subscription is
		// _INBOX.<nuid>.*
		if i := strings.LastIndexByte(m.Reply, '.'); i > len("_INBOX.") {
			w.inbox = m.Reply[:i+1]
			sub, err := w.nc.ChanSubscribe(w.inbox+"*", w.ch)
			if err != nil {
				w.inboxErr = fmt.Errorf("subscribe to the engine's replies: %w", err)
			} else {
				w.subs = append(w.subs, sub)
			}
		}
	}
	kind := apiKind(m.Subject)
	if kind == "STREAM.LIST" && listOffset(m.Data) == 0 && !w.sysTicks {
		if n := len(w.ticks); n == 0 || at.Sub(w.ticks[n-1].start) >= w.minTick {
			w.ticks = append(w.ticks, wireTick{start: at, last: at, kinds: map[string]int{}})
		}
	}
	if n := len(w.ticks); n > 0 {
		t := &w.ticks[n-1]
		t.requests++
		t.kinds[kind]++
	}
}

// jsz starts a tick at the engine's JSZ request, and learns where the
// replies go: _INBOX.<nuid>.<seq>.
func (w *wire) jsz(m *nats.Msg, at time.Time) {
	w.sysTicks = true
	if w.sysInbox == "" && w.inboxErr == nil && !w.stopped && w.sysNC != nil {
		if i := strings.LastIndexByte(m.Reply, '.'); i > len("_INBOX.") {
			w.sysInbox = m.Reply[:i+1]
			sub, err := w.sysNC.ChanSubscribe(w.sysInbox+"*", w.ch)
			if err != nil {
				w.inboxErr = fmt.Errorf("subscribe to the engine's JSZ replies: %w", err)
			} else {
				w.subs = append(w.subs, sub)
			}
		}
	}
	if n := len(w.ticks); n == 0 || at.Sub(w.ticks[n-1].start) >= w.minTick {
		w.ticks = append(w.ticks, wireTick{start: at, last: at, kinds: map[string]int{}})
	}
	t := &w.ticks[len(w.ticks)-1]
	t.requests++
	t.kinds["SYS.PING.JSZ"]++
}

// apiKind names a JetStream API request by its subject without the stream
// and consumer names: "CONSUMER.LIST", "DIRECT.GET".
func apiKind(subject string) string {
	rest := strings.TrimPrefix(subject, "$JS.API.")
	for _, k := range []string{"STREAM.MSG.GET", "CONSUMER.MSG.NEXT"} {
		if strings.HasPrefix(rest, k) {
			return k
		}
	}
	tok := strings.SplitN(rest, ".", 3)
	if len(tok) == 1 {
		return tok[0]
	}
	return tok[0] + "." + tok[1]
}

func listOffset(body []byte) int {
	var r struct {
		Offset int `json:"offset"`
	}
	if len(body) == 0 || json.Unmarshal(body, &r) != nil {
		return 0
	}
	return r.Offset
}

func describeEvent(typ string, data []byte) string {
	var env struct {
		Payload struct {
			NodeID  string `json:"nodeId"`
			Pattern string `json:"pattern"`
			Rule    string `json:"rule"`
		} `json:"payload"`
	}
	if err := json.Unmarshal(data, &env); err != nil {
		return typ + " (unreadable: " + err.Error() + ")"
	}
	p := env.Payload
	return fmt.Sprintf("%s node=%s pattern=%s rule=%s", typ, p.NodeID, p.Pattern, p.Rule)
}

// wireWindow is what the wire saw of the ticks that started in a window.
type wireWindow struct {
	samples  []time.Duration // per complete tick, first request to last reply
	requests int
	kinds    map[string]int
}

// window returns the complete ticks that started in [from, to): a tick is
// complete once the next one has started.
func (w *wire) window(from, to time.Time) (wireWindow, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := wireWindow{kinds: map[string]int{}}
	if w.inboxErr != nil {
		return out, w.inboxErr
	}
	if w.inbox == "" && w.sysInbox == "" {
		return out, nil // no request seen: the engine samples some other way
	}
	for i := 0; i+1 < len(w.ticks); i++ {
		t := w.ticks[i]
		if t.start.Before(from) || !t.start.Before(to) {
			continue
		}
		out.samples = append(out.samples, t.last.Sub(t.start))
		out.requests += t.requests
		for k, n := range t.kinds {
			out.kinds[k] += n
		}
	}
	return out, nil
}

// eventCounts returns the events seen by type, and the false ones.
func (w *wire) eventCounts() (map[string]int, []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := make(map[string]int, len(w.events))
	for k, v := range w.events {
		c[k] = v
	}
	return c, append([]string(nil), w.falses...)
}

// stop unsubscribes and waits for the messages already queued.
func (w *wire) stop() {
	w.mu.Lock()
	subs := w.subs
	w.subs, w.stopped = nil, true
	w.mu.Unlock()
	for _, s := range subs {
		_ = s.Unsubscribe()
	}
	// Subscriptions are gone; the marker ends the loop after what is queued.
	w.ch <- nil
	<-w.done
}
