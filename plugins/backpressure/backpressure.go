package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"

	"github.com/happen-dev/happen/plugins/internal/params"
	"github.com/happen-dev/happen/sdk"
	"github.com/happen-dev/happen/sdk/events"
)

const (
	// SubjectPrefix is where directives go; the node id is the last token.
	SubjectPrefix = "happen.control.backpressure."
	// Bucket remembers each lowered consumer's original max_ack_pending, so
	// the value survives a plugin restart and a retry never records the
	// lowered value as the original.
	Bucket = "happen_backpressure"

	defaultFactor = 0.8
)

// Directive is the JSON published on SubjectPrefix+nodeId.
type Directive struct {
	NodeID  string  `json:"nodeId"`
	Action  string  `json:"action"` // throttle | release
	Rate    float64 `json:"rate"`   // messages per second; 0 on release
	Reason  string  `json:"reason"`
	EventID string  `json:"eventId"`
}

// memo is what Bucket holds for one consumer while it is throttled.
type memo struct {
	Stream   string `json:"stream"`
	Consumer string `json:"consumer"`
	// Original is the max_ack_pending before it was lowered.
	Original int `json:"original"`
	// Lowered is what it was set to; it is restored only if it still holds,
	// so a change made by an operator meanwhile is left alone.
	Lowered int    `json:"lowered"`
	EventID string `json:"eventId"`
}

// Backpressure asks a struggling node's publishers to slow down and can cap
// how much unacknowledged work the node's consumer gets.
type Backpressure struct {
	version string
	// mu serialises the read-modify-write of a consumer's config and memo.
	mu sync.Mutex
}

// New returns the action; version is reported by Describe.
func New(version string) *Backpressure { return &Backpressure{version: version} }

var _ sdk.Action = (*Backpressure)(nil)

// Describe names the plugin and its parameters.
func (b *Backpressure) Describe(context.Context, *sdk.DescribeRequest) (*sdk.DescribeResponse, error) {
	return &sdk.DescribeResponse{
		Name:    "backpressure",
		Version: b.version,
		Params: []sdk.Param{
			{Name: "factor", Description: "the directive's rate is the node's ack rate times this, in (0, 1] (default 0.8)"},
			{Name: "maxAckPending", Description: "while active, lower the consumer's MaxAckPending to this (optional)"},
		},
	}, nil
}

type config struct {
	factor        float64
	maxAckPending int // 0: leave the consumer alone
}

func parseConfig(with map[string]any) (config, error) {
	if err := params.Check(with, "factor", "maxAckPending"); err != nil {
		return config{}, err
	}
	f, err := params.Float(with, "factor", defaultFactor)
	if err != nil {
		return config{}, err
	}
	if f <= 0 || f > 1 {
		return config{}, fmt.Errorf("parameter factor: %v is outside (0, 1]", f)
	}
	m, set, err := params.Int(with, "maxAckPending")
	if err != nil {
		return config{}, err
	}
	if set && m < 1 {
		return config{}, fmt.Errorf("parameter maxAckPending: %d is below 1", m)
	}
	return config{factor: f, maxAckPending: m}, nil
}

// Execute publishes a throttle directive for the node of a node.down and,
// with maxAckPending, lowers its consumer's MaxAckPending.
func (b *Backpressure) Execute(ctx context.Context, req *sdk.ExecuteRequest) (*sdk.ExecuteResponse, error) {
	if req.Host == nil {
		return nil, sdk.Permanent(errors.New("backpressure: no host in request"))
	}
	cfg, err := parseConfig(req.With)
	if err != nil {
		return nil, sdk.Permanent(fmt.Errorf("backpressure: %w", err))
	}
	if req.Event.Type != events.TypeNodeDown {
		return nil, sdk.Permanent(fmt.Errorf("backpressure: acts on %s events of one node, not %q (event %s)",
			events.TypeNodeDown, req.Event.Type, req.Event.Context.ID))
	}
	var down events.NodeDown
	if err := req.Event.Decode(&down); err != nil {
		return nil, sdk.Permanent(fmt.Errorf("backpressure: event %s: %w", req.Event.Context.ID, err))
	}
	if err := validateNodeID(down.NodeID); err != nil {
		return nil, sdk.Permanent(fmt.Errorf("backpressure: event %s: %w", req.Event.Context.ID, err))
	}
	rule := firstNonEmpty(req.Rule, down.Rule)
	d := Directive{
		NodeID: down.NodeID,
		Action: "throttle",
		Rate:   round3(down.LagMetrics.AckRate * cfg.factor),
		Reason: fmt.Sprintf("%s on node %s (rule %s): throttle to %s of its ack rate of %s msg/s",
			firstNonEmpty(down.Pattern, "trouble"), down.NodeID, rule,
			strconv.FormatFloat(round3(cfg.factor*100), 'f', -1, 64)+"%",
			strconv.FormatFloat(round3(down.LagMetrics.AckRate), 'f', -1, 64)),
		EventID: req.Event.Context.ID,
	}
	if err := publish(ctx, req.Host, d); err != nil {
		return nil, err
	}
	msg := fmt.Sprintf("throttle %s to %v msg/s", d.NodeID, d.Rate)
	if cfg.maxAckPending > 0 {
		m, err := b.lower(ctx, req.Host, down, cfg.maxAckPending, req.Event.Context.ID)
		if err != nil {
			return nil, err
		}
		msg += "; " + m
	}
	return &sdk.ExecuteResponse{Message: msg}, nil
}

