package web_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/account"
	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/notify"
	"github.com/gatehouse/gatehouse/internal/oauth"
	"github.com/gatehouse/gatehouse/internal/policy"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/session"
	"github.com/gatehouse/gatehouse/internal/signin"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
	"github.com/gatehouse/gatehouse/internal/twofactor"
	"github.com/gatehouse/gatehouse/internal/web"
	"github.com/gatehouse/gatehouse/static"
)

var cheapArgon2 = secret.Argon2Params{MemoryKiB: 64, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}

const (
	firstParty    = "webapp"
	thirdParty    = "partner"
	webappSecret  = "verysecret-0123456789-verysecret-0123456789"
	webappURI     = "http://localhost:3001/callback"
	partnerURI    = "https://partner.example/cb"
	logoutURI     = "http://localhost:3001/bye"
	alicePassword = "correct horse battery"
	testState     = "state-1234567890"
)

type testClock struct {
	mu     sync.Mutex
	offset time.Duration
}

// Now follows the real clock (fosite reads it too) plus a test-controlled
// offset, so a test can make time pass for the pages and the sessions.
func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

// env is a running server with the hosted pages, the real OAuth provider and
// a real store.
type env struct {
	t       *testing.T
	st      store.Store
	srv     *httptest.Server
	handler *web.Handler
	clock   *testClock
	tfClock *testClock // the second-factor service's; see nextStep
	hasher  *secret.PasswordHasher
	tf      *twofactor.Service
	// engine is the real sign-in engine; tests of the seam register a
	// factor of their own in it.
	engine *signin.Engine
}

func newEnv(t *testing.T, st store.Store) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{t: t, st: st, clock: &testClock{}, tfClock: &testClock{}, hasher: secret.NewPasswordHasher(cheapArgon2, 0)}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	mux := http.NewServeMux()
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)

	master := secret.RandomBytes(secret.MasterKeyLen)
	rec := &audit.Recorder{Store: st, Logger: logger, Now: e.clock.Now}
	accounts := &account.Authenticator{Store: st, Hasher: e.hasher, Audit: rec, Throttle: account.DefaultThrottle, Now: e.clock.Now}
	provider, err := oauth.New(ctx, oauth.Config{
		Issuer: e.srv.URL, MasterKey: master, Store: st, Hasher: e.hasher,
		Accounts: accounts, Audit: rec, Logger: logger, Now: e.clock.Now,
	})
	if err != nil {
		t.Fatalf("oauth.New: %v", err)
	}
	sessions, err := session.NewManager(session.Config{Store: st, MasterKey: master, Issuer: e.srv.URL, Now: e.clock.Now})
	if err != nil {
		t.Fatalf("session.NewManager: %v", err)
	}
	notifier := &notify.Notifier{Logger: logger, Audit: rec, Now: e.clock.Now, AllowPrivate: true, Retries: -1}
	t.Cleanup(func() { _ = notifier.Close(context.Background()) })
	sealer, err := secret.NewSealer(secret.Derive(master, secret.PurposeAtRest))
	if err != nil {
		t.Fatal(err)
	}
	e.tf = &twofactor.Service{
		Store: st, Sealer: sealer, CodeKey: secret.Derive(master, secret.PurposeCodeMAC),
		Audit: rec, Notifier: notifier, Logger: logger, Now: e.tfClock.Now,
	}
	e.engine = &signin.Engine{Store: st, TwoFactor: e.tf, Policy: &policy.Resolver{Store: st}, Logger: logger, Now: e.clock.Now}
	e.handler = &web.Handler{
		Store: st, Sessions: sessions, OAuth: provider, Accounts: accounts, Audit: rec,
		Logger: logger, Now: e.clock.Now, Issuer: e.srv.URL, TwoFactor: e.tf, SignIn: e.engine,
		OnMissingMessage: func(id string) {
			// The test's own second factor has its own, untranslated text.
			if id != "Enter the fixed code." {
				t.Errorf("page message %q is in no catalog", id)
			}
		},
	}
	e.handler.Register(mux)
	provider.Register(mux)
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static.FS)))

	e.putClient(resource.Client{
		ID: firstParty, Secret: webappSecret, FirstParty: true, Name: "Web App",
		GrantTypes: []string{"code"}, Scope: []string{"openid", "profile", "email"},
		Auth: &resource.ClientAuth{AuthorizationCode: &resource.GrantSettings{
			RedirectURI: resource.StringList{webappURI}, SecretRequired: ptr(true),
		}},
		PostLogoutRedirectURIs: resource.StringList{logoutURI},
	})
	e.putClient(resource.Client{
		ID: thirdParty, Secret: "partner-secret-partner", Name: "Partner App",
		GrantTypes: []string{"code"}, Scope: []string{"openid", "profile", "email"},
		Auth: &resource.ClientAuth{AuthorizationCode: &resource.GrantSettings{
			RedirectURI: resource.StringList{partnerURI}, SecretRequired: ptr(true),
		}},
	})
	e.putUser("alice", "alice@example.com", alicePassword, false)
	return e
}

