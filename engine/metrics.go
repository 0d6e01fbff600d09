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

	waiting, ackRate, deliveryRate, lagGrowth, stalled, stallThreshold *prometheus.GaugeVec
	timeLag, timeLagEstimated, toDrain, toLoss                         *prometheus.GaugeVec
	lost                                                               *prometheus.CounterVec
	perNode                                                            map[flow.NodeKey]*nodeGauges
}

type nodeGauges struct {
	waiting, ackRate, deliveryRate, lagGrowth, stalled, stallThreshold prometheus.Gauge
	timeLag, timeLagEstimated, toDrain, toLoss                         prometheus.Gauge
	lost                                                               prometheus.Counter
	lostSeen                                                           int    // the tracker's count already added to lost
	id, group                                                          string // label values, which metadata can change
}

var nodeLabels = []string{"stream", "consumer", "node", "group"}

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
			Name: "happen_system", Help: "System flow metrics (messages_waiting, publish_rate, publish_rate_baseline, ack_rate).",
		}, []string{"metric"}),
		waiting: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "happen_node_messages_waiting", Help: "Messages a node has not finished (pending + ack pending).",
		}, nodeLabels),
		ackRate: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "happen_node_ack_rate", Help: "Acks per second over the window.",
		}, nodeLabels),
		deliveryRate: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "happen_node_delivery_rate", Help: "Deliveries per second over the window.",
		}, nodeLabels),
		lagGrowth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "happen_node_lag_growth_rate", Help: "Slope of messages waiting, messages per second.",
		}, nodeLabels),
		stalled: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "happen_node_stalled", Help: "1 while a node has work waiting and makes no progress.",
		}, nodeLabels),
		stallThreshold: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "happen_node_stall_threshold_seconds",
			Help: "How long a node may be silent while work waits before it is stalled, from its learned ack cadence.",
		}, nodeLabels),
		timeLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "happen_node_time_lag_seconds",
			Help: "Age of the oldest message a node has not finished; 0 when nothing waits.",
		}, nodeLabels),
		timeLagEstimated: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "happen_node_time_lag_estimated",
			Help: "1 when the time lag was interpolated from the stream's publish times rather than read from the stream.",
		}, nodeLabels),
		toDrain: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "happen_node_seconds_to_drain",
			Help: "Seconds until what a node has waiting is finished at the current rates; -1 while its backlog does not shrink.",
		}, nodeLabels),
		toLoss: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "happen_node_seconds_to_loss",
			Help: "Seconds until the stream's limits remove messages a node has not been delivered, at the current rates; 0 while they do, -1 when no loss is in sight.",
		}, nodeLabels),
		lost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "happen_node_messages_lost_total",
			Help: "Messages the stream's limits removed before a node was delivered them.",
		}, nodeLabels),
		perNode: map[flow.NodeKey]*nodeGauges{},
	}
	if reg != nil {
		reg.MustRegister(m.samples, m.sampleSeconds, m.evaluations, m.ruleErrors, m.events,
			m.publishErrors, m.reloads, m.rulesLoaded, m.blind, m.isolated, m.nodes, m.system,
			m.waiting, m.ackRate, m.deliveryRate, m.lagGrowth, m.stalled, m.stallThreshold,
			m.timeLag, m.timeLagEstimated, m.toDrain, m.toLoss, m.lost)
	}
	return m
}

// observe updates the per-node and system gauges. Gauge handles are cached
// per node so a tick costs no label hashing; series of nodes that left are
// deleted.
func (m *metrics) observe(st *flow.State) {
	var stalled, lagging, idle int
	for i := range st.Nodes {
		n := &st.Nodes[i]
		g := m.perNode[n.Key]
		if g != nil && (g.id != n.ID || g.group != n.Group) {
			m.forget(n.Key)
			g = nil
		}
		if g == nil {
			l := []string{n.Stream, n.Consumer, n.ID, n.Group}
			g = &nodeGauges{
				waiting: m.waiting.WithLabelValues(l...), ackRate: m.ackRate.WithLabelValues(l...),
				deliveryRate: m.deliveryRate.WithLabelValues(l...), lagGrowth: m.lagGrowth.WithLabelValues(l...),
				stalled: m.stalled.WithLabelValues(l...), stallThreshold: m.stallThreshold.WithLabelValues(l...),
				timeLag: m.timeLag.WithLabelValues(l...), timeLagEstimated: m.timeLagEstimated.WithLabelValues(l...),
				toDrain: m.toDrain.WithLabelValues(l...), toLoss: m.toLoss.WithLabelValues(l...),
				lost: m.lost.WithLabelValues(l...),
				id:   n.ID, group: n.Group,
			}
			m.perNode[n.Key] = g
		}
		g.waiting.Set(float64(n.MessagesWaiting))
		g.ackRate.Set(n.AckRate)
		g.deliveryRate.Set(n.DeliveryRate)
		g.lagGrowth.Set(n.LagGrowthRate)
		g.stalled.Set(b2f(n.Stalled))
		g.stallThreshold.Set(n.StallThreshold)
		g.timeLag.Set(n.TimeLagSeconds)
		g.timeLagEstimated.Set(b2f(n.TimeLagEstimated))
		g.toDrain.Set(n.SecondsToDrain)
		g.toLoss.Set(n.SecondsToLoss)
		// The tracker's count restarts with a recreated consumer; the
		// counter only ever adds what is new.
		if n.MessagesLost > g.lostSeen {
			g.lost.Add(float64(n.MessagesLost - g.lostSeen))
		}
		g.lostSeen = n.MessagesLost
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
	for _, k := range st.Left {
		m.forget(k)
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
}

func (m *metrics) forget(k flow.NodeKey) {
	if _, ok := m.perNode[k]; !ok {
		return
	}
	delete(m.perNode, k)
	match := prometheus.Labels{"stream": k.Stream, "consumer": k.Consumer}
	for _, v := range []*prometheus.GaugeVec{m.waiting, m.ackRate, m.deliveryRate, m.lagGrowth, m.stalled, m.stallThreshold,
		m.timeLag, m.timeLagEstimated, m.toDrain, m.toLoss} {
		v.DeletePartialMatch(match)
	}
	m.lost.DeletePartialMatch(match)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