// lower caps the consumer's max_ack_pending at target, first recording the
// original value unless an earlier attempt already did.
func (b *Backpressure) lower(ctx context.Context, h sdk.Host, down events.NodeDown, target int, eventID string) (string, error) {
	if down.Stream == "" || down.Consumer == "" {
		return "", sdk.Permanent(fmt.Errorf("backpressure: node.down of %s names no stream and consumer, so maxAckPending cannot be applied", down.NodeID))
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	where := down.Stream + "/" + down.Consumer
	current, err := maxAckPending(ctx, h, down.Stream, down.Consumer)
	if isNotFound(err) {
		// The consumer is gone; no retry brings it back.
		return "", sdk.Permanent(err)
	}
	if err != nil {
		return "", err
	}
	key := memoKey(down.Stream, down.Consumer)
	m, found, err := getMemo(ctx, h, key)
	if err != nil {
		return "", err
	}
	if !found {
		if current > 0 && current <= target {
			return fmt.Sprintf("max_ack_pending of %s already %d, at or below %d", where, current, target), nil
		}
		m = memo{Stream: down.Stream, Consumer: down.Consumer, Original: current}
	}
	// Record before changing the consumer: if the update then fails or the
	// plugin dies, the retry finds the true original here.
	if !found || m.Lowered != target {
		m.Lowered, m.EventID = target, eventID
		if err := putMemo(ctx, h, key, m); err != nil {
			return "", err
		}
	}
	if current > 0 && current <= target {
		return fmt.Sprintf("max_ack_pending of %s is %d (was %d)", where, current, m.Original), nil
	}
	if err := h.UpdateConsumer(ctx, down.Stream, down.Consumer, map[string]any{"max_ack_pending": target}); err != nil {
		return "", fmt.Errorf("backpressure: lower max_ack_pending of %s to %d: %w", where, target, err)
	}
	return fmt.Sprintf("max_ack_pending of %s lowered from %d to %d", where, m.Original, target), nil
}

// Undo publishes a release directive and restores the consumer's
// max_ack_pending if Execute lowered it.
func (b *Backpressure) Undo(ctx context.Context, req *sdk.ExecuteRequest) (*sdk.ExecuteResponse, error) {
	if req.Host == nil {
		return nil, sdk.Permanent(errors.New("backpressure: no host in request"))
	}
	if req.Event.Type != events.TypeNodeUp {
		return nil, sdk.Permanent(fmt.Errorf("backpressure: resolves on %s events of one node, not %q (event %s)",
			events.TypeNodeUp, req.Event.Type, req.Event.Context.ID))
	}
	var up events.NodeUp
	if err := req.Event.Decode(&up); err != nil {
		return nil, sdk.Permanent(fmt.Errorf("backpressure: event %s: %w", req.Event.Context.ID, err))
	}
	// The down event says which consumer was lowered; it also names the node
	// when the up event does not.
	var down events.NodeDown
	if len(req.Down.Payload) > 0 {
		if err := req.Down.Decode(&down); err != nil {
			return nil, sdk.Permanent(fmt.Errorf("backpressure: down event %s: %w", req.Down.Context.ID, err))
		}
	}
	nodeID := firstNonEmpty(up.NodeID, down.NodeID)
	if err := validateNodeID(nodeID); err != nil {
		return nil, sdk.Permanent(fmt.Errorf("backpressure: event %s: %w", req.Event.Context.ID, err))
	}
	rule := firstNonEmpty(req.Rule, up.Rule, down.Rule)
	d := Directive{
		NodeID:  nodeID,
		Action:  "release",
		Rate:    0,
		Reason:  fmt.Sprintf("%s on node %s (rule %s) has cleared: release the throttle", firstNonEmpty(up.Pattern, down.Pattern, "trouble"), nodeID, rule),
		EventID: req.Event.Context.ID,
	}
	if err := publish(ctx, req.Host, d); err != nil {
		return nil, err
	}
	msg := "release " + nodeID
	if down.Stream != "" && down.Consumer != "" {
		m, err := b.restore(ctx, req.Host, down.Stream, down.Consumer)
		if err != nil {
			return nil, err
		}
		if m != "" {
			msg += "; " + m
		}
	}
	return &sdk.ExecuteResponse{Message: msg}, nil
}

// restore puts back the remembered max_ack_pending and forgets it.
func (b *Backpressure) restore(ctx context.Context, h sdk.Host, stream, consumer string) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	where := stream + "/" + consumer
	key := memoKey(stream, consumer)
	m, found, err := getMemo(ctx, h, key)
	if err != nil || !found {
		return "", err
	}
	var msg string
	current, err := maxAckPending(ctx, h, stream, consumer)
	switch {
	case isNotFound(err):
		msg = fmt.Sprintf("%s no longer exists, nothing to restore", where)
	case err != nil:
		return "", err
	case current != m.Lowered:
		msg = fmt.Sprintf("max_ack_pending of %s changed to %d meanwhile, left as is", where, current)
	default:
		// The original may be unlimited (-1); JetStream takes it back as is.
		err := h.UpdateConsumer(ctx, stream, consumer, map[string]any{"max_ack_pending": m.Original})
		switch {
		case isNotFound(err):
			msg = fmt.Sprintf("%s no longer exists, nothing to restore", where)
		case err != nil:
			return "", fmt.Errorf("backpressure: restore max_ack_pending of %s to %d: %w", where, m.Original, err)
		default:
			msg = fmt.Sprintf("max_ack_pending of %s restored to %d", where, m.Original)
		}
	}
	if err := h.KVDelete(ctx, Bucket, key); err != nil {
		return "", fmt.Errorf("backpressure: forget max_ack_pending of %s: %w", where, err)
	}
	return msg, nil
}

