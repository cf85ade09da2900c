package bench

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestOnlyLoopbackServersAreLoaded(t *testing.T) {
	resolve := map[string][]string{
		"bench.internal": {"127.0.0.1"},
		"example.com":    {"93.184.215.14"},
		"split.example":  {"127.0.0.1", "10.0.0.8"},
		"v6.internal":    {"::1"},
	}
	lookup := func(_ context.Context, host string) ([]net.IPAddr, error) {
		ips, ok := resolve[host]
		if !ok {
			return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		}
		var out []net.IPAddr
		for _, s := range ips {
			out = append(out, net.IPAddr{IP: net.ParseIP(s)})
		}
		return out, nil
	}
	tests := []struct {
		host string
		ok   bool
	}{
		{"127.0.0.1", true},
		{"127.0.0.53", true},
		{"::1", true},
		{"localhost", true},
		{"app.localhost", true},
		{"bench.internal", true},
		{"v6.internal", true},
		{"10.0.0.8", false},
		{"192.0.2.1", false},
		{"example.com", false},
		{"split.example", false},
		{"nowhere.invalid", false},
	}
	for _, tc := range tests {
		name := tc.host + " is refused"
		if tc.ok {
			name = tc.host + " is accepted"
		}
		t.Run(name, func(t *testing.T) {
			err := checkLoopback(context.Background(), tc.host, lookup)
			if (err == nil) != tc.ok {
				t.Fatalf("checkLoopback(%s) = %v", tc.host, err)
			}
			if err != nil && !strings.Contains(err.Error(), "--allow-remote") {
				t.Fatalf("the refusal does not say how to override it: %v", err)
			}
		})
	}
}

func TestConfigIsCheckedBeforeAnyLoad(t *testing.T) {
	base := func() Config {
		c := DefaultConfig()
		c.AdminPassword = "x"
		return c
	}
	tests := []struct {
		name          string
		mutate        func(*Config)
		wantErr       string
		wantScenarios []string
	}{
		{"the defaults run every scenario", func(*Config) {}, "", AllScenarios},
		{"token-cc means both client_credentials scenarios, in run order", func(c *Config) { c.Scenarios = []string{"jwks", "token-cc", "jwks"} },
			"", []string{ScenarioTokenCCJWT, ScenarioTokenCCOpaque, ScenarioJWKS}},
		{"an unknown scenario is refused", func(c *Config) { c.Scenarios = []string{"logn"} }, `unknown scenario "logn"`, nil},
		{"a remote URL is refused", func(c *Config) { c.URL = "http://192.0.2.1:8080" }, "--allow-remote", nil},
		{"a remote URL is allowed when asked", func(c *Config) { c.URL = "http://192.0.2.1:8080"; c.AllowRemote = true }, "", AllScenarios},
		{"a URL with a path is refused", func(c *Config) { c.URL = "http://127.0.0.1:8080/auth" }, "want http(s)://host:port", nil},
		{"a missing admin password is refused", func(c *Config) { c.AdminPassword = "" }, "admin", nil},
		{"zero concurrency is refused", func(c *Config) { c.Concurrency = 0 }, "--concurrency", nil},
		{"a prefix that cannot be an id is refused", func(c *Config) { c.Prefix = "Bench run" }, "--prefix", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.mutate(&c)
			err := c.normalize(context.Background())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(c.Scenarios, ",") != strings.Join(tc.wantScenarios, ",") {
				t.Fatalf("scenarios %v, want %v", c.Scenarios, tc.wantScenarios)
			}
			if c.MaxRequests <= 0 || c.Progress == nil || c.Now == nil {
				t.Fatalf("defaults not filled: %+v", c)
			}
		})
	}
}

