package main

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/happen-dev/happen/plugins/internal/nodeset"
	"github.com/happen-dev/happen/sdk/events"
)

// Formats of the webhook body.
const (
	FormatJSON         = "json"
	FormatSlack        = "slack"
	FormatAlertmanager = "alertmanager"
)

// incident is what every format needs to know about one alert, read from
// the down event and, on resolve, the up event.
type incident struct {
	rule     string
	pattern  string
	level    string
	system   bool
	nodeID   string
	upNode   string // on resolve, the node of the node.up
	group    string
	affected []string // sorted, distinct; for a node event includes nodeID
	node     *events.LagMetrics
	metrics  *events.SystemMetrics
	start    time.Time // the down event's time
	// Set on resolve.
	resolved    bool
	end         time.Time
	downSeconds float64
	reason      string
}

// readIncident decodes the events of a request. down is the down event;
// ev is the event at hand (equal to down on fire).
func readIncident(rule string, ev, down events.Envelope, resolve bool) (*incident, error) {
	inc := &incident{rule: rule, start: time.UnixMilli(down.Context.Timestamp).UTC(), resolved: resolve}
	switch down.Type {
	case events.TypeNodeDown:
		var d events.NodeDown
		if err := down.Decode(&d); err != nil {
			return nil, err
		}
		if d.NodeID == "" {
			return nil, fmt.Errorf("node.down %s names no node", down.Context.ID)
		}
		inc.pattern, inc.level, inc.nodeID, inc.group = d.Pattern, d.Level, d.NodeID, d.Group
		inc.affected = nodeset.Union(d.AffectedNodes, []string{d.NodeID})
		m := d.LagMetrics
		inc.node = &m
		inc.rule = firstNonEmpty(inc.rule, d.Rule)
	case events.TypeSystemDown:
		var d events.SystemDown
		if err := down.Decode(&d); err != nil {
			return nil, err
		}
		inc.system = true
		inc.pattern, inc.level = d.Pattern, d.Level
		inc.affected = nodeset.Union(d.AffectedNodes, nil)
		m := d.Metrics
		inc.metrics = &m
		inc.rule = firstNonEmpty(inc.rule, d.Rule)
	default:
		return nil, fmt.Errorf("down event %s is a %q, not a node or system down", down.Context.ID, down.Type)
	}
	if !resolve {
		return inc, nil
	}
	inc.end = time.UnixMilli(ev.Context.Timestamp).UTC()
	switch ev.Type {
	case events.TypeNodeUp:
		var u events.NodeUp
		if err := ev.Decode(&u); err != nil {
			return nil, err
		}
		inc.downSeconds, inc.reason = u.DownSeconds, u.Reason
		inc.upNode = firstNonEmpty(u.NodeID, inc.nodeID)
		inc.nodeID = firstNonEmpty(inc.nodeID, u.NodeID)
		inc.pattern = firstNonEmpty(inc.pattern, u.Pattern)
	case events.TypeSystemUp:
		var u events.SystemUp
		if err := ev.Decode(&u); err != nil {
			return nil, err
		}
		inc.downSeconds, inc.reason = u.DownSeconds, u.Reason
		inc.pattern = firstNonEmpty(inc.pattern, u.Pattern)
	default:
		return nil, fmt.Errorf("resolve event %s is a %q, not a node or system up", ev.Context.ID, ev.Type)
	}
	return inc, nil
}

// subject names what is in trouble, e.g. "orders-eu-1 (group eu)" or
// "group eu: eu-1, eu-2 cut off".
func (inc *incident) subject() string {
	switch {
	case inc.system:
		return "the system"
	case len(inc.affected) > 1:
		g := ""
		if inc.group != "" {
			g = "group " + inc.group + ": "
		}
		return fmt.Sprintf("%s%d nodes (%s)", g, len(inc.affected), strings.Join(inc.affected, ", "))
	case inc.group != "":
		return fmt.Sprintf("%s (group %s)", inc.nodeID, inc.group)
	default:
		return inc.nodeID
	}
}

// summary is one line: what, where, which rule.
func (inc *incident) summary() string {
	if inc.resolved {
		s := fmt.Sprintf("%s on %s resolved", inc.pattern, inc.subject())
		if inc.downSeconds > 0 {
			s += " after " + (time.Duration(inc.downSeconds * float64(time.Second))).Round(time.Second).String()
		}
		if inc.reason != "" {
			s += " (" + inc.reason + ")"
		}
		return s + " [rule " + inc.rule + "]"
	}
	return fmt.Sprintf("%s on %s [rule %s]", inc.pattern, inc.subject(), inc.rule)
}

// details are the key metrics at the time of the down event.
func (inc *incident) details() string {
	if m := inc.metrics; m != nil {
		s := fmt.Sprintf("%d of %d nodes lagging, %d messages waiting, publishing %s/s (usual %s/s)",
			m.LaggingNodes, m.Nodes, m.MessagesWaiting, num(m.PublishRate), num(m.PublishRateBaseline))
		if len(inc.affected) > 0 {
			s += "; affected: " + strings.Join(inc.affected, ", ")
		}
		return s
	}
	if m := inc.node; m != nil {
		return fmt.Sprintf("%s: %d messages waiting (%d pending, %d unacked), ack rate %s/s, lag growing %s/s, last ack %ss ago",
			inc.nodeID, m.MessagesWaiting, m.NumPending, m.AckPending, num(m.AckRate), num(m.LagGrowthRate), num(m.SecondsSinceLastAck))
	}
	return ""
}

func (inc *incident) slackText() string {
	if inc.resolved {
		return "[RESOLVED] " + inc.summary()
	}
	return fmt.Sprintf("[%s] %s: %s", strings.ToUpper(inc.level), inc.summary(), inc.details())
}

// amAlert is one Alertmanager v2 API alert (POST /api/v2/alerts).
type amAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     string            `json:"startsAt"`
	EndsAt       string            `json:"endsAt,omitempty"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// alertmanagerAlerts makes one alert per node in nodes, or one without a
// nodeId label for a system event. The labels are the same on fire and on
// resolve, so Alertmanager matches the resolve to its alert.
func (inc *incident) alertmanagerAlerts(nodes []string) []amAlert {
	ann := map[string]string{"summary": inc.summary(), "description": inc.details()}
	mk := func(node string) amAlert {
		labels := map[string]string{"alertname": inc.rule, "pattern": inc.pattern, "level": inc.level}
		if node != "" {
			labels["nodeId"] = node
		}
		a := amAlert{Labels: labels, Annotations: ann, StartsAt: inc.start.Format(time.RFC3339Nano)}
		if inc.resolved {
			a.EndsAt = inc.end.Format(time.RFC3339Nano)
		}
		return a
	}
	if inc.system {
		return []amAlert{mk("")}
	}
	out := make([]amAlert, 0, len(nodes))
	for _, n := range nodes {
		out = append(out, mk(n))
	}
	return out
}

func slackBody(text string) ([]byte, error) {
	return json.Marshal(struct {
		Text string `json:"text"`
	}{text})
}

// num prints a rate briefly: at most two decimals, none when whole.
func num(f float64) string { return strconv.FormatFloat(math.Round(f*100)/100, 'f', -1, 64) }

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
