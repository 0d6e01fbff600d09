package engine

import (
	"github.com/happen-dev/happen/engine/flow"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the engine's Prometheus series, every name prefixed happen_.
type metrics struct {
	samples       *prometheus.CounterVec
	sampleSeconds prometheus.Histogram
	evaluations   prometheus.Counter
	ruleErrors    *prometheus.CounterVec
	events        *prometheus.CounterVec
	publishErrors prometheus.Counter
	reloads       *prometheus.CounterVec
	rulesLoaded   prometheus.Gauge
	blind         prometheus.Gauge
	isolated      prometheus.Gauge
	nodes         *prometheus.GaugeVec
	system        *prometheus.GaugeVec
	summaries     *prometheus.CounterVec

	perNode *nodeCollector // the happen_node_* series (nodemetrics.go)
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		samples: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "happen_samples_total", Help: "JetStream samples taken, by result (ok, error).",
		}, []string{"result"}),
		sampleSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "happen_sample_duration_seconds", Help: "Time to sample every stream and consumer once.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		evaluations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "happen_rule_evaluations_total", Help: "Rule evaluations (one per rule and node, group or system).",
		}),
		ruleErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "happen_rule_errors_total", Help: "Rule expressions that failed at run time, by rule.",
		}, []string{"rule"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "happen_events_total", Help: "Events published, by type.",
		}, []string{"type"}),
		publishErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "happen_event_publish_errors_total", Help: "Events that could not be handed to NATS.",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "happen_rule_reloads_total", Help: "Ruleset changes, by result (applied, rejected).",
		}, []string{"result"}),
		rulesLoaded: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "happen_rules", Help: "Rules in force.",
		}),
		blind: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "happen_blind", Help: "1 while the engine cannot sample JetStream.",
		}),
		isolated: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "happen_engine_isolated", Help: "1 while the engine's own NATS server is cut from its cluster.",
		}),
		nodes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "happen_nodes", Help: "Nodes by state (observed, unobserved, idle, stalled, lagging).",
		}, []string{"state"}),
		system: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "happen_system", Help: "System flow metrics (messages_waiting, publish_rate, publish_rate_baseline, ack_rate) and server signals (servers_down, servers_announced_down, routes_lost; with system access).",
		}, []string{"metric"}),
		summaries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "happen_summaries_published_total", Help: "Summaries of this engine's share of the streams sent for the leader, by result (ok, error); only when engines share the streams.",
		}, []string{"result"}),
		perNode: newNodeCollector(),
	}
	if reg != nil {
		reg.MustRegister(m.samples, m.sampleSeconds, m.evaluations, m.ruleErrors, m.events,
			m.publishErrors, m.reloads, m.rulesLoaded, m.blind, m.isolated, m.nodes, m.system, m.summaries, m.perNode)
	}
	return m
}

// observe hands the tick's flow state to the per-node series and updates
// the node counts and system gauges.
func (m *metrics) observe(st *flow.State) {
	m.perNode.observe(st)
	var stalled, lagging, idle int
	for i := range st.Nodes {
		n := &st.Nodes[i]
		if n.Idle {
			idle++
		}
		if n.Stalled {
			stalled++
		}
		if n.Lagging {
			lagging++
		}
	}
	m.nodes.WithLabelValues("observed").Set(float64(len(st.Nodes)))
	m.nodes.WithLabelValues("unobserved").Set(float64(len(st.Unobserved)))
	m.nodes.WithLabelValues("idle").Set(float64(idle))
	m.nodes.WithLabelValues("stalled").Set(float64(stalled))
	m.nodes.WithLabelValues("lagging").Set(float64(lagging))
	m.system.WithLabelValues("messages_waiting").Set(float64(st.System.MessagesWaiting))
	m.system.WithLabelValues("publish_rate").Set(st.System.PublishRate)
	m.system.WithLabelValues("publish_rate_baseline").Set(st.System.PublishRateBaseline)
	m.system.WithLabelValues("ack_rate").Set(st.System.AckRate)
	m.system.WithLabelValues("servers_down").Set(float64(st.System.ServersDown))
	m.system.WithLabelValues("servers_announced_down").Set(float64(st.System.ServersAnnouncedDown))
	m.system.WithLabelValues("routes_lost").Set(float64(st.System.RoutesLost))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
