package server

import (
	"context"
	"database/sql"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/store/gormstore"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

// faultBackend is a migrated store a test can also reach behind
// Gatehouse's back, to make it fail or stall.
type faultBackend struct {
	name string
	st   *gormstore.Store
	// raw runs SQL on a connection of its own.
	raw *sql.DB
	// stall holds every write (SQLite: another transaction keeps the
	// writer; PostgreSQL: a lock on the tables a request touches) until
	// the returned function is called.
	stall func(t *testing.T) (release func())
}

func faultBackends(t *testing.T) []func(t *testing.T) faultBackend {
	out := []func(t *testing.T) faultBackend{func(t *testing.T) faultBackend {
		path := filepath.Join(t.TempDir(), "gatehouse.db")
		st := gormstoretest.OpenSQLiteAt(t, path)
		raw, err := sql.Open("sqlite", path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { raw.Close() })
		return faultBackend{name: "sqlite", st: st, raw: raw, stall: func(t *testing.T) func() {
			ctx, err := st.BeginTx(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			var once sync.Once
			release := func() { once.Do(func() { st.RollbackTx(ctx) }) }
			t.Cleanup(release)
			return release
		}}
	}}
	if os.Getenv(gormstoretest.PostgresEnv) == "" {
		return out
	}
	return append(out, func(t *testing.T) faultBackend {
		dsn := gormstoretest.PostgresDSN(t)
		st := gormstoretest.OpenPostgresAt(t, dsn)
		raw, err := sql.Open("pgx", dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { raw.Close() })
		return faultBackend{name: "postgres", st: st, raw: raw, stall: func(t *testing.T) func() {
			return gormstoretest.LockTable(t, dsn, "users, clients, auth_configs, oauth_requests, counters, browser_sessions, audit_events")
		}}
	})
}

// answer is one HTTP exchange of these tests.
type answer struct {
	status int
	header http.Header
	body   string
	took   time.Duration
}

// patient is the client of these tests: a request that hangs (the fault
// these tests are about) fails after 15 s instead of holding the test.
var patient = &http.Client{Timeout: 15 * time.Second}

// call sends one request. It may run on any goroutine: a failure to get an
// answer is reported with t.Errorf and comes back as status 0.
func call(t *testing.T, method, u, contentType, body string, basic [2]string, cookies ...*http.Cookie) answer {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Errorf("%s %s: %v", method, u, err)
		return answer{}
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if basic[0] != "" {
		req.SetBasicAuth(basic[0], basic[1])
	}
	start := time.Now()
	res, err := patient.Do(req)
	if err != nil {
		t.Errorf("%s %s: no answer after %s: %v", method, u, time.Since(start), err)
		return answer{took: time.Since(start)}
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return answer{status: res.StatusCode, header: res.Header, body: string(b), took: time.Since(start)}
}

// TestReadinessReflectsWrites reproduces the fault report's finding 3:
// /health/ready said ready while the disk was full and every write failed.
func TestReadinessReflectsWrites(t *testing.T) {
	for _, open := range faultBackends(t) {
		be := open(t)
		t.Run("on "+be.name, func(t *testing.T) {
			app := startApp(t, be.st)
			ready := func() answer { return call(t, http.MethodGet, app.URL+"/health/ready", "", "", [2]string{}) }
			if r := ready(); r.status != http.StatusOK {
				t.Fatalf("a healthy database: ready %d %s", r.status, r.body)
			}
			// Every write fails, reads still work: a full disk.
			failWrites := map[string][]string{
				"sqlite": {
					`CREATE TRIGGER full_insert BEFORE INSERT ON counters BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END`,
					`CREATE TRIGGER full_update BEFORE UPDATE ON counters BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END`,
				},
				"postgres": {
					`CREATE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'could not extend file' USING ERRCODE = 'disk_full'; END $$`,
					`CREATE TRIGGER disk_full BEFORE INSERT OR UPDATE ON counters FOR EACH ROW EXECUTE FUNCTION disk_full()`,
				},
			}[be.name]
			heal := map[string][]string{
				"sqlite":   {`DROP TRIGGER full_insert`, `DROP TRIGGER full_update`},
				"postgres": {`DROP TRIGGER disk_full ON counters`},
			}[be.name]
			for _, q := range failWrites {
				if _, err := be.raw.Exec(q); err != nil {
					t.Fatal(err)
				}
			}
			t.Run("writes failing make ready answer 503 while reads still work", func(t *testing.T) {
				r := ready()
				if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
					t.Fatalf("ready %d (Retry-After %q) %s, want 503 with Retry-After", r.status, r.header.Get("Retry-After"), r.body)
				}
				if _, err := be.st.GetUser(context.Background(), "anyone"); err == nil || !strings.Contains(err.Error(), "not found") {
					t.Fatalf("a read with writes failing: %v, want not found", err)
				}
				if r := call(t, http.MethodGet, app.URL+"/health/alive", "", "", [2]string{}); r.status != http.StatusOK {
					t.Errorf("alive %d, want 200: the process itself is fine", r.status)
				}
			})
			for _, q := range heal {
				if _, err := be.raw.Exec(q); err != nil {
					t.Fatal(err)
				}
			}
			t.Run("ready again once writes work", func(t *testing.T) {
				if r := ready(); r.status != http.StatusOK {
					t.Fatalf("ready %d %s after writes recovered", r.status, r.body)
				}
			})
		})
	}
}

// stalledRequest is a request of one surface that needs the database.
type stalledRequest struct {
	name                      string
	method, path, ctype, body string
	basic                     [2]string
	cookie                    *http.Cookie
}

func (q stalledRequest) do(t *testing.T, app *testApp) answer {
	t.Helper()
	if q.cookie != nil {
		return call(t, q.method, app.URL+q.path, q.ctype, q.body, q.basic, q.cookie)
	}
	return call(t, q.method, app.URL+q.path, q.ctype, q.body, q.basic)
}

// svcTokenRequest is a client_credentials token request of client svc.
var svcTokenRequest = stalledRequest{name: "a client_credentials token", method: http.MethodPost, path: "/auth/token", ctype: "application/x-www-form-urlencoded",
	body: url.Values{"grant_type": {"client_credentials"}}.Encode(), basic: [2]string{"svc", "svc-secret-0123456789"}}

// stalledRequests are requests of every surface that need the database
// (the stalls hold its writes). The hosted one is the password form, posted
// from a visitor's login page shown before: the page itself needs no
// database any more (a visitor's session lives in its cookie; see
// visitorLoginPage), the password check writes its throttle counters.
func stalledRequests(t *testing.T, app *testApp) []stalledRequest {
	t.Helper()
	cookie, csrf := visitorForm(t, app)
	return []stalledRequest{
		svcTokenRequest,
		{name: "an admin PUT", method: http.MethodPut, path: "/User/stalled", ctype: "text/yaml", body: "email: stalled@example.com\n", basic: [2]string{"admin", testAdminPassword}},
		{name: "a JSON API sign-in", method: http.MethodPost, path: "/auth/sign-in", ctype: "application/json",
			body: `{"client_id":"spa","username":"alice","password":"alice-password-1"}`},
		{name: "the hosted password form", method: http.MethodPost, path: "/auth/login", ctype: "application/x-www-form-urlencoded",
			body: url.Values{"username": {"alice"}, "password": {"alice-password-1"}, "_csrf": {csrf}}.Encode(), cookie: cookie},
	}
}

// visitorForm opens the login page as a visitor and returns the session
// cookie and the form's CSRF token.
func visitorForm(t *testing.T, app *testApp) (*http.Cookie, string) {
	t.Helper()
	b := browserFor(t, app)
	p := b.get(app.URL + "/auth/login")
	u, _ := url.Parse(app.URL)
	for _, c := range b.client.Jar.Cookies(u) {
		if c.Name == "gatehouse" {
			return c, p.csrf(t)
		}
	}
	t.Fatal("no session cookie on the login page")
	return nil, ""
}

// visitorLoginPage checks that a visitor's login page shows while the
// database does not answer: nothing on it needs a record.
func visitorLoginPage(t *testing.T, app *testApp) {
	t.Helper()
	a := call(t, http.MethodGet, app.URL+"/auth/login", "", "", [2]string{})
	if a.status != http.StatusOK || !strings.Contains(a.body, `name="password"`) {
		t.Errorf("a visitor's login page: %d after %s: %.300s; want the form", a.status, a.took, a.body)
	}
}

// TestRequestsAgainstAStalledDatabaseAnswer503WithinTheDeadline reproduces
// the fault report's findings 2b and 2c: with the database stalled,
// requests waited as long as the stall. Now each ends at its deadline with
// 503 and Retry-After, and the same requests work once the stall ends.
func TestRequestsAgainstAStalledDatabaseAnswer503WithinTheDeadline(t *testing.T) {
	const deadline = 500 * time.Millisecond
	for _, open := range faultBackends(t) {
		be := open(t)
		t.Run("on "+be.name, func(t *testing.T) {
			app := startApp(t, be.st, func(c *config.Config) { c.Server.RequestTimeout = deadline })
			app.mustPut("/Client/svc", "secret: svc-secret-0123456789\ngrant_types: [client_credentials]\n")
			app.mustPut("/Client/spa", "grant_types: [password]\nallowed_origins: ['https://app.example']\n")
			app.mustPut("/User/alice", "email: alice@example.com\npassword: alice-password-1\n")
			reqs := stalledRequests(t, app)
			release := be.stall(t)
			t.Run("each request answers 503 with Retry-After within 5× the deadline", func(t *testing.T) {
				var wg sync.WaitGroup
				answers := make([]answer, len(reqs)*3)
				for i := range answers {
					q := reqs[i%len(reqs)]
					wg.Add(1)
					go func() {
						defer wg.Done()
						answers[i] = q.do(t, app)
					}()
				}
				wg.Wait()
				for i, a := range answers {
					q := reqs[i%len(reqs)]
					if a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") != "2" {
						t.Errorf("%s: %d (Retry-After %q) after %s: %.200s; want 503 with Retry-After 2", q.name, a.status, a.header.Get("Retry-After"), a.took, a.body)
					}
					if a.took > 5*deadline {
						t.Errorf("%s answered after %s, want within 5× the %s deadline", q.name, a.took, deadline)
					}
				}
			})
			t.Run("a visitor's login page still shows", func(t *testing.T) { visitorLoginPage(t, app) })
			release()
			t.Run("the same requests work once the database answers again", func(t *testing.T) {
				for _, q := range reqs {
					a := q.do(t, app)
					if a.status >= 300 {
						t.Errorf("%s: %d %.200s after the stall ended", q.name, a.status, a.body)
					}
				}
			})
		})
	}
}

// metric reads one value of /metrics.
func metric(t *testing.T, app *testApp, name string) string {
	t.Helper()
	body := call(t, http.MethodGet, app.URL+"/metrics", "", "", [2]string{}).body
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	t.Fatalf("no %s in /metrics:\n%s", name, body)
	return ""
}

// TestLoadIsShedPastTheInFlightBound reproduces the fault report's finding
// 2c (goroutines 80 → 5,594 behind a stalled database, nothing shed):
// past server.maxInFlight, requests are refused at once with 503 and
// Retry-After; health and metrics still answer; the held requests finish
// when the database does.
func TestLoadIsShedPastTheInFlightBound(t *testing.T) {
	const bound = 4
	for _, open := range faultBackends(t) {
		be := open(t)
		t.Run("on "+be.name, func(t *testing.T) {
			app := startApp(t, be.st, func(c *config.Config) {
				c.Server.MaxInFlight = bound
				c.Server.RequestTimeout = 20 * time.Second
			})
			app.mustPut("/Client/svc", "secret: svc-secret-0123456789\ngrant_types: [client_credentials]\n")
			token := svcTokenRequest
			release := be.stall(t)
			held := make(chan answer, bound)
			for range bound {
				go func() { held <- call(t, token.method, app.URL+token.path, token.ctype, token.body, token.basic) }()
			}
			for deadline := time.Now().Add(10 * time.Second); metric(t, app, "gatehouse_http_requests_in_flight") != "4"; {
				if time.Now().After(deadline) {
					t.Fatal("the held requests never filled the bound")
				}
				time.Sleep(20 * time.Millisecond)
			}
			t.Run("one request more is shed at once with 503 and Retry-After", func(t *testing.T) {
				a := call(t, token.method, app.URL+token.path, token.ctype, token.body, token.basic)
				if a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") != "2" || !strings.Contains(a.body, "temporarily_unavailable") {
					t.Fatalf("%d (Retry-After %q) %s; want 503 temporarily_unavailable with Retry-After 2", a.status, a.header.Get("Retry-After"), a.body)
				}
				if a.took > 2*time.Second {
					t.Errorf("shed after %s, want at once", a.took)
				}
				if got := metric(t, app, "gatehouse_http_requests_shed_total"); got != "1" {
					t.Errorf("shed_total %s, want 1", got)
				}
			})
			t.Run("health answers while the bound is full", func(t *testing.T) {
				if a := call(t, http.MethodGet, app.URL+"/health/alive", "", "", [2]string{}); a.status != http.StatusOK {
					t.Errorf("alive %d", a.status)
				}
			})
			release()
			t.Run("the held requests finish once the database answers", func(t *testing.T) {
				for range bound {
					if a := <-held; a.status != http.StatusOK {
						t.Errorf("a held token request: %d %.200s", a.status, a.body)
					}
				}
				if a := call(t, token.method, app.URL+token.path, token.ctype, token.body, token.basic); a.status != http.StatusOK {
					t.Errorf("a new request after the stall: %d %.200s", a.status, a.body)
				}
			})
		})
	}
}
