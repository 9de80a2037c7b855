package proxyd

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the proxy's Prometheus metrics, on a registry of its own so
// several proxies can live in one test process.
type metrics struct {
	registry    *prometheus.Registry
	active      *prometheus.GaugeVec
	connections *prometheus.CounterVec
	bytes       *prometheus.CounterVec
	authFail    *prometheus.CounterVec
	tokenCache  *prometheus.CounterVec
	stsCalls    prometheus.Counter
	dialSeconds *prometheus.HistogramVec
	idle        prometheus.Gauge
	reused      *prometheus.CounterVec
	pending     prometheus.Gauge
	// signerFallback counts logins that went on to a fallback principal.
	signerFallback *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "rdsgate_proxy_connections_active",
			Help: "Client connections open now."}, []string{"database"}),
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rdsgate_proxy_connections_total",
			Help: "Client connections by outcome: ok, denied, auth_failed, backend_error, client_error, refused (at max_connections), refused_pending (at max_pending_logins)."}, []string{"database", "result"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rdsgate_proxy_bytes_total",
			Help: "Bytes relayed, by direction: to_database or to_client."}, []string{"database", "direction"}),
		authFail: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rdsgate_proxy_auth_failures_total",
			Help: "Logins refused, by reason: rbac, db_user, database_refused_token, no_client_certificate."}, []string{"database", "reason"}),
		tokenCache: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rdsgate_proxy_token_cache_total",
			Help: "IAM token requests served from the cache (hit) or signed (miss)."}, []string{"result"}),
		stsCalls: prometheus.NewCounter(prometheus.CounterOpts{Name: "rdsgate_proxy_sts_calls_total",
			Help: "sts:AssumeRole calls made to refresh role credentials."}),
		dialSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "rdsgate_proxy_backend_dial_seconds",
			Help:    "Time to connect to a database: TCP, TLS and login.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}, []string{"database"}),
		idle: prometheus.NewGauge(prometheus.GaugeOpts{Name: "rdsgate_proxy_idle_server_connections",
			Help: "Reusable PostgreSQL server connections kept idle (reuse_connections)."}),
		reused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rdsgate_proxy_reused_server_connections_total",
			Help: "Client connections served with a kept server connection."}, []string{"database"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "rdsgate_proxy_pending_logins",
			Help: "Client connections that have not logged in yet (bounded by max_pending_logins)."}),
		signerFallback: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rdsgate_proxy_signer_fallbacks_total",
			Help: "Logins the database refused with the token of one principal and that went on to the next of fallback_role_arns (while an apply moves a database between shard roles)."}, []string{"database"}),
	}
	m.registry.MustRegister(m.signerFallback, m.active, m.connections, m.bytes, m.authFail, m.tokenCache, m.stsCalls, m.dialSeconds, m.idle, m.reused, m.pending,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