// fakeClock is a settable clock safe for concurrent use.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) set(t time.Time)         { c.ns.Store(t.UnixNano()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func TestTOTPPoolNeverSendsTheSameStepTwiceForAUser(t *testing.T) {
	clock := &fakeClock{}
	enrolled := int64(59_000_000)
	clock.set(startOfStep(enrolled).Add(5 * time.Second))
	var users []*totpUser
	for _, id := range []string{"a", "b", "c"} {
		users = append(users, &totpUser{id: id, st: &totpState{LastStep: enrolled}})
	}
	pool := newTOTPPool(users, clock.now)
	ctx := context.Background()
	used := map[string]bool{}
	take := func(t *testing.T) (*totpUser, int64) {
		t.Helper()
		u, step, err := pool.acquire(ctx, time.Now().Add(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		key := u.id + "@" + time.Unix(step, 0).String()
		if used[key] {
			t.Fatalf("%s was given step %d twice", u.id, step)
		}
		if step <= u.st.LastStep {
			t.Fatalf("%s was given step %d, not after its last step %d", u.id, step, u.st.LastStep)
		}
		used[key] = true
		return u, step
	}

	t.Run("users enrolled in the current step sign in with the next step's code", func(t *testing.T) {
		for range users {
			u, step := take(t)
			if step != enrolled+1 {
				t.Fatalf("step %d, want the next one %d", step, enrolled+1)
			}
			pool.release(u, step)
		}
	})
	t.Run("when every user has used the next step too, acquire gives up at the deadline", func(t *testing.T) {
		_, _, err := pool.acquire(ctx, time.Now().Add(20*time.Millisecond))
		if !errors.Is(err, errUsersExhausted) {
			t.Fatalf("err = %v, want errUsersExhausted", err)
		}
	})
	t.Run("a waiting acquire proceeds once the clock reaches the next step", func(t *testing.T) {
		got := make(chan int64, 1)
		go func() {
			u, step, err := pool.acquire(ctx, time.Now().Add(10*time.Second))
			if err != nil {
				got <- -1
				return
			}
			pool.release(u, step)
			got <- step
		}()
		time.Sleep(30 * time.Millisecond)
		select {
		case s := <-got:
			t.Fatalf("acquire returned step %d before the clock moved", s)
		default:
		}
		clock.set(startOfStep(enrolled + 1))
		if s := <-got; s != enrolled+2 {
			t.Fatalf("step %d, want %d", s, enrolled+2)
		}
	})
	t.Run("a user is never handed out twice while in flight", func(t *testing.T) {
		clock.set(startOfStep(enrolled + 10))
		// Time passes on its own; the workers only wait for it.
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(time.Millisecond):
					clock.advance(3 * time.Second)
				}
			}
		}()
		var mu sync.Mutex
		inFlight := map[string]bool{}
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 20 {
					u, step, err := pool.acquire(ctx, time.Now().Add(5*time.Second))
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					if inFlight[u.id] {
						t.Errorf("%s handed out while in flight", u.id)
					}
					key := u.id + "@" + time.Unix(step, 0).String()
					if used[key] {
						t.Errorf("%s was given step %d twice", u.id, step)
					}
					used[key] = true
					inFlight[u.id] = true
					mu.Unlock()
					time.Sleep(time.Millisecond)
					mu.Lock()
					inFlight[u.id] = false
					mu.Unlock()
					pool.release(u, step)
				}
			}()
		}
		wg.Wait()
	})
}

func TestTOTPCodesMatchTheRFC6238Vectors(t *testing.T) {
	// RFC 6238 appendix B, SHA-1 secret "12345678901234567890", last 6 digits.
	const secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
	for unix, want := range map[int64]string{59: "287082", 1111111109: "081804", 1234567890: "005924", 2000000000: "279037"} {
		got, err := totpCode(secret, stepOf(time.Unix(unix, 0)))
		if err != nil || got != want {
			t.Errorf("code at %d = %q, %v; want %s", unix, got, err, want)
		}
	}
}

