package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/happen-dev/happen/plugins/internal/nodeset"
	"github.com/happen-dev/happen/plugins/internal/params"
	"github.com/happen-dev/happen/sdk"
	"github.com/happen-dev/happen/sdk/events"
)

const (
	// Subject carries every change of the mode.
	Subject = "happen.control.partition"
	// ModesBucket and ModeKey hold the current mode, for nodes that
	// (re)connect and missed the directive.
	ModesBucket = "happen_modes"
	ModeKey     = "partition"
	// StateBucket and StateKey hold the open incidents behind the mode, so
	// several concurrent partitions add up and a plugin restart forgets
	// nothing.
	StateBucket = "happen_partition_incidents"
	StateKey    = "state"

	// keepResolved bounds how many ended incidents are remembered, to ignore
	// a late node.down of an incident that has already ended.
	keepResolved = 64
)

// Mode is the JSON published on Subject and kept under ModesBucket/ModeKey.
type Mode struct {
	Active                    bool     `json:"active"`
	IsolatedNodes             []string `json:"isolatedNodes"`
	PrioritizeLocalOperations bool     `json:"prioritizeLocalOperations"`
	QueueRemoteOperations     bool     `json:"queueRemoteOperations"`
	Since                     int64    `json:"since"` // Unix ms
}

// incident is one open partition: every node.down sharing a correlationId.
// It ends when every one of its nodes is up.
type incident struct {
	// IsolatedNodes are the nodes still cut off.
	IsolatedNodes []string `json:"isolatedNodes"`
	// Up are the nodes whose node.up has taken effect: a late node.down of
	// the incident naming them in affectedNodes does not isolate them again.
	Up                        []string `json:"up,omitempty"`
	Since                     int64    `json:"since"`
	PrioritizeLocalOperations bool     `json:"prioritizeLocalOperations"`
	QueueRemoteOperations     bool     `json:"queueRemoteOperations"`
}

type ended struct {
	ID    string `json:"id"`
	Since int64  `json:"since"`
}

type state struct {
	Incidents map[string]incident `json:"incidents"`
	// Resolved lists recently ended incidents, oldest first.
	Resolved []ended `json:"resolved"`
}

// PartitionMode tells an application that part of it is cut off, so it
// can favour local work and queue what needs the other side.
type PartitionMode struct {
	version string
	// mu serialises the read-modify-write of the state: the node.down events
	// of one incident arrive concurrently, one per node.
	mu sync.Mutex
}

// New returns the action; version is reported by Describe.
func New(version string) *PartitionMode { return &PartitionMode{version: version} }

var _ sdk.Action = (*PartitionMode)(nil)

// Describe names the plugin and its parameters.
func (p *PartitionMode) Describe(context.Context, *sdk.DescribeRequest) (*sdk.DescribeResponse, error) {
	return &sdk.DescribeResponse{
		Name:    "partition-mode",
		Version: p.version,
		Params: []sdk.Param{
			{Name: "prioritizeLocalOperations", Description: "tell nodes to favour work that stays on their side (default true)"},
			{Name: "queueRemoteOperations", Description: "tell nodes to queue work that needs the other side (default true)"},
		},
	}, nil
}

type config struct{ prioritize, queue bool }

func parseConfig(with map[string]any) (config, error) {
	if err := params.Check(with, "prioritizeLocalOperations", "queueRemoteOperations"); err != nil {
		return config{}, err
	}
	pr, err := params.Bool(with, "prioritizeLocalOperations", true)
	if err != nil {
		return config{}, err
	}
	q, err := params.Bool(with, "queueRemoteOperations", true)
	if err != nil {
		return config{}, err
	}
	return config{pr, q}, nil
}

