package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// memory is one reading of the server's memory.
type memory struct {
	rss, peak uint64 // bytes; peak is VmHWM (since start, or since the last reset)
	// cpu is the server's CPU time so far, from /metrics'
	// process_cpu_seconds_total (0 from /proc status).
	cpu time.Duration
}

// memProbe reads the server's resident memory.
type memProbe interface {
	read(ctx context.Context) (memory, error)
	// resetPeak starts a new peak (VmHWM) window; false when it cannot.
	resetPeak() bool
	source() string
}

// procProbe reads /proc/PID/status of a local server.
type procProbe struct{ pid int }

func (p procProbe) read(context.Context) (memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid))
	if err != nil {
		return memory{}, fmt.Errorf("read server memory: %w", err)
	}
	return parseProcStatus(b)
}

// resetPeak writes 5 to clear_refs, which resets VmHWM to the current RSS
// (Linux ≥ 4.0; needs the right to write the server's /proc files).
func (p procProbe) resetPeak() bool {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p.pid), []byte("5"), 0) == nil
}

func (p procProbe) source() string { return fmt.Sprintf("/proc/%d/status", p.pid) }

func parseProcStatus(b []byte) (memory, error) {
	var m memory
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		for _, f := range []struct {
			prefix string
			dst    *uint64
		}{{"VmRSS:", &m.rss}, {"VmHWM:", &m.peak}} {
			if rest, ok := strings.CutPrefix(line, f.prefix); ok {
				kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
				if err != nil {
					return memory{}, fmt.Errorf("parse %s %q: %w", f.prefix, rest, err)
				}
				*f.dst = kb * 1024
			}
		}
	}
	if m.rss == 0 {
		return memory{}, fmt.Errorf("no VmRSS in the server's status")
	}
	return m, nil
}

// metricsProbe scrapes the server's /metrics.
type metricsProbe struct {
	url    string
	client *http.Client
}

func (p metricsProbe) read(ctx context.Context) (memory, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return memory{}, err
	}
	r, err := do(p.client, req, "GET /metrics")
	if err != nil {
		return memory{}, err
	}
	if r.status != http.StatusOK {
		return memory{}, httpFailure(r.status, "GET /metrics", r.body)
	}
	return parseMetrics(r.body)
}

func (metricsProbe) resetPeak() bool { return false }
func (metricsProbe) source() string  { return "/metrics" }

func parseMetrics(b []byte) (memory, error) {
	var m memory
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		var dst *uint64
		switch name {
		case "process_cpu_seconds_total":
			f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
			if err != nil {
				return memory{}, fmt.Errorf("parse %s: %w", name, err)
			}
			m.cpu = time.Duration(f * float64(time.Second))
			continue
		case "process_resident_memory_bytes":
			dst = &m.rss
		case "process_resident_memory_peak_bytes":
			dst = &m.peak
		default:
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			return memory{}, fmt.Errorf("parse %s: %w", name, err)
		}
		*dst = uint64(f)
	}
	if m.rss == 0 {
		return memory{}, fmt.Errorf("/metrics has no process_resident_memory_bytes")
	}
	return m, nil
}

// sampler polls a probe while a scenario runs.
type sampler struct {
	probe  memProbe
	reset  bool // the peak window was reset at start
	mu     sync.Mutex
	maxRSS uint64
	err    error
	stop   chan struct{}
	done   chan struct{}
}

// startSampling resets the peak where possible and samples every interval.
func startSampling(ctx context.Context, p memProbe, interval time.Duration) *sampler {
	s := &sampler{probe: p, stop: make(chan struct{}), done: make(chan struct{})}
	s.reset = p.resetPeak()
	s.sample(ctx)
	go func() {
		defer close(s.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				s.sample(ctx)
			}
		}
	}()
	return s
}

func (s *sampler) sample(ctx context.Context) {
	m, err := s.probe.read(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if s.err == nil {
			s.err = err
		}
		return
	}
	s.maxRSS = max(s.maxRSS, m.rss)
}

// finish stops sampling and returns the scenario's peak RSS and the
// process's peak (VmHWM: since the reset, or since start).
func (s *sampler) finish(ctx context.Context) (peak, processPeak uint64, how string, err error) {
	close(s.stop)
	<-s.done
	last, lerr := s.probe.read(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	if lerr == nil {
		s.maxRSS = max(s.maxRSS, last.rss)
	} else if s.err == nil {
		s.err = lerr
	}
	if s.maxRSS == 0 {
		return 0, 0, "", s.err
	}
	if s.reset && last.peak > 0 {
		return max(last.peak, s.maxRSS), last.peak, "VmHWM", nil
	}
	return s.maxRSS, last.peak, "sampled", nil
}
