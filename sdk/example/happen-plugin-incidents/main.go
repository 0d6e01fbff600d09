// Command happen-plugin-incidents is a complete example of a happen plugin.
// It keeps a record of every incident in a JetStream KV bucket, one key per
// incident, and publishes a one-line summary when an incident opens and when
// it ends. It acts only through the host the engine lends it, so it holds no
// NATS credentials of its own.
//
// Build it into the engine's plugin folder:
//
//	go build -o bin/happen-plugin-incidents ./sdk/example/happen-plugin-incidents
//
// and use it from a rule:
//
//	actions:
//	  - plugin: incidents
//	    with: { bucket: happen_incidents, subject: ops.incidents }
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/happen-dev/happen/sdk"
	"github.com/happen-dev/happen/sdk/events"
)

const version = "1.0.0"

// Incident is the value kept under the incident's key.
type Incident struct {
	ID            string   `json:"id"`
	Status        string   `json:"status"` // open or resolved
	Type          string   `json:"type"`   // node.down or system.down
	Rule          string   `json:"rule"`
	Pattern       string   `json:"pattern"`
	Level         string   `json:"level"`
	NodeID        string   `json:"nodeId,omitempty"`
	AffectedNodes []string `json:"affectedNodes,omitempty"`
	DownEventID   string   `json:"downEventId"`
	Since         int64    `json:"since"`             // Unix milliseconds
	EndedAt       int64    `json:"endedAt,omitempty"` // Unix milliseconds
	DownSeconds   float64  `json:"downSeconds,omitempty"`
	// LastKey is the idempotency key of the last request applied, so a
	// retried request that already took effect is not applied twice. It is
	// stored after the summary is published: a request whose publish failed
	// is applied again by its retry.
	LastKey string `json:"lastKey"`
}

// Summary is published on `subject` when an incident opens or ends.
type Summary struct {
	Incident string `json:"incident"`
	Status   string `json:"status"`
	Text     string `json:"text"`
}

type incidents struct{}

func (incidents) Describe(context.Context, *sdk.DescribeRequest) (*sdk.DescribeResponse, error) {
	return &sdk.DescribeResponse{
		Name:    "incidents",
		Version: version,
		Params: []sdk.Param{
			{Name: "bucket", Description: "KV bucket holding one record per incident (default happen_incidents)"},
			{Name: "subject", Description: "where to publish a summary when an incident opens or ends (default: none)"},
		},
	}, nil
}

// Execute opens the incident.
func (incidents) Execute(ctx context.Context, req *sdk.ExecuteRequest) (*sdk.ExecuteResponse, error) {
	bucket, subject, err := params(req.With)
	if err != nil {
		return nil, err
	}
	inc, err := fromDown(req.Event)
	if err != nil {
		return nil, err
	}
	key := kvKey(inc.ID)
	prev, err := load(ctx, req.Host, bucket, key)
	if err != nil {
		return nil, err
	}
	if prev != nil && prev.LastKey == req.IdempotencyKey {
		return &sdk.ExecuteResponse{Message: "incident " + inc.ID + " already recorded"}, nil
	}
	if prev != nil && prev.Status == "open" {
		// One incident can fire several actions (a partition's nodes share
		// its correlation id): add the nodes, keep the rest.
		inc.AffectedNodes = union(prev.AffectedNodes, inc.AffectedNodes)
		inc.Since = prev.Since
	}
	// Publish, then record: a retry after a failed publish publishes again
	// (at least once, never lost).
	if err := publish(ctx, req.Host, subject, inc); err != nil {
		return nil, err
	}
	inc.LastKey = req.IdempotencyKey
	if err := store(ctx, req.Host, bucket, key, inc); err != nil {
		return nil, err
	}
	return &sdk.ExecuteResponse{Message: "incident " + inc.ID + " opened"}, nil
}

