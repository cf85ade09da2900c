package server

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

// TestAPostgreSQLThatGoesAwayAndComesBack runs Gatehouse against a
// PostgreSQL server of the test's own and takes that server away three
// ways: a clean stop, a crash in the middle of writes, and a freeze. Each
// time every request answers 503 with Retry-After within a bounded time
// (never a hang, never a 500), /health/ready says not ready, and service
// comes back by itself when the server does, with no restart of Gatehouse
// and no acknowledged write lost.
func TestAPostgreSQLThatGoesAwayAndComesBack(t *testing.T) {
	if os.Getenv(gormstoretest.PostgresEnv) == "" {
		t.Skip("PostgreSQL fault test: set " + gormstoretest.PostgresEnv + " (the machine's PostgreSQL binaries start a server of the test's own)")
	}
	const deadline = time.Second
	pg := gormstoretest.StartCluster(t)
	app := startApp(t, gormstoretest.OpenPostgresAt(t, pg.DSN()), func(c *config.Config) { c.Server.RequestTimeout = deadline })
	app.mustPut("/Client/svc", "secret: svc-secret-0123456789\ngrant_types: [client_credentials]\n")
	app.mustPut("/Client/spa", "grant_types: [password]\nallowed_origins: ['https://app.example']\n")
	app.mustPut("/User/alice", "email: alice@example.com\npassword: alice-password-1\n")
	reqs := stalledRequests(t, app)
	ready := func() answer { return call(t, http.MethodGet, app.URL+"/health/ready", "", "", [2]string{}) }

	// down checks every surface while the server is away: 503 with
	// Retry-After, within a bound, and readiness down too.
	down := func(t *testing.T, within time.Duration) {
		t.Helper()
		for _, q := range reqs {
			a := q.do(t, app)
			if a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") == "" {
				t.Errorf("%s: %d (Retry-After %q): %.300s; want 503 with Retry-After", q.name, a.status, a.header.Get("Retry-After"), a.body)
			}
			if a.took > within {
				t.Errorf("%s answered after %s, want within %s", q.name, a.took, within)
			}
		}
		if r := ready(); r.status != http.StatusServiceUnavailable {
			t.Errorf("ready %d %s while the database is away, want 503", r.status, r.body)
		}
		visitorLoginPage(t, app)
		if r := call(t, http.MethodGet, app.URL+"/health/alive", "", "", [2]string{}); r.status != http.StatusOK {
			t.Errorf("alive %d: the process itself is fine", r.status)
		}
	}
	// back waits (at most 15 s) until every surface works again.
	back := func(t *testing.T) {
		t.Helper()
		start := time.Now()
		for {
			failing := ""
			if r := ready(); r.status != http.StatusOK {
				failing = fmt.Sprintf("ready %d", r.status)
			}
			for _, q := range reqs {
				if a := q.do(t, app); a.status >= 300 && failing == "" {
					failing = fmt.Sprintf("%s: %d %.200s", q.name, a.status, a.body)
				}
			}
			if failing == "" {
				t.Logf("every surface answered again %s after the database came back", time.Since(start).Round(time.Millisecond))
				return
			}
			if time.Since(start) > 15*time.Second {
				t.Fatalf("15 s after the database came back: %s", failing)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	t.Run("a stopped server is answered with 503 at once, and service resumes when it starts again", func(t *testing.T) {
		pg.Stop()
		down(t, deadline)
		pg.Start()
		back(t)
	})

	t.Run("a frozen server is answered with 503 at the request deadline, and service resumes when it thaws", func(t *testing.T) {
		pg.Pause()
		down(t, 3*deadline)
		pg.Resume()
		back(t)
	})

	t.Run("a crash in the middle of writes loses no acknowledged write", func(t *testing.T) {
		var acked, refused atomic.Int64
		var mu sync.Mutex
		var ackedIDs []string
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					id := fmt.Sprintf("w%d-%d", w, i)
					status, body := app.admin(http.MethodPut, "/User/"+id, "text/yaml", "email: "+id+"@example.com\n")
					switch {
					case status == http.StatusCreated || status == http.StatusOK:
						acked.Add(1)
						mu.Lock()
						ackedIDs = append(ackedIDs, id)
						mu.Unlock()
					case status == http.StatusServiceUnavailable && strings.Contains(body, "OperationOutcome"):
						refused.Add(1)
						time.Sleep(20 * time.Millisecond)
					default:
						t.Errorf("PUT /User/%s: %d %.300s; want 201 or 503 with an OperationOutcome", id, status, body)
						return
					}
				}
			})
		}
		waitFor := func(n int64) {
			for start := time.Now(); acked.Load() < n; time.Sleep(10 * time.Millisecond) {
				if time.Since(start) > 30*time.Second {
					close(stop)
					wg.Wait()
					t.Fatalf("only %d writes acknowledged in 30 s (%d refused)", acked.Load(), refused.Load())
				}
			}
		}
		waitFor(100)
		pg.Crash()
		time.Sleep(300 * time.Millisecond)
		before := acked.Load()
		pg.Start()
		waitFor(before + 100)
		close(stop)
		wg.Wait()
		t.Logf("%d writes acknowledged, %d refused with 503 across the crash", acked.Load(), refused.Load())
		if refused.Load() == 0 {
			t.Error("no write was refused: the crash happened outside the writes")
		}
		for _, id := range ackedIDs {
			if status, body := app.admin(http.MethodGet, "/User/"+id, "", ""); status != http.StatusOK {
				t.Fatalf("acknowledged PUT /User/%s is lost: %d %.200s", id, status, body)
			}
		}
		back(t)
	})

}