// Execute adds the nodes of a node.down to the partition mode and publishes
// it. Repeats, and the other node.down events of the same incident, merge.
func (p *PartitionMode) Execute(ctx context.Context, req *sdk.ExecuteRequest) (*sdk.ExecuteResponse, error) {
	cfg, err := p.check(req)
	if err != nil {
		return nil, err
	}
	if req.Event.Type != events.TypeNodeDown {
		return nil, sdk.Permanent(fmt.Errorf("partition-mode: acts on %s events, not %q (event %s)", events.TypeNodeDown, req.Event.Type, req.Event.Context.ID))
	}
	var down events.NodeDown
	if err := req.Event.Decode(&down); err != nil {
		return nil, sdk.Permanent(fmt.Errorf("partition-mode: event %s: %w", req.Event.Context.ID, err))
	}
	nodes := nodesOf(down)
	if len(nodes) == 0 {
		return nil, sdk.Permanent(fmt.Errorf("partition-mode: event %s names no node", req.Event.Context.ID))
	}
	id := incidentID(req.Event)

	p.mu.Lock()
	defer p.mu.Unlock()
	st, err := loadState(ctx, req.Host)
	if err != nil {
		return nil, err
	}
	if slices.ContainsFunc(st.Resolved, func(e ended) bool { return e.ID == id }) {
		return &sdk.ExecuteResponse{Message: fmt.Sprintf("incident %s has already ended; mode unchanged", id)}, nil
	}
	inc, seen := st.Incidents[id]
	if !seen || req.Event.Context.Timestamp < inc.Since {
		inc.Since = req.Event.Context.Timestamp
	}
	inc.IsolatedNodes = nodeset.Without(nodeset.Union(inc.IsolatedNodes, nodes), inc.Up)
	inc.PrioritizeLocalOperations, inc.QueueRemoteOperations = cfg.prioritize, cfg.queue
	st.Incidents[id] = inc

	if err := saveState(ctx, req.Host, st); err != nil {
		return nil, err
	}
	mode := st.mode()
	if err := apply(ctx, req.Host, mode); err != nil {
		return nil, err
	}
	return &sdk.ExecuteResponse{Message: fmt.Sprintf("partition mode active: %s isolated", strings.Join(mode.IsolatedNodes, ", "))}, nil
}

