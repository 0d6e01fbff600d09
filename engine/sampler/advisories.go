package sampler

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/happen-dev/happen/engine/flow"
	"github.com/nats-io/nats.go"
)

type advisoryKind int

const (
	maxDeliveries advisoryKind = iota
	nak
	terminated
)

// The servers publish these on <prefix>.<stream>.<consumer>, and only
// while someone listens (nats-server jetstream_api.go, consumer.go).
var advisoryKinds = [...]struct {
	prefix string
	typ    string // the payload's schema type
	kind   advisoryKind
}{
	{"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES", "io.nats.jetstream.advisory.v1.max_deliver", maxDeliveries},
	{"$JS.EVENT.ADVISORY.CONSUMER.MSG_NAKED", "io.nats.jetstream.advisory.v1.nak", nak},
	{"$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED", "io.nats.jetstream.advisory.v1.terminated", terminated},
}

type counters struct {
	maxDeliveries, naks, terminated uint64
	touched                         time.Time // local time of the last advisory
}

// advisories counts consumer advisories per node. Message handlers and
// Sample use it concurrently.
type advisories struct {
	log *slog.Logger

	mu    sync.Mutex
	byKey map[flow.NodeKey]*counters
}

func newAdvisories(log *slog.Logger) *advisories {
	return &advisories{log: log, byKey: map[flow.NodeKey]*counters{}}
}

// subscribe subscribes to every advisory kind, or to none on error.
func (a *advisories) subscribe(nc *nats.Conn) ([]*nats.Subscription, error) {
	subs := make([]*nats.Subscription, 0, len(advisoryKinds))
	for _, k := range advisoryKinds {
		sub, err := nc.Subscribe(k.prefix+".*.*", func(m *nats.Msg) {
			a.record(k.prefix, k.typ, k.kind, m.Subject, m.Data)
		})
		if err != nil {
			for _, s := range subs {
				_ = s.Unsubscribe()
			}
			return nil, fmt.Errorf("subscribe to %s.*.*: %w", k.prefix, err)
		}
		subs = append(subs, sub)
	}
	return subs, nil
}

// record counts one advisory. The node comes from the subject; the payload
// must be a JSON object that, where it names a type, stream or consumer,
// agrees with it.
func (a *advisories) record(prefix, typ string, kind advisoryKind, subject string, data []byte) {
	key, ok := advisoryKey(prefix, subject)
	if !ok {
		a.log.Debug("ignoring advisory with malformed subject", "subject", subject)
		return
	}
	var p struct {
		Type     string `json:"type"`
		Stream   string `json:"stream"`
		Consumer string `json:"consumer"`
	}
	if err := json.Unmarshal(data, &p); err != nil {
		a.log.Debug("ignoring malformed advisory", "subject", subject, "error", err)
		return
	}
	if (p.Type != "" && p.Type != typ) || (p.Stream != "" && p.Stream != key.Stream) || (p.Consumer != "" && p.Consumer != key.Consumer) {
		a.log.Debug("ignoring advisory that disagrees with its subject", "subject", subject, "type", p.Type, "stream", p.Stream, "consumer", p.Consumer)
		return
	}
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	c := a.byKey[key]
	if c == nil {
		c = &counters{}
		a.byKey[key] = c
	}
	switch kind {
	case maxDeliveries:
		c.maxDeliveries++
	case nak:
		c.naks++
	case terminated:
		c.terminated++
	}
	c.touched = now
}

// advisoryKey reads <prefix>.<stream>.<consumer>.
func advisoryKey(prefix, subject string) (flow.NodeKey, bool) {
	rest, ok := strings.CutPrefix(subject, prefix+".")
	if !ok {
		return flow.NodeKey{}, false
	}
	stream, consumer, ok := strings.Cut(rest, ".")
	if !ok || stream == "" || consumer == "" || strings.Contains(consumer, ".") {
		return flow.NodeKey{}, false
	}
	return flow.NodeKey{Stream: stream, Consumer: consumer}, true
}

// fill copies the current counts into the samples.
func (a *advisories) fill(cs []flow.ConsumerSample) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.byKey) == 0 {
		return
	}
	for i := range cs {
		if c := a.byKey[cs[i].Key]; c != nil {
			cs[i].MaxDeliveries, cs[i].Naks, cs[i].Terminated = c.maxDeliveries, c.naks, c.terminated
		}
	}
}

// prune drops the counters of every node keep refuses.
func (a *advisories) prune(keep func(key flow.NodeKey, touched time.Time) bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, c := range a.byKey {
		if !keep(k, c.touched) {
			delete(a.byKey, k)
		}
	}
}
