package engine

import (
	"sync"
	"sync/atomic"

	"github.com/happen-dev/happen/engine/flow"
	"github.com/prometheus/client_golang/prometheus"
)

// nodeCollector exports the per-node series from the last tick's flow
// state when Prometheus scrapes, instead of keeping a gauge per node and
// series. Gauges held about 7.6 KB a node (label pairs, hashes and metric
// objects for eleven series: 76 MB at 10,000 nodes) and cost the tick
// about 5 ms to set, for values read once a scrape; the flow state holds
// every number already. docs/performance.md has the figures.
type nodeCollector struct {
	state atomic.Pointer[flow.State]

	mu   sync.Mutex
	lost map[flow.NodeKey]*lostCount // only nodes that ever lost a message

	waiting, ackRate, deliveryRate, lagGrowth, stalled, stallThreshold *prometheus.Desc
	timeLag, timeLagEstimated, toDrain, toLoss, lostTotal              *prometheus.Desc
}

// lostCount keeps happen_node_messages_lost_total monotonic: the tracker's
// count starts again with a recreated consumer, the counter only adds.
type lostCount struct {
	seen  int // the tracker's count already added
	total float64
}

var nodeLabels = []string{"stream", "consumer", "node", "group"}

func newNodeCollector() *nodeCollector {
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nodeLabels, nil) }
	return &nodeCollector{
		lost:           map[flow.NodeKey]*lostCount{},
		waiting:        d("happen_node_messages_waiting", "Messages a node has not finished (pending + ack pending)."),
		ackRate:        d("happen_node_ack_rate", "Acks per second over the window."),
		deliveryRate:   d("happen_node_delivery_rate", "Deliveries per second over the window."),
		lagGrowth:      d("happen_node_lag_growth_rate", "Slope of messages waiting, messages per second."),
		stalled:        d("happen_node_stalled", "1 while a node has work waiting and makes no progress."),
		stallThreshold: d("happen_node_stall_threshold_seconds", "How long a node may be silent while work waits before it is stalled, from its learned ack cadence."),
		timeLag:        d("happen_node_time_lag_seconds", "Age of the oldest message a node has not finished; 0 when nothing waits."),
		timeLagEstimated: d("happen_node_time_lag_estimated",
			"1 when the time lag was interpolated from the stream's publish times rather than read from the stream."),
		toDrain: d("happen_node_seconds_to_drain",
			"Seconds until what a node has waiting is finished at the current rates; -1 while its backlog does not shrink."),
		toLoss: d("happen_node_seconds_to_loss",
			"Seconds until the stream's limits remove messages a node has not been delivered, at the current rates; 0 while they do, -1 when no loss is in sight."),
		lostTotal: d("happen_node_messages_lost_total", "Messages the stream's limits removed before a node was delivered them."),
	}
}

// observe keeps st for the next scrape and adds new losses to the counters.
func (c *nodeCollector) observe(st *flow.State) {
	c.state.Store(st)
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range st.Nodes {
		n := &st.Nodes[i]
		l := c.lost[n.Key]
		if l == nil {
			if n.MessagesLost == 0 {
				continue
			}
			l = &lostCount{}
			c.lost[n.Key] = l
		}
		if n.MessagesLost > l.seen {
			l.total += float64(n.MessagesLost - l.seen)
		}
		l.seen = n.MessagesLost
	}
	for _, k := range st.Left {
		delete(c.lost, k)
	}
}

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.waiting, c.ackRate, c.deliveryRate, c.lagGrowth, c.stalled,
		c.stallThreshold, c.timeLag, c.timeLagEstimated, c.toDrain, c.toLoss, c.lostTotal} {
		ch <- d
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.state.Load()
	if st == nil {
		return
	}
	c.mu.Lock()
	lost := make(map[flow.NodeKey]float64, len(c.lost))
	for k, l := range c.lost {
		lost[k] = l.total
	}
	c.mu.Unlock()
	for i := range st.Nodes {
		n := &st.Nodes[i]
		lv := []string{n.Stream, n.Consumer, n.ID, n.Group}
		g := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, lv...)
		}
		g(c.waiting, float64(n.MessagesWaiting))
		g(c.ackRate, n.AckRate)
		g(c.deliveryRate, n.DeliveryRate)
		g(c.lagGrowth, n.LagGrowthRate)
		g(c.stalled, b2f(n.Stalled))
		g(c.stallThreshold, n.StallThreshold)
		g(c.timeLag, n.TimeLagSeconds)
		g(c.timeLagEstimated, b2f(n.TimeLagEstimated))
		g(c.toDrain, n.SecondsToDrain)
		g(c.toLoss, n.SecondsToLoss)
		ch <- prometheus.MustNewConstMetric(c.lostTotal, prometheus.CounterValue, lost[n.Key], lv...)
	}
}