// Undo marks the incident resolved. It keeps the record: it is history.
func (incidents) Undo(ctx context.Context, req *sdk.ExecuteRequest) (*sdk.ExecuteResponse, error) {
	bucket, subject, err := params(req.With)
	if err != nil {
		return nil, err
	}
	opened, err := fromDown(req.Down)
	if err != nil {
		return nil, err
	}
	key := kvKey(opened.ID)
	inc, err := load(ctx, req.Host, bucket, key)
	if err != nil {
		return nil, err
	}
	if inc == nil {
		// Opened before this plugin was installed, or its record was
		// removed: record it from the down event the engine passes along.
		inc = opened
	}
	if inc.LastKey == req.IdempotencyKey {
		return &sdk.ExecuteResponse{Message: "incident " + inc.ID + " already resolved"}, nil
	}
	var up struct {
		DownSeconds float64 `json:"downSeconds"`
	}
	if err := req.Event.Decode(&up); err != nil {
		return nil, sdk.Permanent(err)
	}
	inc.Status = "resolved"
	inc.EndedAt = req.Event.Context.Timestamp
	inc.DownSeconds = up.DownSeconds
	// Publish, then record: a retry after a failed publish publishes again
	// (at least once, never lost).
	if err := publish(ctx, req.Host, subject, inc); err != nil {
		return nil, err
	}
	inc.LastKey = req.IdempotencyKey
	if err := store(ctx, req.Host, bucket, key, inc); err != nil {
		return nil, err
	}
	return &sdk.ExecuteResponse{Message: "incident " + inc.ID + " resolved"}, nil
}

func params(with map[string]any) (bucket, subject string, err error) {
	bucket, subject = "happen_incidents", ""
	if v, ok := with["bucket"]; ok {
		if bucket, ok = v.(string); !ok || bucket == "" {
			// A mistake in the rule: retrying cannot fix it.
			return "", "", sdk.Permanent(fmt.Errorf("bucket must be a non-empty string, got %v", v))
		}
	}
	if v, ok := with["subject"]; ok {
		if subject, ok = v.(string); !ok {
			return "", "", sdk.Permanent(fmt.Errorf("subject must be a string, got %v", v))
		}
	}
	return bucket, subject, nil
}

// fromDown reads a node.down or system.down into a new open incident. The
// incident is the event's correlation id: every event of one incident
// shares it.
func fromDown(e events.Envelope) (*Incident, error) {
	inc := &Incident{
		ID: e.Context.CorrelationID, Status: "open", Type: e.Type,
		DownEventID: e.Context.ID, Since: e.Context.Timestamp,
	}
	if inc.ID == "" {
		inc.ID = e.Context.ID
	}
	switch e.Type {
	case events.TypeNodeDown:
		var d events.NodeDown
		if err := e.Decode(&d); err != nil {
			return nil, sdk.Permanent(err)
		}
		inc.Rule, inc.Pattern, inc.Level, inc.NodeID = d.Rule, d.Pattern, d.Level, d.NodeID
		inc.AffectedNodes = union(d.AffectedNodes, []string{d.NodeID})
	case events.TypeSystemDown:
		var d events.SystemDown
		if err := e.Decode(&d); err != nil {
			return nil, sdk.Permanent(err)
		}
		inc.Rule, inc.Pattern, inc.Level, inc.AffectedNodes = d.Rule, d.Pattern, d.Level, d.AffectedNodes
	default:
		return nil, sdk.Permanent(fmt.Errorf("unexpected event type %q", e.Type))
	}
	return inc, nil
}

func load(ctx context.Context, h sdk.Host, bucket, key string) (*Incident, error) {
	raw, found, err := h.KVGet(ctx, bucket, key)
	if err != nil || !found {
		return nil, err
	}
	var inc Incident
	if err := json.Unmarshal(raw, &inc); err != nil {
		return nil, fmt.Errorf("incident %s in %s: %w", key, bucket, err)
	}
	return &inc, nil
}

func store(ctx context.Context, h sdk.Host, bucket, key string, inc *Incident) error {
	raw, err := json.Marshal(inc)
	if err != nil {
		return err
	}
	return h.KVPut(ctx, bucket, key, raw)
}

func publish(ctx context.Context, h sdk.Host, subject string, inc *Incident) error {
	if subject == "" {
		return nil
	}
	what := inc.Pattern + " (" + inc.Rule + ", " + inc.Level + ")"
	where := "the system"
	if inc.NodeID != "" {
		where = inc.NodeID
	}
	text := what + " on " + where
	if inc.Status == "resolved" {
		text = fmt.Sprintf("resolved after %.0fs: %s", inc.DownSeconds, text)
	}
	raw, err := json.Marshal(Summary{Incident: inc.ID, Status: inc.Status, Text: text})
	if err != nil {
		return err
	}
	return h.Publish(ctx, subject, raw)
}

// kvKey keeps only the characters a KV key may hold.
func kvKey(id string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '=':
			return r
		}
		return '_'
	}, id)
}

func union(a, b []string) []string {
	out := append([]string(nil), a...)
	for _, s := range b {
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func main() { sdk.Serve(incidents{}) }
