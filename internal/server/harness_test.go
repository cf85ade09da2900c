package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/store"
)

const testAdminPassword = "admin-test-password"

// testApp is a Gatehouse started on a loopback listener, as a deployment
// would run it: the real handler, the real store, real HTTP.
type testApp struct {
	*App
	URL string
	t   *testing.T
}

// startApp builds the whole server on st and serves it on 127.0.0.1.
func startApp(t *testing.T, st store.Store, mutate ...func(*config.Config)) *testApp {
	t.Helper()
	return startAppWithKey(t, st, secret.RandomBytes(32), mutate...)
}

// startAppWithKey is startApp with a given master key, so that several
// processes serve one database as one service (DESIGN.md §7).
func startAppWithKey(t *testing.T, st store.Store, masterKey []byte, mutate ...func(*config.Config)) *testApp {
	t.Helper()
	return startAppWithDeps(t, st, masterKey, nil, mutate...)
}

// startAppWithDeps is startAppWithKey with Deps edited by deps (a clock, a
// factor of the embedding program's own).
func startAppWithDeps(t *testing.T, st store.Store, masterKey []byte, deps func(*Deps), mutate ...func(*config.Config)) *testApp {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Addr = ln.Addr().String()
	cfg.DataDir = t.TempDir()
	// Cheap hashing: the tests exercise behaviour, benchmarks measure cost.
	cfg.Password.MemoryKiB, cfg.Password.Iterations = 64, 1
	for _, m := range mutate {
		m(&cfg)
	}
	cfg.Finish()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	adminHash, err := NewPasswordHasher(cfg).Hash(context.Background(), testAdminPassword)
	if err != nil {
		t.Fatal(err)
	}
	d := Deps{Store: st, Logger: logger, MasterKey: masterKey, AdminPasswordHash: adminHash}
	if deps != nil {
		deps(&d)
	}
	app, err := Build(context.Background(), cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: app.Handler}}
	srv.Start()
	t.Cleanup(srv.Close)
	return &testApp{App: app, URL: srv.URL, t: t}
}

// admin sends an admin API request with Basic auth and returns status and body.
func (a *testApp) admin(method, path, contentType, body string) (int, string) {
	a.t.Helper()
	req, err := http.NewRequest(method, a.URL+path, strings.NewReader(body))
	if err != nil {
		a.t.Fatal(err)
	}
	req.SetBasicAuth("admin", testAdminPassword)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// mustPut PUTs a YAML resource and fails the test unless it was accepted.
func (a *testApp) mustPut(path, yaml string) {
	a.t.Helper()
	code, body := a.admin(http.MethodPut, path, "text/yaml", yaml)
	if code != http.StatusCreated && code != http.StatusOK {
		a.t.Fatalf("PUT %s = %d %s", path, code, body)
	}
}

// browser is a cookie-keeping HTTP client that follows redirects inside
// Gatehouse and stops at the first redirect that leaves it (to a client).
type browser struct {
	t      *testing.T
	client *http.Client
	app    *testApp
}

func (a *testApp) newBrowser() *browser {
	jar, _ := cookiejar.New(nil)
	host := strings.TrimPrefix(a.URL, "http://")
	c := &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if req.URL.Host != host {
			return http.ErrUseLastResponse
		}
		if len(via) > 10 {
			return fmt.Errorf("redirect loop: %v", req.URL)
		}
		return nil
	}}
	return &browser{t: a.t, client: c, app: a}
}

type page struct {
	status   int
	url      *url.URL // where the browser ended up
	location string   // Location of a redirect that left Gatehouse
	body     string
}

func (b *browser) do(req *http.Request) page {
	b.t.Helper()
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return page{status: resp.StatusCode, url: resp.Request.URL, location: resp.Header.Get("Location"), body: string(body)}
}

func (b *browser) get(u string) page {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	return b.do(req)
}

func (b *browser) post(u string, form url.Values) page {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

var csrfField = regexp.MustCompile(`name="_csrf" value="([^"]+)"`)

func (p page) csrf(t *testing.T) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(p.body)
	if m == nil {
		t.Fatalf("no CSRF field on %s (status %d):\n%s", p.url, p.status, p.body)
	}
	return m[1]
}

// submit posts form to the page's form action with the page's CSRF token.
func (b *browser) submit(p page, action string, form url.Values) page {
	b.t.Helper()
	form.Set("_csrf", p.csrf(b.t))
	return b.post(b.app.URL+action, form)
}

// signIn walks a browser from an authorize URL through the login form (and
// the consent page when one appears) to the redirect back to the client.
func (b *browser) signIn(authURL, username, password string) *url.URL {
	b.t.Helper()
	p := b.get(authURL)
	if p.location == "" {
		if !strings.HasPrefix(p.url.Path, "/auth/login") {
			b.t.Fatalf("expected the login page, got %s %d:\n%s", p.url, p.status, p.body)
		}
		p = b.submit(p, "/auth/login", url.Values{"username": {username}, "password": {password}})
	}
	if p.location == "" && p.url.Path == "/auth/consent" {
		p = b.submit(p, "/auth/consent", url.Values{"decision": {"allow"}})
	}
	if p.location == "" {
		b.t.Fatalf("sign-in did not return to the client; ended at %s %d:\n%s", p.url, p.status, p.body)
	}
	u, err := url.Parse(p.location)
	if err != nil {
		b.t.Fatal(err)
	}
	return u
}

func getJSON(t *testing.T, u string, out any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d", u, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond for up to d; used only for background effects.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cond()
}
