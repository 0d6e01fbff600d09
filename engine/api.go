package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/happen-dev/happen/engine/flow"
	"github.com/happen-dev/happen/sdk/events"
	"github.com/nats-io/nats.go"
)

// The engine answers requests on <prefix>.api.<name>, beside its events:
// `happen status` and `happen events` reach it wherever its NATS does. No
// event type begins with "api.", so a subscriber can tell the two apart.
const (
	APIStatus = "api.status" // request StatusRequest, reply Status
	APIEvents = "api.events" // request EventsRequest, reply EventsReply
)

// RecentEventsSize bounds the events the engine remembers for
// RecentEvents. Events are rare (a few per incident), so a thousand cover
// hours of a busy day, and at typically well under 1 KB each they cost
// about a megabyte at most; only an incident over a huge group, whose every
// node.down lists the whole group, makes them bigger.
const RecentEventsSize = 1000

// DefaultStatusPage is how many nodes one api.status reply carries unless
// the request asks for fewer. A node is about 1 KB of JSON, so a page is a
// quarter of NATS's default max_payload (1 MB), leaving room for the first
// page's groups and incidents. A reply that would still not fit (long
// names, a smaller max_payload) carries fewer nodes; the client pages on
// with Offset until it has Total.
const DefaultStatusPage = 250

// StatusRequest is the body of an api.status request; an empty body asks
// for the first page of every node, trouble first.
//
// Trouble order changes from one tick to the next (it follows messages
// waiting), so pages fetched across ticks may repeat or skip a node. To
// fetch every node, page in key order (Order "key"), which only nodes
// coming and going change, from the key of the last node received (After),
// and sort the whole with SortTrouble.
type StatusRequest struct {
	Offset  int    `json:"offset,omitempty"`
	Limit   int    `json:"limit,omitempty"`   // nodes per page; 0: DefaultStatusPage
	Group   string `json:"group,omitempty"`   // only nodes of this group
	Node    string `json:"node,omitempty"`    // only this node: its id, consumer name or stream/consumer
	Trouble bool   `json:"trouble,omitempty"` // only nodes not ok (NodeStatus.Troubled)
	Order   string `json:"order,omitempty"`   // "trouble" (the default) or "key": by stream, then consumer
	After   string `json:"after,omitempty"`   // key order only: start after this stream/consumer
}

// Status orders.
const (
	OrderTrouble = "trouble"
	OrderKey     = "key"
)

// EventsRequest is the body of an api.events request; an empty body asks
// for every event remembered.
type EventsRequest struct {
	Since   EventTime `json:"since,omitzero"` // RFC 3339, or Unix milliseconds
	Types   []string  `json:"types,omitempty"`
	Node    string    `json:"node,omitempty"`
	Pattern string    `json:"pattern,omitempty"`
	Limit   int       `json:"limit,omitempty"`
}

// EventsReply is the answer to api.events: matching events, oldest first.
// Omitted counts older matching events left out to keep the reply within
// the server's max_payload.
type EventsReply struct {
	Events  []events.Envelope `json:"events"`
	Omitted int               `json:"omitted,omitempty"`
}

// APIError is the reply to a request the engine cannot answer. It also
// carries the headers NATS services use (Nats-Service-Error and
// Nats-Service-Error-Code).
type APIError struct {
	Error string `json:"error"`
}

// EventTime is a time in a request: an RFC 3339 string, or a number of
// Unix milliseconds as in an event's timestamp.
type EventTime struct{ time.Time }

// MarshalJSON writes the time as RFC 3339.
func (t EventTime) MarshalJSON() ([]byte, error) {
	return json.Marshal(t.Time.Format(time.RFC3339Nano))
}

