package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// run is one benchmark run's shared state.
type run struct {
	cfg       Config
	host      string // host:port of the server, where browsers follow redirects
	tr        *http.Transport
	plain     *http.Client // no cookies, no redirects
	api       *adminAPI
	st        *state
	statePath string
	pool      *totpPool
	written   int // resources seeded by this run

	jwtClient, opaqueClient, webClient string
}

func (r *run) progress(format string, args ...any) {
	fmt.Fprintf(r.cfg.Progress, format+"\n", args...)
}

func (r *run) saveState() error { return r.st.save(r.statePath) }

// Run seeds the server, measures the floor, runs the scenarios and
// returns the report. It stops by itself: every scenario is bounded by the
// duration and the request budget.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.normalize(ctx); err != nil {
		return nil, err
	}
	u, _ := url.Parse(cfg.URL)
	tr := newTransport(cfg.Concurrency + cfg.SeedConcurrency)
	defer tr.CloseIdleConnections()
	noRedirect := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	r := &run{
		cfg:          cfg,
		host:         u.Host,
		tr:           tr,
		plain:        &http.Client{Transport: tr, Timeout: cfg.RequestTimeout, CheckRedirect: noRedirect},
		jwtClient:    cfg.Prefix + "-jwt",
		opaqueClient: cfg.Prefix + "-opaque",
		webClient:    cfg.Prefix + "-web",
	}
	r.api = &adminAPI{base: cfg.URL, user: cfg.AdminUser, pass: cfg.AdminPassword, client: r.plain}

	r.statePath = cfg.StateFile
	if r.statePath == "" {
		p, err := defaultStatePath(cfg.URL, cfg.Prefix)
		if err != nil {
			return nil, err
		}
		r.statePath = p
	}
	var err error
	if r.st, err = loadState(r.statePath, cfg.URL, cfg.Prefix); err != nil {
		return nil, err
	}
	if err := r.checkServer(ctx); err != nil {
		return nil, err
	}

	floor, err := measureFloor(ctx, cfg.Argon, cfg.FloorTime, r.progress)
	if err != nil {
		return nil, err
	}

	if err := r.seedClients(ctx); err != nil {
		return nil, err
	}
	if err := r.saveState(); err != nil {
		return nil, err
	}
	needsUsers := slices.ContainsFunc(cfg.Scenarios, func(s string) bool {
		return s == ScenarioLoginPassword || s == ScenarioRefresh
	})
	if needsUsers {
		if err := r.seedUsers(ctx); err != nil {
			return nil, err
		}
	}
	totpUsers := 0
	if slices.Contains(cfg.Scenarios, ScenarioLogin) {
		totpUsers = r.totpUsersNeeded(floor)
		users, err := r.seedTOTPUsers(ctx, totpUsers)
		if err != nil {
			return nil, err
		}
		r.pool = newTOTPPool(users, cfg.Now)
		defer r.saveState() // the last used steps, for a re-run within the minute
	}
	if r.written > 0 && cfg.Settle > 0 {
		// A fresh seed leaves the database busy for a while (checkpoints,
		// autovacuum): let it finish before measuring.
		r.settle(ctx, cfg.Settle)
	}

	metrics := metricsProbe{url: cfg.URL + "/metrics", client: r.plain}
	var probe memProbe = metrics
	serverCPU := func() (time.Duration, error) {
		m, err := metrics.read(ctx)
		return m.cpu, err
	}
	if cfg.PID > 0 {
		probe = procProbe{pid: cfg.PID}
		serverCPU = func() (time.Duration, error) { return procCPUTime(cfg.PID) }
	}
	rep := &Report{
		Server:      cfg.URL,
		Date:        time.Now().UTC(),
		Machine:     machine(),
		Concurrency: cfg.Concurrency,
		Duration:    cfg.Duration.String(),
		MaxRequests: cfg.MaxRequests,
		TOTPUsers:   totpUsers,
		Floor:       floor,
	}
	if needsUsers {
		rep.Users = cfg.Users
	}
	resetOK := false
	var processPeak uint64
	for _, name := range cfg.Scenarios {
		fn, err := r.opFor(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		r.progress("run: %s for %s at concurrency %d", name, cfg.Duration, cfg.Concurrency)
		s := startSampling(ctx, probe, 100*time.Millisecond)
		cpu := startCPU(serverCPU)
		l := drive(ctx, cfg.Concurrency, cfg.Duration, cfg.MaxRequests, fn)
		serverCores, benchCores, machineCores := cpu.cores()
		peak, procPeak, how, merr := s.finish(ctx)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		res := result(name, l, floor)
		res.ServerCores, res.BenchCores, res.MachineCores = serverCores, benchCores, machineCores
		if serverCores > 0 && l.ok > 0 {
			res.ServerCPUPerOpMs = serverCores * l.elapsed.Seconds() * 1000 / float64(l.ok)
		}
		if merr == nil {
			res.PeakRSSBytes, res.ProcessPeakRSSBytes, res.PeakRSSHow = peak, procPeak, how
			resetOK = resetOK || how == "VmHWM"
			processPeak = procPeak
		} else {
			r.progress("  memory: %v", merr)
		}
		rep.Scenarios = append(rep.Scenarios, res)
		r.tr.CloseIdleConnections()
	}
	switch {
	case resetOK:
		rep.Memory = probe.source() + " VmHWM, reset before each scenario (clear_refs)"
	case cfg.PID > 0:
		rep.Memory = probe.source() + " VmRSS sampled every 100 ms (VmHWM could not be reset)"
	default:
		rep.Memory = "/metrics process_resident_memory_bytes sampled every 100 ms (pass --pid for VmHWM)"
		if processPeak > 0 {
			rep.Memory += "; process_resident_memory_peak_bytes (since the server started) " + mib(processPeak)
		}
	}
	return rep, nil
}

// checkServer makes sure the URL is a Gatehouse and the admin credentials work.
func (r *run) checkServer(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.cfg.URL+pathDiscovery, nil)
	if err != nil {
		return err
	}
	resp, err := do(r.plain, req, "GET "+pathDiscovery)
	if err != nil {
		return fmt.Errorf("the server at %s does not answer: %w", r.cfg.URL, err)
	}
	if resp.status != http.StatusOK || !strings.Contains(string(resp.body), `"issuer"`) {
		return fmt.Errorf("%s is not an OpenID provider: %w", r.cfg.URL, httpFailure(resp.status, "discovery", resp.body))
	}
	if _, err := r.api.get(ctx, "Client", r.jwtClient, nil); err != nil {
		var f *failure
		if errors.As(err, &f) && (f.kind == "http 401" || f.kind == "http 429") {
			return fmt.Errorf("the admin API refused the credentials of %q: %w", r.cfg.AdminUser, err)
		}
		return err
	}
	return nil
}

func machine() string {
	host, _ := os.Hostname()
	model := cpuModel()
	return fmt.Sprintf("%s, %s/%s, %d CPUs%s, GOMAXPROCS %d, %s", host, runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), model, runtime.GOMAXPROCS(0), runtime.Version())
}

// cpuModel reads the CPU model name on Linux ("" elsewhere).
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return " (" + strings.TrimSpace(v) + ")"
		}
	}
	return ""
}