// Undo takes the node of a node.up out of its incident and publishes what
// remains. A group incident can end node by node (a node whose consumer was
// deleted, or that a higher-priority rule took over, ends alone), so the
// incident stays open, still active, until its last node is up; then it
// ends, and the mode is inactive unless another partition is still open.
//
// The state is saved only once the mode is out, so a retried Undo finds its
// node already up only when the directive was published: it publishes
// nothing more. A retry after a failure publishes the same mode again.
func (p *PartitionMode) Undo(ctx context.Context, req *sdk.ExecuteRequest) (*sdk.ExecuteResponse, error) {
	cfg, err := p.check(req)
	if err != nil {
		return nil, err
	}
	if req.Event.Type != events.TypeNodeUp {
		return nil, sdk.Permanent(fmt.Errorf("partition-mode: resolves on %s events, not %q (event %s)", events.TypeNodeUp, req.Event.Type, req.Event.Context.ID))
	}
	var up events.NodeUp
	if err := req.Event.Decode(&up); err != nil {
		return nil, sdk.Permanent(fmt.Errorf("partition-mode: event %s: %w", req.Event.Context.ID, err))
	}
	node := up.NodeID
	if node == "" && req.Down.Type == events.TypeNodeDown {
		var d events.NodeDown
		if req.Down.Decode(&d) == nil {
			node = d.NodeID
		}
	}
	id := incidentID(req.Down)
	if req.Down.Context.ID == "" {
		id = incidentID(req.Event)
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	st, err := loadState(ctx, req.Host)
	if err != nil {
		return nil, err
	}
	inc, open := st.Incidents[id]
	switch {
	case open && node != "" && slices.Contains(inc.Up, node):
		return &sdk.ExecuteResponse{Message: fmt.Sprintf("node %s of incident %s already up; mode unchanged", node, id)}, nil
	case !open && slices.ContainsFunc(st.Resolved, func(e ended) bool { return e.ID == id }):
		// A retry of the node.up that ended the incident, which went out.
		return &sdk.ExecuteResponse{Message: fmt.Sprintf("incident %s already ended; mode unchanged", id)}, nil
	}

	since := req.Down.Context.Timestamp
	over := false
	if open {
		since = inc.Since
		if node == "" {
			// A node.up naming no node: nothing tells which part healed,
			// so the incident ends as a whole.
			inc.IsolatedNodes = nil
		} else {
			inc.Up = nodeset.Union(inc.Up, []string{node})
			inc.IsolatedNodes = nodeset.Without(inc.IsolatedNodes, inc.Up)
		}
		if over = len(inc.IsolatedNodes) == 0; over {
			delete(st.Incidents, id)
			st.Resolved = append(st.Resolved, ended{ID: id, Since: since})
			if n := len(st.Resolved); n > keepResolved {
				st.Resolved = slices.Clone(st.Resolved[n-keepResolved:])
			}
		} else {
			st.Incidents[id] = inc
		}
	}
	// With no open incident (its node.down never took effect here), the
	// current mode is published again, as it is.
	mode := st.mode()
	if !mode.Active {
		mode.Since = since
		mode.PrioritizeLocalOperations, mode.QueueRemoteOperations = cfg.prioritize, cfg.queue
	}
	if err := apply(ctx, req.Host, mode); err != nil {
		return nil, err
	}
	if open {
		if err := saveState(ctx, req.Host, st); err != nil {
			return nil, err
		}
	}
	what := fmt.Sprintf("incident %s ended", id)
	if open && !over {
		what = fmt.Sprintf("node %s of incident %s up, %s still cut off", node, id, strings.Join(inc.IsolatedNodes, ", "))
	}
	if mode.Active {
		return &sdk.ExecuteResponse{Message: fmt.Sprintf("%s; partition mode still active: %s isolated", what, strings.Join(mode.IsolatedNodes, ", "))}, nil
	}
	return &sdk.ExecuteResponse{Message: what + "; partition mode inactive"}, nil
}

func (p *PartitionMode) check(req *sdk.ExecuteRequest) (config, error) {
	if req.Host == nil {
		return config{}, sdk.Permanent(errors.New("partition-mode: no host in request"))
	}
	cfg, err := parseConfig(req.With)
	if err != nil {
		return config{}, sdk.Permanent(fmt.Errorf("partition-mode: %w", err))
	}
	return cfg, nil
}

// mode is the union of the open incidents: every isolated node, the
// earliest start, and a behaviour asked for by any of them.
func (s *state) mode() Mode {
	m := Mode{IsolatedNodes: []string{}}
	for _, inc := range s.Incidents {
		m.IsolatedNodes = nodeset.Union(m.IsolatedNodes, inc.IsolatedNodes)
		if !m.Active || inc.Since < m.Since {
			m.Since = inc.Since
		}
		m.Active = true
		m.PrioritizeLocalOperations = m.PrioritizeLocalOperations || inc.PrioritizeLocalOperations
		m.QueueRemoteOperations = m.QueueRemoteOperations || inc.QueueRemoteOperations
	}
	return m
}

// apply stores the mode first, so a node that reconnects after seeing the
// directive never reads an older mode.
func apply(ctx context.Context, h sdk.Host, m Mode) error {
	data, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("partition-mode: encode mode: %w", err)
	}
	if err := h.KVPut(ctx, ModesBucket, ModeKey, data); err != nil {
		return fmt.Errorf("partition-mode: store mode in %s/%s: %w", ModesBucket, ModeKey, err)
	}
	if err := h.Publish(ctx, Subject, data); err != nil {
		return fmt.Errorf("partition-mode: publish mode on %s: %w", Subject, err)
	}
	return nil
}

func loadState(ctx context.Context, h sdk.Host) (*state, error) {
	raw, found, err := h.KVGet(ctx, StateBucket, StateKey)
	if err != nil {
		return nil, fmt.Errorf("partition-mode: read %s/%s: %w", StateBucket, StateKey, err)
	}
	st := &state{}
	if found {
		if err := json.Unmarshal(raw, st); err != nil {
			return nil, fmt.Errorf("partition-mode: decode %s/%s: %w", StateBucket, StateKey, err)
		}
	}
	if st.Incidents == nil {
		st.Incidents = map[string]incident{}
	}
	return st, nil
}

func saveState(ctx context.Context, h sdk.Host, st *state) error {
	data, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("partition-mode: encode state: %w", err)
	}
	if err := h.KVPut(ctx, StateBucket, StateKey, data); err != nil {
		return fmt.Errorf("partition-mode: write %s/%s: %w", StateBucket, StateKey, err)
	}
	return nil
}

// incidentID is the correlationId shared by every event of an incident, or
// the event's own id when it has none.
func incidentID(e events.Envelope) string {
	if e.Context.CorrelationID != "" {
		return e.Context.CorrelationID
	}
	return e.Context.ID
}

func nodesOf(d events.NodeDown) []string {
	nodes := slices.Clone(d.AffectedNodes)
	if d.NodeID != "" {
		nodes = append(nodes, d.NodeID)
	}
	return nodeset.Union(nil, nodes)
}