// UnmarshalJSON reads an RFC 3339 string or Unix milliseconds.
func (t *EventTime) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		t.Time = time.Time{}
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
			t.Time = time.UnixMilli(ms)
			return nil
		}
		at, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return fmt.Errorf("time %q: want RFC 3339 (2026-12-03T10:00:00Z) or Unix milliseconds", s)
		}
		t.Time = at
		return nil
	}
	ms, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return fmt.Errorf("time %s: want RFC 3339 (2026-12-03T10:00:00Z) or Unix milliseconds", b)
	}
	t.Time = time.UnixMilli(ms)
	return nil
}

// EventFilter selects events for RecentEvents; its zero value selects all.
type EventFilter struct {
	Since   time.Time // at or after this time
	Types   []string  // any of these types; path.Match globs such as "node.*"
	Node    string    // about this node: its nodeId, or in affectedNodes
	Pattern string    // of this pattern
	Limit   int       // only the most recent this many; 0: no limit
}

// Validate reports a type glob that path.Match cannot use.
func (f EventFilter) Validate() error {
	for _, t := range f.Types {
		if _, err := path.Match(t, ""); err != nil {
			return fmt.Errorf("event type %q: %w", t, err)
		}
	}
	if f.Limit < 0 {
		return fmt.Errorf("limit %d: want 0 (all) or more", f.Limit)
	}
	return nil
}

// Match reports whether env passes every condition of f but Limit.
func (f EventFilter) Match(env events.Envelope) bool {
	return f.match(env, metaOf(env))
}

func (f EventFilter) match(env events.Envelope, m eventMeta) bool {
	if !f.Since.IsZero() && env.Context.Timestamp < f.Since.UnixMilli() {
		return false
	}
	if len(f.Types) > 0 && !slices.ContainsFunc(f.Types, func(t string) bool {
		ok, _ := path.Match(t, env.Type)
		return ok
	}) {
		return false
	}
	if f.Pattern != "" && m.Pattern != f.Pattern {
		return false
	}
	if f.Node != "" && m.NodeID != f.Node && !slices.Contains(m.AffectedNodes, f.Node) {
		return false
	}
	return true
}

// eventMeta is what filters read from a payload, whatever the type.
type eventMeta struct {
	NodeID        string   `json:"nodeId"`
	Pattern       string   `json:"pattern"`
	AffectedNodes []string `json:"affectedNodes"`
}

func metaOf(env events.Envelope) eventMeta {
	var m eventMeta
	_ = json.Unmarshal(env.Payload, &m) // a payload without these fields matches no node or pattern
	return m
}

// eventRing remembers the last RecentEventsSize events published. publish
// adds to it from the tick loop and from PublishEvent's callers; API
// requests read it from NATS's goroutines.
type eventRing struct {
	mu   sync.Mutex
	buf  []ringEntry // grows to RecentEventsSize, then wraps
	next int         // where the next entry goes once full
}

type ringEntry struct {
	env  events.Envelope
	meta eventMeta
}

func (r *eventRing) add(env events.Envelope) {
	e := ringEntry{env: env, meta: metaOf(env)}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.buf) < RecentEventsSize {
		r.buf = append(r.buf, e)
		return
	}
	r.buf[r.next] = e
	r.next = (r.next + 1) % RecentEventsSize
}

// list returns the matching entries, oldest first.
func (r *eventRing) list(f EventFilter) []events.Envelope {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []events.Envelope
	for i := range r.buf {
		e := &r.buf[(r.next+i)%len(r.buf)]
		if f.match(e.env, e.meta) {
			out = append(out, e.env)
		}
	}
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[len(out)-f.Limit:]
	}
	return out
}

// RecentEvents returns the events this engine published lately (at most
// the last RecentEventsSize) that pass f, oldest first.
func (e *Engine) RecentEvents(f EventFilter) []events.Envelope {
	return e.recent.list(f)
}