func TestPercentilesUseTheNearestRank(t *testing.T) {
	ms := func(n ...int) []time.Duration {
		var out []time.Duration
		for _, v := range n {
			out = append(out, time.Duration(v)*time.Millisecond)
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"no samples give zero", nil, 50, 0},
		{"one sample is every percentile", ms(7), 99, 7 * time.Millisecond},
		{"p50 of 1..100 is 50", ms(hundred...), 50, 50 * time.Millisecond},
		{"p99 of 1..100 is 99", ms(hundred...), 99, 99 * time.Millisecond},
		{"p100 is the maximum", ms(1, 2, 30), 100, 30 * time.Millisecond},
		{"p90 of four samples is the fourth", ms(1, 2, 3, 4), 90, 4 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := percentile(tc.sorted, tc.p); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestMemoryIsReadFromProcAndMetrics(t *testing.T) {
	status := "Name:\tgatehouse\nVmPeak:\t 1000 kB\nVmHWM:\t   81920 kB\nVmRSS:\t   40960 kB\n"
	m, err := parseProcStatus([]byte(status))
	if err != nil || m.rss != 40960*1024 || m.peak != 81920*1024 {
		t.Fatalf("proc status: %+v, %v", m, err)
	}
	metrics := "# HELP process_resident_memory_bytes Resident set size.\nprocess_resident_memory_bytes 4.2e+07\nprocess_resident_memory_peak_bytes 52428800\ngo_goroutines 9\nprocess_cpu_seconds_total 12.5\n"
	m, err = parseMetrics([]byte(metrics))
	if err != nil || m.rss != 42_000_000 || m.peak != 52428800 || m.cpu != 12500*time.Millisecond {
		t.Fatalf("metrics: %+v, %v", m, err)
	}
	if _, err := parseMetrics([]byte("go_goroutines 9\n")); err == nil {
		t.Fatal("metrics without memory figures were accepted")
	}
	self, err := procProbe{pid: os.Getpid()}.read(context.Background())
	if err != nil || self.rss == 0 {
		t.Fatalf("reading this process's own status: %+v, %v", self, err)
	}
}

func TestCPUTimeIsReadFromProcStat(t *testing.T) {
	// The command name may hold spaces and parentheses.
	line := "4242 (gate house (x)) S 1 4242 4242 0 -1 4194560 5000 0 0 0 1234 567 0 0 20 0 9 0 100 0 0"
	got, err := parseProcStat(line)
	if err != nil || got != 18010*time.Millisecond {
		t.Fatalf("parseProcStat = %v, %v; want 18.01s", got, err)
	}
	if _, err := parseProcStat("garbage"); err == nil {
		t.Fatal("garbage was read as a CPU time")
	}
	if _, err := procCPUTime(os.Getpid()); err != nil {
		t.Fatalf("reading this process's own CPU time: %v", err)
	}
	busy, err := parseMachineStat("cpu  100 5 50 9000 40 1 2 3 0 0\ncpu0 50 2 25 4500 20 0 1 1 0 0\n")
	if err != nil || busy != 1610*time.Millisecond {
		t.Fatalf("parseMachineStat = %v, %v; want 1.61s (idle and iowait left out)", busy, err)
	}
	if _, err := machineBusyTime(); err != nil {
		t.Fatalf("reading this machine's CPU time: %v", err)
	}
}

func TestStateIsPrivateAndBoundToItsServer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "state.json")
	st, err := loadState(path, "http://127.0.0.1:8080", "bench")
	if err != nil || st.Password != "" || len(st.Clients) != 0 {
		t.Fatalf("fresh state: %+v, %v", st, err)
	}
	st.Password = "pw"
	st.Clients["bench-jwt"] = "s3cret"
	st.TOTP["bench-t0"] = &totpState{Secret: "JBSWY3DPEHPK3PXP", LastStep: 42}
	if err := st.save(path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file mode %v, %v", fi.Mode(), err)
	}
	back, err := loadState(path, "http://127.0.0.1:8080", "bench")
	if err != nil || back.Clients["bench-jwt"] != "s3cret" || back.TOTP["bench-t0"].LastStep != 42 {
		t.Fatalf("reloaded %+v, %v", back, err)
	}
	other, err := loadState(path, "http://127.0.0.1:9090", "bench")
	if err != nil || other.Password != "" {
		t.Fatalf("the state of another server was used: %+v, %v", other, err)
	}
}

func TestTableShowsFloorsErrorsAndMemory(t *testing.T) {
	f := Floor{GOMAXPROCS: 2, PasswordHashPerSec: 90, SecretCheckUncachedPerSec: 89, SecretCheckCachedPerSec: 2e6, ES256PerSec: 40000}
	l := load{ok: 80, elapsed: time.Second, errors: map[string]int{"http 500": 2}, samples: map[string]string{"http 500": "token: boom"},
		latencies: []time.Duration{time.Millisecond, 2 * time.Millisecond}}
	rep := &Report{Server: "http://127.0.0.1:8080", Floor: f, Memory: "/metrics", Scenarios: []Result{
		result(ScenarioLogin, l, f),
		result(ScenarioJWKS, load{ok: 10, elapsed: time.Second, latencies: []time.Duration{time.Microsecond}}, f),
	}}
	login := rep.Scenarios[0]
	if login.Requests != 82 || login.Errors != 2 || login.PercentOfFloor == nil || *login.PercentOfFloor < 88.8 || *login.PercentOfFloor > 88.9 {
		t.Fatalf("login row %+v", login)
	}
	var b bytes.Buffer
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"88.9% password hash", "n/a", "login: 2 × http 500, e.g. token: boom", "peak RSS: /metrics", "ES256 JWT 40,000/s", "2,000,000/s"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestTheComparisonShowsBothRunsAndTheChange(t *testing.T) {
	f := Floor{PasswordHashPerSec: 100, ES256PerSec: 40000}
	row := func(name string, perSec, cpuMs float64) Result {
		r := result(name, load{ok: int(perSec), elapsed: time.Second, latencies: []time.Duration{2 * time.Millisecond}}, f)
		r.ServerCPUPerOpMs = cpuMs
		return r
	}
	base := &Report{Server: "http://127.0.0.1:8080", Floor: f, Scenarios: []Result{row(ScenarioIntrospect, 8000, 0.2), row(ScenarioLogin, 80, 12)}}
	now := &Report{Server: "http://127.0.0.1:8080", Floor: f, Scenarios: []Result{row(ScenarioIntrospect, 10000, 0.15), row(ScenarioJWKS, 20000, 0.05)}}
	var b bytes.Buffer
	if err := now.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "srv CPU/op") || !strings.Contains(b.String(), "150µs") {
		t.Errorf("the table has no CPU per operation:\n%s", b.String())
	}
	b.Reset()
	if err := now.WriteComparison(&b, base); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"8,000", "10,000", "+25.0%", "200µs", "150µs", "-25.0%", "floors before: argon2id 100/s"} {
		if !strings.Contains(out, want) {
			t.Errorf("the comparison lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, ScenarioJWKS) || strings.Contains(out, ScenarioLogin) {
		t.Errorf("a scenario only one run has is compared:\n%s", out)
	}
	var js bytes.Buffer
	if err := base.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	back, err := ReadReport(&js)
	if err != nil || len(back.Scenarios) != 2 || back.Scenarios[0].ServerCPUPerOpMs != 0.2 {
		t.Fatalf("the JSON did not read back: %+v, %v", back, err)
	}
}
