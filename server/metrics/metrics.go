// Package metrics is Hearth's operational telemetry in the Prometheus
// format (github.com/prometheus/client_golang): HTTP requests by route and
// status with their latency, the latency of every store operation, bearer
// token checks, the progress of seeding and imports, and the Go runtime.
// Labels are route patterns and operation names, never ids or values: no
// PHI reaches a metric.
package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics is one process's collectors, in their own registry.
type Metrics struct {
	// The children of the vectors, resolved once per label set: looking
	// them up by label values on every request cost a tenth of a cheap
	// read's time.
	requestChildren sync.Map // requestKey → requestChild
	storeChildren   sync.Map // op → prometheus.Observer
	tokenChildren   map[string]prometheus.Counter

	reg        *prometheus.Registry
	requests   *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	storeOps   *prometheus.HistogramVec
	storeErrs  *prometheus.CounterVec
	tokens     *prometheus.CounterVec
	loaded     *prometheus.GaugeVec
	loadedFrac *prometheus.GaugeVec
}

// New registers Hearth's collectors and the Go runtime and process ones.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearth_http_requests_total", Help: "HTTP requests answered, by route pattern, method and status.",
		}, []string{"route", "method", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "hearth_http_request_duration_seconds", Help: "Time to answer HTTP requests, by route pattern and method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route", "method"}),
		storeOps: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "hearth_store_operation_duration_seconds", Help: "Time of store operations, by operation.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5},
		}, []string{"op"}),
		storeErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearth_store_operation_errors_total", Help: "Store operations that failed for another reason than not found, by operation.",
		}, []string{"op"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearth_token_checks_total", Help: "Bearer token checks, by result (valid, invalid, unavailable).",
		}, []string{"result"}),
		loaded: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hearth_load_resources", Help: "Resources loaded so far by a running load (seed or import).",
		}, []string{"load"}),
		loadedFrac: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hearth_load_progress_ratio", Help: "Share of its input a load (seed or import) has read, 0 to 1.",
		}, []string{"load"}),
	}
	m.tokenChildren = map[string]prometheus.Counter{}
	for _, r := range []string{"valid", "invalid", "unavailable"} {
		m.tokenChildren[r] = m.tokens.WithLabelValues(r)
	}
	m.reg.MustRegister(m.requests, m.latency, m.storeOps, m.storeErrs, m.tokens, m.loaded, m.loadedFrac,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

type requestKey struct {
	route, method string
	status        int
}

type requestChild struct {
	count   prometheus.Counter
	latency prometheus.Observer
}

// Request records one answered request.
func (m *Metrics) Request(route, method string, status int, d time.Duration) {
	if m == nil {
		return
	}
	k := requestKey{route, method, status}
	c, ok := m.requestChildren.Load(k)
	if !ok {
		c, _ = m.requestChildren.LoadOrStore(k, requestChild{
			count:   m.requests.WithLabelValues(route, method, strconv.Itoa(status)),
			latency: m.latency.WithLabelValues(route, method),
		})
	}
	rc := c.(requestChild)
	rc.count.Inc()
	rc.latency.Observe(d.Seconds())
}

// TokenCheck records one bearer token check. (Its time is not measured:
// a check the second-long memory answers takes under a microsecond, and
// timing it cost more than that.)
func (m *Metrics) TokenCheck(result string) {
	if m == nil {
		return
	}
	if c, ok := m.tokenChildren[result]; ok {
		c.Inc()
	} else {
		m.tokens.WithLabelValues(result).Inc()
	}
}

// Load records the progress of a seed or import.
func (m *Metrics) Load(name string, loaded int, fraction float64) {
	if m == nil {
		return
	}
	m.loaded.WithLabelValues(name).Set(float64(loaded))
	m.loadedFrac.WithLabelValues(name).Set(fraction)
}

// storeOp records one store operation.
func (m *Metrics) storeOp(op string, start time.Time, failed bool) {
	o, ok := m.storeChildren.Load(op)
	if !ok {
		o, _ = m.storeChildren.LoadOrStore(op, m.storeOps.WithLabelValues(op))
	}
	o.(prometheus.Observer).Observe(time.Since(start).Seconds())
	if failed {
		m.storeErrs.WithLabelValues(op).Inc()
	}
}