// startAPI subscribes the API responders on the engine's connection. The
// returned function unsubscribes them; Run calls it when it returns. A
// failure to subscribe is logged, not fatal: detection matters more.
func (e *Engine) startAPI() (stop func()) {
	var subs []*nats.Subscription
	for name, h := range map[string]func(*nats.Msg) ([]byte, error){
		APIStatus: e.serveStatus,
		APIEvents: e.serveEvents,
	} {
		subj := e.cfg.SubjectPrefix + "." + name
		sub, err := e.nc.Subscribe(subj, func(m *nats.Msg) { e.respond(m, h) })
		if err != nil {
			e.log.Error("API responder not started; happen status and happen events will not reach this engine", "subject", subj, "error", err)
			continue
		}
		subs = append(subs, sub)
	}
	return func() {
		for _, s := range subs {
			if err := s.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
				e.log.Warn("stop API responder", "subject", s.Subject, "error", err)
			}
		}
	}
}

// badRequest marks an error as the requester's fault (code 400).
type badRequest struct{ error }

func (e *Engine) respond(m *nats.Msg, h func(*nats.Msg) ([]byte, error)) {
	if m.Reply == "" {
		return // a publish, not a request: nobody to answer
	}
	if e.cfg.Lease != nil && !e.leading() && e.cfg.Lease.Status().Holder != "" {
		return // the leader answers, with the incidents only it holds
	}
	body, err := h(m)
	reply := nats.NewMsg(m.Reply)
	if err != nil {
		code := "500"
		var br badRequest
		if errors.As(err, &br) {
			code = "400"
		}
		reply.Header.Set("Nats-Service-Error", err.Error())
		reply.Header.Set("Nats-Service-Error-Code", code)
		body, _ = json.Marshal(APIError{Error: err.Error()})
		e.log.Debug("API request refused", "subject", m.Subject, "error", err)
	}
	reply.Data = body
	if err := m.RespondMsg(reply); err != nil {
		e.log.Warn("API reply not sent", "subject", m.Subject, "error", err)
	}
}

