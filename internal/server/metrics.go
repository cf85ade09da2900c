package server

import (
	"bufio"
	"database/sql"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/notify"
	"github.com/gatehouse/gatehouse/internal/store"
)

// Metrics are the server's Prometheus metrics (client_golang, its own
// registry): requests by status class and route with their durations,
// load shedding, sign-in and second-factor outcomes, code deliveries, the
// mailer, the database pool, and the Go and process collectors (CPU and
// memory, which the load benchmark reads).
type Metrics struct {
	reg      *prometheus.Registry
	handler  http.Handler
	requests *prometheus.CounterVec
	byClass  [6]prometheus.Counter // requests' children by status / 100
	duration *prometheus.HistogramVec
	routes   sync.Map // route → prometheus.Observer: no label hashing per request
	shed     prometheus.Counter
	inFlight atomic.Int64
	events   *prometheus.CounterVec
	factors  *prometheus.CounterVec
	codes    *prometheus.CounterVec
}

// NewMetrics returns the metrics with the process-wide collectors.
func NewMetrics() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatehouse_http_requests_total", Help: "HTTP requests served, by status class.",
	}, []string{"code"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "gatehouse_http_request_duration_seconds", Help: "Time to serve a request, by route (the ServeMux pattern; unmatched for none).",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"route"})
	m.shed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "gatehouse_http_requests_shed_total", Help: "Requests answered 503 at once because too many were in flight.",
	})
	m.events = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatehouse_audit_events_total", Help: "Audit events recorded, by type (login.success, login.failure, two_factor.lockout, …).",
	}, []string{"type"})
	m.factors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatehouse_second_factor_checks_total", Help: "Second-factor answers checked, by method and result.",
	}, []string{"method", "result"})
	m.codes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatehouse_code_deliveries_total", Help: "One-time codes handed to a delivery, by channel, way (webhook, smtp) and result.",
	}, []string{"channel", "via", "result"})
	m.reg.MustRegister(m.requests, m.duration, m.shed, m.events, m.factors, m.codes,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gatehouse_http_requests_in_flight", Help: "Requests being served (counted against server.maxInFlight).",
		}, func() float64 { return float64(m.inFlight.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "process_resident_memory_peak_bytes", Help: "Peak resident set size (VmHWM).",
		}, func() float64 { _, peak, _ := procMemory(); return float64(peak) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	// Every status class exists from the start, so rates read 0, not gaps.
	for c := 1; c <= 5; c++ {
		m.byClass[c] = m.requests.WithLabelValues(strconv.Itoa(c) + "xx")
	}
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
	return m
}

func (m *Metrics) ServeHTTP(w http.ResponseWriter, r *http.Request) { m.handler.ServeHTTP(w, r) }

// observe counts a served request.
func (m *Metrics) observe(route string, status int, d time.Duration) {
	if c := status / 100; c >= 1 && c <= 5 {
		m.byClass[c].Inc()
	}
	if route == "" {
		route = "unmatched"
	}
	o, ok := m.routes.Load(route)
	if !ok {
		// Routes are the mux's patterns: a fixed, small set.
		o, _ = m.routes.LoadOrStore(route, m.duration.WithLabelValues(route))
	}
	o.(prometheus.Observer).Observe(d.Seconds())
}

// ObserveAudit counts an audit event (audit.Recorder.Observe). The labels
// it takes from an event's detail are the server's own words (methods,
// channels), bounded by labelValue.
func (m *Metrics) ObserveAudit(e store.AuditEvent) {
	m.events.WithLabelValues(labelValue(e.Type)).Inc()
	switch e.Type {
	case audit.TwoFactorSuccess:
		m.factors.WithLabelValues(labelValue(e.Detail["method"]), "success").Inc()
	case audit.TwoFactorFailure:
		m.factors.WithLabelValues(labelValue(e.Detail["method"]), "failure").Inc()
	case audit.CodeSent:
		result := "failed"
		if e.Detail["delivered"] == "true" {
			result = "delivered"
		}
		m.codes.WithLabelValues(labelValue(e.Detail["channel"]), labelValue(e.Detail["via"]), result).Inc()
	}
}

// labelValue keeps a label to a short word of [a-z0-9._-]: anything else
// (a custom factor's odd name) is "other", so no input grows the series.
func labelValue(s string) string {
	if s == "" {
		return "none"
	}
	if len(s) > 40 {
		return "other"
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return "other"
		}
	}
	return s
}

// AddMailer exports the mailer's counters.
func (m *Metrics) AddMailer(mailer *notify.Mailer) {
	counter := func(name, help string, v func(notify.MailStats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(v(mailer.Stats())) })
	}
	m.reg.MustRegister(
		counter("gatehouse_mail_sent_total", "E-mails accepted by the SMTP server.", func(s notify.MailStats) uint64 { return s.Sent }),
		counter("gatehouse_mail_failures_total", "Failed SMTP delivery attempts.", func(s notify.MailStats) uint64 { return s.Failed }),
		counter("gatehouse_mail_retries_total", "SMTP delivery attempts that were retries.", func(s notify.MailStats) uint64 { return s.Retried }),
		counter("gatehouse_mail_dropped_total", "E-mails given up on (retries exhausted, refused or queue full).", func(s notify.MailStats) uint64 { return s.Dropped }),
	)
}

// AddChangeFeed exports whether the store's change feed hears every
// process's writes (WatchChanges): while it does not, cached clients and
// policies live one second.
func (m *Metrics) AddChangeFeed(heard func() bool) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "gatehouse_change_feed_heard", Help: "1 while the database's change feed (PostgreSQL LISTEN/NOTIFY) is heard, else 0.",
	}, func() float64 {
		if heard() {
			return 1
		}
		return 0
	}))
}

// AddDB exports the database pool's figures (open, in use, idle, waits).
func (m *Metrics) AddDB(db *sql.DB) {
	m.reg.MustRegister(collectors.NewDBStatsCollector(db, "gatehouse"))
}

// procMemory reads VmRSS and VmHWM from /proc/self/status (Linux).
func procMemory() (rss, peak uint64, ok bool) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		for _, want := range []struct {
			prefix string
			dst    *uint64
		}{{"VmRSS:", &rss}, {"VmHWM:", &peak}} {
			if rest, found := strings.CutPrefix(line, want.prefix); found {
				kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
				if err == nil {
					*want.dst = kb * 1024
				}
			}
		}
	}
	return rss, peak, rss > 0
}
