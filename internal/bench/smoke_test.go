package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/server"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

const smokeAdminPassword = "bench-smoke-admin"

// cheapArgon keeps the smoke test fast; the floor and the server use it alike.
var cheapArgon = secret.Argon2Params{MemoryKiB: 64, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}

// startServer runs the whole Gatehouse (server.Build on the real store) on
// a loopback listener, as cmd/gatehouse serve would.
func startServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Addr = ln.Addr().String()
	cfg.DataDir = t.TempDir()
	cfg.Password.MemoryKiB, cfg.Password.Iterations, cfg.Password.Parallelism = cheapArgon.MemoryKiB, cheapArgon.Iterations, cheapArgon.Parallelism
	cfg.Finish()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	adminHash, err := server.NewPasswordHasher(cfg).Hash(ctx, smokeAdminPassword)
	if err != nil {
		t.Fatal(err)
	}
	app, err := server.Build(ctx, cfg, server.Deps{
		Store:             gormstoretest.Open(t),
		Logger:            slog.New(slog.DiscardHandler),
		MasterKey:         secret.RandomBytes(32),
		AdminPasswordHash: adminHash,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: app.Handler}}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}

// logWriter sends progress lines to the test log.
type logWriter struct {
	t   *testing.T
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (w *logWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func smokeConfig(t *testing.T, url, stateFile string, progress io.Writer) Config {
	cfg := DefaultConfig()
	cfg.URL = url
	cfg.AdminPassword = smokeAdminPassword
	cfg.Duration = 15 * time.Second // the budget ends each scenario long before
	cfg.Concurrency = 2
	cfg.MaxRequests = 6
	cfg.Users = 4
	cfg.TOTPUsers = 12 // two runs of six logins, each user once
	cfg.Argon = cheapArgon
	cfg.FloorTime = 100 * time.Millisecond
	cfg.Settle = 0 // the test run shares the machine with other packages' tests
	cfg.StateFile = stateFile
	cfg.Progress = progress
	return cfg
}

func TestSmokeEveryScenarioRunsAgainstARealServer(t *testing.T) {
	url := startServer(t)
	stateFile := filepath.Join(t.TempDir(), "state.json")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	progress := &logWriter{t: t}
	rep, err := Run(ctx, smokeConfig(t, url, stateFile, progress))
	if err != nil {
		// Includes the enrolment pages missing (GET /auth/two-factor/enable 404).
		t.Fatalf("the bench could not run: %v", err)
	}

	t.Run("every scenario ran its budget without errors", func(t *testing.T) {
		if len(rep.Scenarios) != len(AllScenarios) {
			t.Fatalf("%d scenarios ran, want %d", len(rep.Scenarios), len(AllScenarios))
		}
		for i, s := range rep.Scenarios {
			if s.Name != AllScenarios[i] {
				t.Errorf("scenario %d is %s, want %s", i, s.Name, AllScenarios[i])
			}
			if s.Errors != 0 {
				t.Errorf("%s: %d errors: %v", s.Name, s.Errors, s.ErrorSamples)
			}
			if s.Requests != 6 || s.Stopped != "request budget reached" {
				t.Errorf("%s: %d requests (%s), want the budget of 6", s.Name, s.Requests, s.Stopped)
			}
		}
	})
	t.Run("the figures are sane", func(t *testing.T) {
		for _, s := range rep.Scenarios {
			if s.PerSec <= 0 || s.P50Ms <= 0 || s.P50Ms > s.P90Ms || s.P90Ms > s.P99Ms || s.P99Ms > s.MaxMs {
				t.Errorf("%s: rate %v/s, p50 %v p90 %v p99 %v max %v ms", s.Name, s.PerSec, s.P50Ms, s.P90Ms, s.P99Ms, s.MaxMs)
			}
			if s.PeakRSSBytes < 1<<20 {
				t.Errorf("%s: peak RSS %d bytes", s.Name, s.PeakRSSBytes)
			}
			bounded := s.Name == ScenarioLogin || s.Name == ScenarioLoginPassword || s.Name == ScenarioTokenCCJWT
			if bounded != (s.PercentOfFloor != nil) {
				t.Errorf("%s: percent of floor %v", s.Name, s.PercentOfFloor)
			}
			if s.PercentOfFloor != nil && *s.PercentOfFloor <= 0 {
				t.Errorf("%s: %v%% of floor", s.Name, *s.PercentOfFloor)
			}
		}
		f := rep.Floor
		if f.PasswordHashPerSec <= 0 || f.SecretCheckUncachedPerSec <= 0 || f.SecretCheckCachedPerSec <= f.SecretCheckUncachedPerSec || f.ES256PerSec <= 0 {
			t.Errorf("floor %+v", f)
		}
		if rep.TOTPUsers != 12 || rep.Users != 4 {
			t.Errorf("users %d + %d TOTP", rep.Users, rep.TOTPUsers)
		}
	})
	t.Run("the table names every scenario on one aligned row", func(t *testing.T) {
		var b bytes.Buffer
		if err := rep.WriteTable(&b); err != nil {
			t.Fatal(err)
		}
		t.Log("\n" + b.String())
		lines := strings.Split(b.String(), "\n")
		header := -1
		for i, l := range lines {
			if strings.Contains(l, "scenario") && strings.Contains(l, "p99") {
				header = i
			}
		}
		if header < 0 {
			t.Fatal("no header row")
		}
		for i, name := range AllScenarios {
			row := lines[header+1+i]
			if !strings.HasPrefix(strings.TrimLeft(row, " "), name+" ") || utf8.RuneCountInString(row) != utf8.RuneCountInString(lines[header]) {
				t.Errorf("row %q does not line up with the header %q", row, lines[header])
			}
		}
	})
	t.Run("the JSON report reads back", func(t *testing.T) {
		var b bytes.Buffer
		if err := rep.WriteJSON(&b); err != nil {
			t.Fatal(err)
		}
		var back Report
		if err := json.Unmarshal(b.Bytes(), &back); err != nil || len(back.Scenarios) != len(AllScenarios) {
			t.Fatalf("JSON report: %v\n%s", err, b.String())
		}
	})
	t.Run("a second run reuses the clients, users and enrolments", func(t *testing.T) {
		again := &logWriter{t: t}
		cfg := smokeConfig(t, url, stateFile, again)
		cfg.Scenarios = []string{ScenarioLogin, ScenarioTokenCCOpaque}
		rep, err := Run(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range rep.Scenarios {
			if s.Errors != 0 || s.Requests != 6 {
				t.Errorf("%s: %d requests, %d errors: %v", s.Name, s.Requests, s.Errors, s.ErrorSamples)
			}
		}
		if out := again.String(); !strings.Contains(out, "12 users already enrolled") || strings.Contains(out, "enrolling") {
			t.Errorf("the second run enrolled again:\n%s", out)
		}
	})
}