// decodeRequest reads a request body into v; an empty body leaves v zero.
func decodeRequest(m *nats.Msg, v any) error {
	if len(bytes.TrimSpace(m.Data)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(m.Data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest{fmt.Errorf("request on %s: %w", m.Subject, err)}
	}
	return nil
}

// replyBudget is the most a reply may weigh: the server's max_payload, less
// room for headers.
func (e *Engine) replyBudget() int {
	mp := int(e.nc.MaxPayload())
	if mp <= 0 {
		mp = 1 << 20 // NATS's default, when not connected to be told
	}
	return mp - 4<<10
}

func (e *Engine) serveStatus(m *nats.Msg) ([]byte, error) {
	var req StatusRequest
	if err := decodeRequest(m, &req); err != nil {
		return nil, err
	}
	if req.Offset < 0 || req.Limit < 0 {
		return nil, badRequest{fmt.Errorf("request on %s: offset %d, limit %d: want 0 or more", m.Subject, req.Offset, req.Limit)}
	}
	if req.Order != "" && req.Order != OrderTrouble && req.Order != OrderKey {
		return nil, badRequest{fmt.Errorf("request on %s: order %q: want %q or %q", m.Subject, req.Order, OrderTrouble, OrderKey)}
	}
	if req.After != "" && req.Order != OrderKey {
		return nil, badRequest{fmt.Errorf("request on %s: after %q needs order %q", m.Subject, req.After, OrderKey)}
	}
	return StatusPage(e.Status(), req, e.replyBudget())
}

// StatusPage filters s's nodes as req asks, sorts them (trouble first, or
// by key) and encodes the page at req.Offset (after req.After), with Total
// set to the nodes matched and Offset to where the page starts among them.
// The groups, incidents and unobserved nodes come on the first page only,
// so later pages are nodes alone. A page that would exceed budget bytes
// carries fewer nodes (the requester pages on from Offset+len(Nodes)).
func StatusPage(s *Status, req StatusRequest, budget int) ([]byte, error) {
	nodes := s.Nodes[:0:0]
	for i := range s.Nodes {
		n := &s.Nodes[i]
		if req.Group != "" && n.Group != req.Group {
			continue
		}
		if req.Node != "" && n.ID != req.Node && n.Consumer != req.Node && n.Key.String() != req.Node {
			continue
		}
		if req.Trouble && !n.Troubled() {
			continue
		}
		nodes = append(nodes, *n)
	}
	start := 0
	if req.Order == OrderKey {
		slices.SortFunc(nodes, func(a, b NodeStatus) int { return keyOrder(a.Key, b.Key) })
		if req.After != "" {
			stream, consumer, _ := strings.Cut(req.After, "/")
			after := flow.NodeKey{Stream: stream, Consumer: consumer}
			start, _ = slices.BinarySearchFunc(nodes, after, func(n NodeStatus, k flow.NodeKey) int {
				if keyOrder(n.Key, k) <= 0 {
					return -1
				}
				return 1
			})
		}
	} else {
		SortTrouble(nodes)
	}
	limit := req.Limit
	if limit == 0 {
		limit = DefaultStatusPage
	}
	from := min(start+req.Offset, len(nodes))
	page := *s
	page.Total, page.Offset = len(nodes), from
	page.Nodes = nodes[from:min(from+limit, len(nodes))]
	if from > 0 {
		page.Groups, page.Incidents, page.Unobserved = nil, nil, nil
	}
	for {
		b, err := json.Marshal(&page)
		if err != nil {
			return nil, fmt.Errorf("encode status: %w", err)
		}
		if len(b) <= budget {
			return b, nil
		}
		if len(page.Nodes) <= 1 {
			return nil, fmt.Errorf("status reply of %d bytes exceeds the %d the server allows, even with %d node(s)", len(b), budget, len(page.Nodes))
		}
		page.Nodes = page.Nodes[:len(page.Nodes)/2]
	}
}

func (e *Engine) serveEvents(m *nats.Msg) ([]byte, error) {
	var req EventsRequest
	if err := decodeRequest(m, &req); err != nil {
		return nil, err
	}
	f := EventFilter{Since: req.Since.Time, Types: req.Types, Node: req.Node, Pattern: req.Pattern, Limit: req.Limit}
	if err := f.Validate(); err != nil {
		return nil, badRequest{fmt.Errorf("request on %s: %w", m.Subject, err)}
	}
	return encodeEvents(e.RecentEvents(f), e.replyBudget())
}

// encodeEvents encodes evs as an EventsReply of at most budget bytes,
// keeping the newest events that fit.
func encodeEvents(evs []events.Envelope, budget int) ([]byte, error) {
	const frame = len(`{"events":[],"omitted":` + "2147483647}")
	raws := make([][]byte, len(evs))
	size, keep := frame, 0
	for i := len(evs) - 1; i >= 0; i-- {
		b, err := json.Marshal(evs[i])
		if err != nil {
			return nil, fmt.Errorf("encode event %s: %w", evs[i].Context.ID, err)
		}
		if size+len(b)+1 > budget {
			break
		}
		raws[i], size, keep = b, size+len(b)+1, keep+1
	}
	var buf bytes.Buffer
	buf.Grow(size)
	buf.WriteString(`{"events":[`)
	kept := raws[len(raws)-keep:]
	for i, b := range kept {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(b)
	}
	buf.WriteByte(']')
	if omitted := len(evs) - keep; omitted > 0 {
		fmt.Fprintf(&buf, `,"omitted":%d`, omitted)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// keyOrder orders keys by stream, then consumer; stream names cannot
// hold "/", so this is also the order of their "stream/consumer" form.
func keyOrder(a, b flow.NodeKey) int {
	if c := strings.Compare(a.Stream, b.Stream); c != 0 {
		return c
	}
	return strings.Compare(a.Consumer, b.Consumer)
}

// IsAPISubject reports whether subj, under prefix, is an API request
// rather than an event.
func IsAPISubject(prefix, subj string) bool {
	return strings.HasPrefix(subj, prefix+".api.")
}
