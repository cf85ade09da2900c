package server

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

// The login benchmarks drive the whole browser flow (authorize → login
// page → password → code prompt → code → authorize → token exchange)
// through the server's handler in process, with cheap argon2: what they
// measure, and what -cpuprofile shows, is the server's own work per login
// beyond the password hash. The clock moves one TOTP step per login so the
// one enrolled user never replays a code.

type benchClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *benchClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *benchClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type benchApp struct {
	b     *testing.B
	app   *App
	clock *benchClock
}

func newBenchApp(b *testing.B) *benchApp {
	b.Helper()
	cfg := config.Default()
	cfg.DataDir = b.TempDir()
	cfg.Password.MemoryKiB, cfg.Password.Iterations = 64, 1
	cfg.Finish()
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	// fosite checks auth_time against the real clock, so the test clock
	// starts in the past and moves towards the present: a week of steps.
	clock := &benchClock{t: time.Now().UTC().Add(-7 * 24 * time.Hour).Truncate(30 * time.Second)}
	st := gormstoretest.OpenSQLite(b)
	st.Now = clock.Now
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	adminHash, err := NewPasswordHasher(cfg).Hash(context.Background(), testAdminPassword)
	if err != nil {
		b.Fatal(err)
	}
	app, err := Build(context.Background(), cfg, Deps{
		Store: st, Logger: logger, MasterKey: secret.RandomBytes(32), AdminPasswordHash: adminHash, Now: clock.Now,
	})
	if err != nil {
		b.Fatal(err)
	}
	a := &benchApp{b: b, app: app, clock: clock}
	a.put("/Client/mywebapp", webClientYAML)
	return a
}

func (a *benchApp) put(path, yaml string) {
	a.b.Helper()
	req := httptest.NewRequest(http.MethodPut, path, strings.NewReader(yaml))
	req.Header.Set("Content-Type", "text/yaml")
	req.SetBasicAuth("admin", testAdminPassword)
	rec := httptest.NewRecorder()
	a.app.Handler.ServeHTTP(rec, req)
	if rec.Code != http.StatusCreated && rec.Code != http.StatusOK {
		a.b.Fatalf("PUT %s = %d %s", path, rec.Code, rec.Body)
	}
}

// enrolTOTP turns TOTP on for user id and returns its secret.
func (a *benchApp) enrolTOTP(id string) string {
	a.b.Helper()
	ctx := context.Background()
	u, err := a.app.Store.GetUser(ctx, id)
	if err != nil {
		a.b.Fatal(err)
	}
	en, err := a.app.TwoFactor.BeginTOTP(u, "Gatehouse")
	if err != nil {
		a.b.Fatal(err)
	}
	if _, err := a.app.TwoFactor.ConfirmTOTP(ctx, twofactor.ConfirmInput{UserID: id, Secret: en.Secret, Code: a.code(en.Secret), PastSteps: 1}); err != nil {
		a.b.Fatal(err)
	}
	return en.Secret
}

func (a *benchApp) code(secret string) string {
	a.b.Helper()
	c, err := totp.GenerateCodeCustom(secret, a.clock.Now(), totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		a.b.Fatal(err)
	}
	return c
}

// benchBrowser keeps cookies and follows Gatehouse's own redirects.
type benchBrowser struct {
	a       *benchApp
	cookies map[string]*http.Cookie
}

type benchPage struct {
	path string // where the browser ended up
	body string
	// location of a redirect that leaves Gatehouse (to the client)
	location string
}

func (br *benchBrowser) do(method, target string, form url.Values) benchPage {
	br.a.b.Helper()
	for range 10 {
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req := httptest.NewRequest(method, target, body)
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		for _, c := range br.cookies {
			req.AddCookie(c)
		}
		rec := httptest.NewRecorder()
		br.a.app.Handler.ServeHTTP(rec, req)
		for _, c := range rec.Result().Cookies() {
			if c.MaxAge < 0 {
				delete(br.cookies, c.Name)
			} else {
				br.cookies[c.Name] = c
			}
		}
		loc := rec.Header().Get("Location")
		switch {
		case rec.Code >= 300 && rec.Code < 400 && strings.HasPrefix(loc, "/"):
			method, target, form = http.MethodGet, loc, nil
			continue
		case rec.Code >= 300 && rec.Code < 400:
			return benchPage{path: target, location: loc}
		case rec.Code != http.StatusOK:
			br.a.b.Fatalf("%s %s = %d %s", method, target, rec.Code, rec.Body)
		}
		return benchPage{path: target, body: rec.Body.String()}
	}
	br.a.b.Fatal("redirect loop")
	return benchPage{}
}

var benchCSRF = regexp.MustCompile(`name="_csrf" value="([^"]+)"`)

func (br *benchBrowser) csrf(p benchPage) string {
	m := benchCSRF.FindStringSubmatch(p.body)
	if m == nil {
		br.a.b.Fatalf("no CSRF token on %s:\n%s", p.path, p.body)
	}
	return m[1]
}

// login runs one whole browser login of user; secret "" is a password-only
// user. It ends with the code exchanged for tokens.
func (a *benchApp) login(user, secret string) {
	a.b.Helper()
	if a.clock.Now().After(time.Now()) {
		a.b.Fatal("the test clock caught up with the real one: run fewer iterations")
	}
	br := &benchBrowser{a: a, cookies: map[string]*http.Cookie{}}
	verifier := base64.RawURLEncoding.EncodeToString(secret32())
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{
		"client_id": {"mywebapp"}, "response_type": {"code"}, "redirect_uri": {tfRedirectURI},
		"scope": {"openid email"}, "state": {"state-1234567890"}, "nonce": {"nonce-1234567890"},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
	}
	p := br.do(http.MethodGet, "/auth/authorize?"+q.Encode(), nil)
	p = br.do(http.MethodPost, "/auth/login", url.Values{"_csrf": {br.csrf(p)}, "username": {user + "@example.com"}, "password": {tfPassword}})
	if secret != "" {
		p = br.do(http.MethodPost, "/auth/login/two-factor", url.Values{"_csrf": {br.csrf(p)}, "code": {a.code(secret)}})
	}
	back, err := url.Parse(p.location)
	if err != nil || back.Query().Get("code") == "" {
		a.b.Fatalf("no code in the redirect to the client %q (ended on %s)", p.location, p.path)
	}
	form := url.Values{"grant_type": {"authorization_code"}, "code": {back.Query().Get("code")}, "redirect_uri": {tfRedirectURI}, "code_verifier": {verifier}}
	req := httptest.NewRequest(http.MethodPost, "/auth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("mywebapp", "verysecret-0123456789")
	rec := httptest.NewRecorder()
	a.app.Handler.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"id_token"`) {
		a.b.Fatalf("token exchange = %d %s", rec.Code, rec.Body)
	}
}

func secret32() []byte { return secret.RandomBytes(32) }

func BenchmarkBrowserLogin(b *testing.B) {
	b.Run("password", func(b *testing.B) {
		a := newBenchApp(b)
		a.put("/User/benchplain", "email: benchplain@example.com\npassword: "+tfPassword+"\n")
		b.ResetTimer()
		for b.Loop() {
			a.clock.Advance(30 * time.Second)
			a.login("benchplain", "")
		}
	})
	b.Run("totp", func(b *testing.B) {
		a := newBenchApp(b)
		a.put("/User/benchtotp", "email: benchtotp@example.com\npassword: "+tfPassword+"\n")
		sec := a.enrolTOTP("benchtotp")
		b.ResetTimer()
		for b.Loop() {
			a.clock.Advance(30 * time.Second)
			a.login("benchtotp", sec)
		}
	})
}