func ptr[T any](v T) *T { return &v }

func (e *env) putClient(c resource.Client) {
	e.t.Helper()
	ctx := context.Background()
	hash, err := resource.HashWriteOnly(ctx, e.hasher, c.Secret)
	if err != nil {
		e.t.Fatal(err)
	}
	c.Secret = ""
	rec, err := resource.ToStoreClient(c, hash, nil)
	if err != nil {
		e.t.Fatalf("client %s: %v", c.ID, err)
	}
	if _, _, err := e.st.PutClient(ctx, rec, 0); err != nil {
		e.t.Fatalf("put client %s: %v", c.ID, err)
	}
}

func (e *env) putUser(id, email, password string, inactive bool) {
	e.t.Helper()
	ctx := context.Background()
	hash, err := resource.HashWriteOnly(ctx, e.hasher, password)
	if err != nil {
		e.t.Fatal(err)
	}
	rec, err := resource.ToStoreUser(resource.User{ID: id, Email: email, Inactive: inactive}, hash, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	existing, err := e.st.GetUser(ctx, id)
	if err == nil {
		rec.PasswordHash = hash
		if hash == "" {
			rec.PasswordHash = existing.PasswordHash
		}
	}
	if _, _, err := e.st.PutUser(ctx, rec, 0); err != nil {
		e.t.Fatalf("put user %s: %v", id, err)
	}
}

func (e *env) putAuthConfig(a resource.AuthConfig) {
	e.t.Helper()
	rec, err := resource.ToStoreAuthConfig(a, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, _, err := e.st.PutAuthConfig(context.Background(), rec, 0); err != nil {
		e.t.Fatal(err)
	}
}

// authorizeQuery is an authorization request of client to its redirect URI.
func authorizeQuery(client string, extra ...string) url.Values {
	redirect := webappURI
	if client == thirdParty {
		redirect = partnerURI
	}
	q := url.Values{
		"client_id":     {client},
		"response_type": {"code"},
		"redirect_uri":  {redirect},
		"state":         {testState},
		"scope":         {"openid profile"},
		"nonce":         {"nonce-1234567890"},
	}
	for i := 0; i+1 < len(extra); i += 2 {
		q.Set(extra[i], extra[i+1])
	}
	return q
}

// browser is a cookie-keeping client that does not follow redirects, so
// each hop can be inspected.
type browser struct {
	e  *env
	c  *http.Client
	jr *cookiejar.Jar
}

func (e *env) browser() *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return &browser{e: e, jr: jar, c: &http.Client{
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

type page struct {
	status   int
	header   http.Header
	body     string
	location string
}

func (b *browser) do(req *http.Request) page {
	b.e.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.e.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.e.t.Fatal(err)
	}
	return page{status: resp.StatusCode, header: resp.Header, body: string(body), location: resp.Header.Get("Location")}
}

func (b *browser) get(path string) page {
	b.e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.abs(path), nil)
	if err != nil {
		b.e.t.Fatal(err)
	}
	return b.do(req)
}

func (b *browser) post(path string, form url.Values) page {
	b.e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.abs(path), strings.NewReader(form.Encode()))
	if err != nil {
		b.e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

func (b *browser) abs(path string) string {
	if strings.HasPrefix(path, "http://") || strings.HasPrefix(path, "https://") {
		return path
	}
	return b.e.srv.URL + path
}

// follow walks same-server redirects from p until a page or a redirect
// that leaves the server, and returns that last response.
func (b *browser) follow(p page) page {
	b.e.t.Helper()
	for range 10 {
		if p.location == "" || !b.local(p.location) {
			return p
		}
		p = b.get(p.location)
	}
	b.e.t.Fatal("redirect loop")
	return p
}

func (b *browser) local(loc string) bool {
	return strings.HasPrefix(loc, "/") && !strings.HasPrefix(loc, "//") || strings.HasPrefix(loc, b.e.srv.URL+"/")
}

func (b *browser) cookie(name string) *http.Cookie {
	u, _ := url.Parse(b.e.srv.URL)
	for _, c := range b.jr.Cookies(u) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func (b *browser) setCookie(c *http.Cookie) {
	u, _ := url.Parse(b.e.srv.URL)
	b.jr.SetCookies(u, []*http.Cookie{{Name: c.Name, Value: c.Value, Path: "/"}})
}

var csrfField = regexp.MustCompile(`name="_csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, p page) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(p.body)
	if m == nil {
		t.Fatalf("no _csrf field in page (status %d):\n%s", p.status, p.body)
	}
	return m[1]
}

// login fills the password form shown by p and submits it.
func (b *browser) login(p page, username, password string) page {
	b.e.t.Helper()
	return b.post("/auth/login", url.Values{"_csrf": {csrfOf(b.e.t, p)}, "username": {username}, "password": {password}})
}

// logout asks GET /auth/logout?q, which must show the confirmation page
// with the session still signed in, and confirms it: the POST carries the
// page's CSRF token and the same parameters.
func (b *browser) logout(q url.Values) page {
	b.e.t.Helper()
	p := b.get("/auth/logout?" + q.Encode())
	if p.status != http.StatusOK || !strings.Contains(p.body, "Do you want to sign out?") {
		b.e.t.Fatalf("logout without a valid id_token_hint did not ask: status %d location %q\n%s", p.status, p.location, p.body)
	}
	form := url.Values{"_csrf": {csrfOf(b.e.t, p)}}
	for _, k := range []string{"client_id", "id_token_hint", "post_logout_redirect_uri", "state"} {
		if v := q.Get(k); v != "" {
			if !strings.Contains(p.body, `name="`+k+`" value="`) {
				b.e.t.Fatalf("the confirmation form lacks %s:\n%s", k, p.body)
			}
			form.Set(k, v)
		}
	}
	return b.post("/auth/logout", form)
}

// signIn signs alice in with no authorization request.
func (b *browser) signIn() {
	b.e.t.Helper()
	p := b.login(b.get("/auth/login"), "alice", alicePassword)
	if p.status != http.StatusSeeOther {
		b.e.t.Fatalf("sign-in: status %d\n%s", p.status, p.body)
	}
	if p = b.follow(p); !strings.Contains(p.body, `id="signed-in-user"`) {
		b.e.t.Fatalf("not signed in after login:\n%s", p.body)
	}
}

// redirectParams parses a redirect to the client and checks where it goes.
func redirectParams(t *testing.T, p page, wantPrefix string) url.Values {
	t.Helper()
	if p.status != http.StatusFound && p.status != http.StatusSeeOther {
		t.Fatalf("status %d, want a redirect to the client\n%s", p.status, p.body)
	}
	if !strings.HasPrefix(p.location, wantPrefix) {
		t.Fatalf("redirect to %q, want %q", p.location, wantPrefix)
	}
	u, err := url.Parse(p.location)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if u.Fragment != "" {
		if fq, err := url.ParseQuery(u.Fragment); err == nil {
			for k, v := range fq {
				q[k] = v
			}
		}
	}
	return q
}

// exchange redeems code at the token endpoint as the first-party client
// and returns the ID token's claims (decoded, not verified: the oauth
// package's tests verify signatures) and the raw ID token.
func (e *env) exchange(code string) (map[string]any, string) {
	e.t.Helper()
	return e.exchangeAs(firstParty, webappSecret, code)
}

// exchangeAs is exchange for another client registered with webappURI.
func (e *env) exchangeAs(clientID, clientSecret, code string) (map[string]any, string) {
	e.t.Helper()
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {webappURI}}
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+"/auth/token", strings.NewReader(form.Encode()))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clientID, clientSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		IDToken string `json:"id_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || resp.StatusCode != http.StatusOK || tok.IDToken == "" {
		e.t.Fatalf("token endpoint: status %d, %v", resp.StatusCode, err)
	}
	parts := strings.Split(tok.IDToken, ".")
	if len(parts) != 3 {
		e.t.Fatalf("id_token is not a JWS: %q", tok.IDToken)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		e.t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		e.t.Fatal(err)
	}
	return claims, tok.IDToken
}

func eachBackend(t *testing.T, fn func(t *testing.T, e *env)) {
	for _, b := range gormstoretest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) { fn(t, newEnv(t, b.Open(t))) })
	}
}
