package plugins

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the manager's Prometheus series.
type metrics struct {
	reg      prometheus.Registerer
	actions  *prometheus.CounterVec
	duration *prometheus.HistogramVec
	restarts *prometheus.CounterVec
	up       *prometheus.GaugeVec
	queued   prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		reg: reg,
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "happen_plugin_actions_total",
			Help: "Plugin actions by plugin and result (ok, failed, dropped, skipped).",
		}, []string{"plugin", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "happen_plugin_action_duration_seconds",
			Help:    "Time from an action's first attempt to its success or final failure.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"plugin"}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "happen_plugin_restarts_total",
			Help: "Plugin processes restarted after they died or stopped answering.",
		}, []string{"plugin"}),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "happen_plugin_up",
			Help: "1 while a plugin's process is running.",
		}, []string{"plugin"}),
		queued: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "happen_plugin_jobs_queued",
			Help: "Jobs waiting for their turn to run.",
		}),
	}
	if reg != nil {
		for i, c := range m.collectors() {
			if err := reg.Register(c); err != nil {
				for _, r := range m.collectors()[:i] {
					reg.Unregister(r)
				}
				return nil, fmt.Errorf("plugins: register metrics: %w", err)
			}
		}
	}
	return m, nil
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.actions, m.duration, m.restarts, m.up, m.queued}
}

// unregister lets a new manager register the same names on the registry.
func (m *metrics) unregister() {
	if m.reg == nil {
		return
	}
	for _, c := range m.collectors() {
		m.reg.Unregister(c)
	}
}
