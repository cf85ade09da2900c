package server

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Metrics counts requests and reports process figures in the Prometheus
// text format. It is deliberately small: counters by status class and the
// memory figures the load benchmark reads (resident and peak resident set).
type Metrics struct {
	byClass  [6]atomic.Uint64 // index = status / 100
	duration atomic.Uint64    // total nanoseconds
	shed     atomic.Uint64    // requests refused past the in-flight bound
	inFlight atomic.Int64     // requests holding an in-flight slot
	started  time.Time
	// Extra write more counters (the mailer's) after the request counters.
	Extra []func(io.Writer)
}

// NewMetrics returns an empty set of counters.
func NewMetrics() *Metrics { return &Metrics{started: time.Now()} }

func (m *Metrics) observe(status int, d time.Duration) {
	c := status / 100
	if c < 1 || c > 5 {
		c = 0
	}
	m.byClass[c].Add(1)
	m.duration.Add(uint64(d))
}

func (m *Metrics) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	var b strings.Builder
	b.WriteString("# HELP gatehouse_http_requests_total HTTP requests served, by status class.\n# TYPE gatehouse_http_requests_total counter\n")
	for c := 1; c <= 5; c++ {
		fmt.Fprintf(&b, "gatehouse_http_requests_total{code=\"%dxx\"} %d\n", c, m.byClass[c].Load())
	}
	fmt.Fprintf(&b, "# TYPE gatehouse_http_request_duration_seconds_sum counter\ngatehouse_http_request_duration_seconds_sum %g\n", float64(m.duration.Load())/1e9)
	fmt.Fprintf(&b, "# HELP gatehouse_http_requests_shed_total Requests answered 503 at once because too many were in flight.\n# TYPE gatehouse_http_requests_shed_total counter\ngatehouse_http_requests_shed_total %d\n", m.shed.Load())
	fmt.Fprintf(&b, "# HELP gatehouse_http_requests_in_flight Requests being served (counted against server.maxInFlight).\n# TYPE gatehouse_http_requests_in_flight gauge\ngatehouse_http_requests_in_flight %d\n", m.inFlight.Load())
	for _, f := range m.Extra {
		f(&b)
	}
	fmt.Fprintf(&b, "# TYPE go_goroutines gauge\ngo_goroutines %d\n", runtime.NumGoroutine())
	if rss, peak, ok := procMemory(); ok {
		fmt.Fprintf(&b, "# HELP process_resident_memory_bytes Resident set size.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %d\n", rss)
		fmt.Fprintf(&b, "# HELP process_resident_memory_peak_bytes Peak resident set size (VmHWM).\n# TYPE process_resident_memory_peak_bytes gauge\nprocess_resident_memory_peak_bytes %d\n", peak)
	}
	fmt.Fprintf(&b, "# TYPE process_uptime_seconds gauge\nprocess_uptime_seconds %d\n", int(time.Since(m.started).Seconds()))
	w.Write([]byte(b.String()))
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