func publish(ctx context.Context, h sdk.Host, d Directive) error {
	data, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("backpressure: encode directive: %w", err)
	}
	if err := h.Publish(ctx, SubjectPrefix+d.NodeID, data); err != nil {
		return fmt.Errorf("backpressure: publish %s directive for %s: %w", d.Action, d.NodeID, err)
	}
	return nil
}

func maxAckPending(ctx context.Context, h sdk.Host, stream, consumer string) (int, error) {
	raw, err := h.ConsumerConfig(ctx, stream, consumer)
	if err != nil {
		return 0, fmt.Errorf("backpressure: read config of %s/%s: %w", stream, consumer, err)
	}
	var cfg struct {
		MaxAckPending int `json:"max_ack_pending"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return 0, fmt.Errorf("backpressure: decode config of %s/%s: %w", stream, consumer, err)
	}
	return cfg.MaxAckPending, nil
}

func getMemo(ctx context.Context, h sdk.Host, key string) (memo, bool, error) {
	raw, found, err := h.KVGet(ctx, Bucket, key)
	if err != nil || !found {
		return memo{}, false, err
	}
	var m memo
	if err := json.Unmarshal(raw, &m); err != nil {
		return memo{}, false, fmt.Errorf("backpressure: decode %s/%s: %w", Bucket, key, err)
	}
	return m, true, nil
}

func putMemo(ctx context.Context, h sdk.Host, key string, m memo) error {
	data, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("backpressure: encode %s/%s: %w", Bucket, key, err)
	}
	if err := h.KVPut(ctx, Bucket, key, data); err != nil {
		return fmt.Errorf("backpressure: remember max_ack_pending of %s/%s: %w", m.Stream, m.Consumer, err)
	}
	return nil
}

// isNotFound tells a missing stream or consumer from other failures. Errors
// cross the plugin boundary as text, so it reads JetStream's own wording.
func isNotFound(err error) bool {
	if err == nil {
		return false
	}
	s := err.Error()
	return strings.Contains(s, "consumer not found") || strings.Contains(s, "stream not found")
}

// validateNodeID refuses ids that cannot be the last token of a subject.
func validateNodeID(id string) error {
	if id == "" {
		return errors.New("node id is empty")
	}
	for _, r := range id {
		switch {
		case r == '.', r == '*', r == '>':
			return fmt.Errorf("node id %q cannot be a subject token: it holds %q", id, r)
		case r <= ' ' || r == 0x7f:
			return fmt.Errorf("node id %q cannot be a subject token: it holds whitespace or a control character", id)
		}
	}
	return nil
}

// memoKey is stream.consumer made safe for a KV key: every byte outside
// [A-Za-z0-9_-] becomes =XX, which keeps distinct names distinct.
func memoKey(stream, consumer string) string {
	return escapeKey(stream) + "." + escapeKey(consumer)
}

func escapeKey(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "=%02X", c)
	}
	return b.String()
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
