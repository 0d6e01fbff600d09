package webview

import (
	"fmt"
	"strings"

	"github.com/happen-dev/happen/sdk/events"
)

// eventView is one event as the page lists it: the fields worth a line,
// never a payload's full node list (an overload names every node).
type eventView struct {
	ID          string `json:"id"`
	Type        string `json:"type"`
	At          int64  `json:"at"` // Unix ms
	Node        string `json:"node,omitempty"`
	Pattern     string `json:"pattern,omitempty"`
	Rule        string `json:"rule,omitempty"`
	Level       string `json:"level,omitempty"`
	Affected    int    `json:"affected,omitempty"`
	Detail      string `json:"detail,omitempty"`
	Correlation string `json:"correlationId,omitempty"`
}

// payload holds the fields of every event type that a line shows.
type payload struct {
	NodeID          string   `json:"nodeId"`
	Pattern         string   `json:"pattern"`
	Rule            string   `json:"rule"`
	Level           string   `json:"level"`
	AffectedNodes   []string `json:"affectedNodes"`
	DownSeconds     float64  `json:"downSeconds"`
	Reason          string   `json:"reason"`
	Files           []string `json:"files"`
	Rules           int      `json:"rules"`
	File            string   `json:"file"`
	Errors          []string `json:"errors"`
	Plugin          string   `json:"plugin"`
	Action          string   `json:"action"`
	Error           string   `json:"error"`
	ServersSeen     int      `json:"serversSeen"`
	ServersKnown    int      `json:"serversKnown"`
	IsolatedSeconds float64  `json:"isolatedSeconds"`
	LagMetrics      *struct {
		MessagesWaiting int `json:"messagesWaiting"`
	} `json:"lagMetrics"`
}

func newEventView(env events.Envelope) eventView {
	ev := eventView{ID: env.Context.ID, Type: env.Type, At: env.Context.Timestamp, Correlation: env.Context.CorrelationID}
	var p payload
	if err := env.Decode(&p); err != nil {
		ev.Detail = "unreadable payload: " + err.Error()
		return ev
	}
	ev.Node, ev.Pattern, ev.Rule, ev.Level = p.NodeID, p.Pattern, p.Rule, p.Level
	ev.Affected = len(p.AffectedNodes)
	switch env.Type {
	case events.TypeNodeDown:
		if p.LagMetrics != nil {
			ev.Detail = fmt.Sprintf("%d waiting", p.LagMetrics.MessagesWaiting)
		}
	case events.TypeSystemDown:
		ev.Detail = fmt.Sprintf("%d nodes affected", len(p.AffectedNodes))
	case events.TypeNodeUp, events.TypeSystemUp:
		ev.Detail = fmt.Sprintf("after %.1fs", p.DownSeconds)
		if p.Reason != "" {
			ev.Detail += " (" + p.Reason + ")"
		}
	case events.TypeRulesReloaded:
		ev.Detail = fmt.Sprintf("%d rules from %s", p.Rules, strings.Join(p.Files, ", "))
	case events.TypeRulesRejected:
		ev.Detail = strings.Join(p.Errors, "; ")
		if ev.Detail == "" {
			ev.Detail = p.File
		}
	case events.TypeActionFailed:
		ev.Detail = fmt.Sprintf("%s %s: %s", p.Plugin, p.Action, p.Error)
	case events.TypeEngineIsolated:
		ev.Detail = fmt.Sprintf("sees %d of %d servers: %s", p.ServersSeen, p.ServersKnown, p.Reason)
	case events.TypeEngineRejoined:
		ev.Detail = fmt.Sprintf("after %.1fs cut off", p.IsolatedSeconds)
	}
	return ev
}
