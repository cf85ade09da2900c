package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/gatehouse/gatehouse/internal/account"
	"github.com/gatehouse/gatehouse/internal/admin"
	"github.com/gatehouse/gatehouse/internal/api"
	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/notify"
	"github.com/gatehouse/gatehouse/internal/oauth"
	"github.com/gatehouse/gatehouse/internal/policy"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/signin"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

var (
	testMaster = bytes.Repeat([]byte{9}, secret.MasterKeyLen)
	cheap      = secret.Argon2Params{MemoryKiB: 64, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}
)

const (
	appOrigin    = "https://app.example"
	otherOrigin  = "https://other.example"
	adminUser    = "admin"
	adminPass    = "admin-password"
	userPassword = "correct horse battery"
	alicePhone   = "+14155554567"
	bobPhone     = "+14155550000"
	spaClient    = "spa"
	otherClient  = "other-spa"
	backend      = "backend"
	backendKey   = "backend-secret-value"
)

// clock is the injected time source; tests move it by hand. It starts at
// the real time so fosite's own clock checks agree with ours.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// gateway is a local webhook receiver that keeps the codes it is sent, the
// way an SMS or e-mail gateway would.
type gateway struct {
	srv    *httptest.Server
	mu     sync.Mutex
	events []codeEvent
}

type codeEvent struct {
	Event       string `json:"event"`
	Token       string `json:"token"`
	Link        string `json:"link"`
	Channel     string `json:"channel"`
	Destination string `json:"destination"`
	User        struct {
		ID          string `json:"id"`
		Email       string `json:"email"`
		PhoneNumber string `json:"phoneNumber"`
	} `json:"user"`
}

func newGateway(t testing.TB) *gateway {
	g := &gateway{}
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev codeEvent
		if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
			http.Error(w, "bad json", http.StatusBadRequest)
			return
		}
		g.mu.Lock()
		g.events = append(g.events, ev)
		g.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(g.srv.Close)
	return g
}

// last returns the newest code sent to dest.
func (g *gateway) last(t testing.TB, dest string) string {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	for i := len(g.events) - 1; i >= 0; i-- {
		if g.events[i].Destination == dest {
			return g.events[i].Token
		}
	}
	t.Fatalf("no code was sent to %s", dest)
	return ""
}

// lastEvent is the newest delivery to dest.
func (g *gateway) lastEvent(t testing.TB, dest string) codeEvent {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	for i := len(g.events) - 1; i >= 0; i-- {
		if g.events[i].Destination == dest {
			return g.events[i]
		}
	}
	t.Fatalf("no delivery to %s", dest)
	return codeEvent{}
}

func (g *gateway) count(dest string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, ev := range g.events {
		if ev.Destination == dest {
			n++
		}
	}
	return n
}

// env is a server with the API, the OAuth endpoints and the admin API on
// one mux, over a real store.
type env struct {
	t     testing.TB
	st    store.Store
	clock *clock
	gw    *gateway
	tf    *twofactor.Service
	prov  *oauth.Provider
	api   *api.Handler
	srv   *httptest.Server
	hash  *secret.PasswordHasher
}

type option func(*api.Handler)

func newEnv(t testing.TB, st store.Store, opts ...option) *env {
	t.Helper()
	ctx := context.Background()
	c := &clock{t: time.Now().UTC().Truncate(time.Second)}
	logger := slog.New(slog.DiscardHandler)
	hasher := secret.NewPasswordHasher(cheap, 8)
	rec := &audit.Recorder{Store: st, Logger: logger, Now: c.Now}
	accounts := &account.Authenticator{Store: st, Hasher: hasher, Audit: rec, Throttle: account.DefaultThrottle, Now: c.Now}
	sealer, err := secret.NewSealer(secret.Derive(testMaster, secret.PurposeAtRest))
	if err != nil {
		t.Fatal(err)
	}
	notifier := &notify.Notifier{AllowPrivate: true, Retries: -1, Logger: logger, Now: c.Now}
	t.Cleanup(func() { _ = notifier.Close(context.Background()) })
	tf := &twofactor.Service{
		Store: st, Sealer: sealer, CodeKey: secret.Derive(testMaster, secret.PurposeCodeMAC),
		Audit: rec, Notifier: notifier, Logger: logger, Now: c.Now,
	}
	prov, err := oauth.New(ctx, oauth.Config{
		Issuer: "http://127.0.0.1:8080", MasterKey: testMaster, Store: st, Hasher: hasher,
		Accounts: accounts, TwoFactor: tf, Audit: rec, Logger: logger, Now: c.Now,
	})
	if err != nil {
		t.Fatalf("oauth provider: %v", err)
	}
	adminHash, err := hasher.Hash(ctx, adminPass)
	if err != nil {
		t.Fatal(err)
	}
	adm := &admin.Handler{Store: st, Hasher: hasher, Audit: rec, Logger: logger, Now: c.Now, TwoFactor: tf,
		AdminUser: adminUser, AdminPasswordHash: adminHash}
	h := &api.Handler{
		Store: st, OAuth: prov, TwoFactor: tf, Accounts: accounts, Hasher: hasher,
		Audit: rec, Logger: logger, Now: c.Now, Admin: adm.RequireAdmin,
		SignIn:  &signin.Engine{Store: st, TwoFactor: tf, Policy: &policy.Resolver{Store: st}, Logger: logger, Now: c.Now},
		SignUps: &account.SignUps{Store: st, TwoFactor: tf, Audit: rec, Sealer: sealer, Now: c.Now},
		Passwords: &account.Passwords{Store: st, Hasher: hasher, Audit: rec, TwoFactor: tf, Logger: logger, Now: c.Now,
			ResetPage: "http://127.0.0.1:8080/auth/reset-password"},
	}
	for _, o := range opts {
		o(h)
	}
	// One mux with the OAuth endpoints, the admin API and this API: a
	// clash between their patterns would panic here.
	mux := http.NewServeMux()
	prov.Register(mux)
	adm.Register(mux)
	h.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	e := &env{t: t, st: st, clock: c, gw: newGateway(t), tf: tf, prov: prov, api: h, srv: srv, hash: hasher}
	e.authConfig(nil)
	e.client(resource.Client{ID: spaClient, GrantTypes: []string{"password"}, Scope: []string{"profile"},
		AllowedOrigins: []string{appOrigin},
		Auth:           &resource.ClientAuth{Password: &resource.GrantSettings{TokenFormat: "jwt", RefreshToken: true}}})
	e.client(resource.Client{ID: otherClient, GrantTypes: []string{"password"}, AllowedOrigins: []string{otherOrigin}})
	e.client(resource.Client{ID: backend, Secret: backendKey, GrantTypes: []string{"password"}})
	return e
}

// authConfig stores the default AuthConfig: the gateway as webhook, sign-up
// on, then whatever edit changes.
func (e *env) authConfig(edit func(*resource.AuthConfig)) {
	e.t.Helper()
	ac := resource.AuthConfig{ID: resource.DefaultAuthConfigID,
		TwoFactor: &resource.AuthConfigTwoFactor{IssuerName: "Gatehouse Test", Webhook: &resource.Webhook{Endpoint: e.gw.srv.URL}},
		SignUp:    &resource.SignUp{Enabled: true}}
	if edit != nil {
		edit(&ac)
	}
	ctx := context.Background()
	var existing *store.AuthConfig
	if cur, err := e.st.GetAuthConfig(ctx, ac.ID); err == nil {
		existing = &cur
	}
	rec, err := resource.ToStoreAuthConfig(ac, existing)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, _, err := e.st.PutAuthConfig(ctx, rec, 0); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) client(c resource.Client) {
	e.t.Helper()
	ctx := context.Background()
	hash, err := resource.HashWriteOnly(ctx, e.hash, c.Secret)
	if err != nil {
		e.t.Fatal(err)
	}
	rec, err := resource.ToStoreClient(c, hash, nil)
	if err != nil {
		e.t.Fatalf("client %s: %v", c.ID, err)
	}
	if _, _, err := e.st.PutClient(ctx, rec, 0); err != nil {
		e.t.Fatal(err)
	}
}

// user creates a user with userPassword.
func (e *env) user(u resource.User) store.User {
	e.t.Helper()
	ctx := context.Background()
	hash, err := resource.HashWriteOnly(ctx, e.hash, userPassword)
	if err != nil {
		e.t.Fatal(err)
	}
	rec, err := resource.ToStoreUser(u, hash, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	out, _, err := e.st.PutUser(ctx, rec, 0)
	if err != nil {
		e.t.Fatalf("user %s: %v", u.ID, err)
	}
	return out
}

// smsUser creates a user whose phone is verified and whose second factor
// is SMS codes.
func (e *env) smsUser(id, phone string) store.User {
	e.t.Helper()
	u := e.user(resource.User{ID: id, Email: id + "@example.com", PhoneNumber: phone, PhoneVerified: true})
	if _, err := e.tf.EnableCodeMethod(context.Background(), twofactor.EnableCodeInput{
		UserID: id, Method: twofactor.MethodSMS, Webhook: notify.Webhook{Endpoint: e.gw.srv.URL},
	}); err != nil {
		e.t.Fatal(err)
	}
	return u
}

// totpUser creates a user with TOTP enabled; it returns the secret and the
// recovery codes. The clock moves one step on, past the enrolment's code.
func (e *env) totpUser(id string) (string, []string) {
	e.t.Helper()
	u := e.user(resource.User{ID: id, Email: id + "@example.com"})
	en, err := e.tf.BeginTOTP(u, "Gatehouse Test")
	if err != nil {
		e.t.Fatal(err)
	}
	codes, err := e.tf.ConfirmTOTP(context.Background(), twofactor.ConfirmInput{UserID: id, Secret: en.Secret, Code: e.totp(en.Secret), PastSteps: 1})
	if err != nil {
		e.t.Fatal(err)
	}
	e.clock.Advance(30 * time.Second)
	return en.Secret, codes
}

// totp is the current code of secret, from pquerna/otp at the test clock.
func (e *env) totp(secret string) string {
	e.t.Helper()
	code, err := totp.GenerateCodeCustom(secret, e.clock.Now(), totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		e.t.Fatal(err)
	}
	return code
}

// req describes one API call.
type req struct {
	method string
	path   string
	body   any    // map → JSON; url.Values → form; string → raw JSON
	bearer string // Authorization: Bearer
	origin string
	basic  [2]string
	ctype  string // overrides the Content-Type
}

type resp struct {
	status int
	body   map[string]any
	header http.Header
	raw    string
}

func (r resp) str(k string) string {
	s, _ := r.body[k].(string)
	return s
}

func (r resp) list(k string) []any {
	l, _ := r.body[k].([]any)
	return l
}

func (e *env) do(q req) resp {
	e.t.Helper()
	var rd io.Reader
	ctype := ""
	switch b := q.body.(type) {
	case nil:
	case url.Values:
		rd, ctype = strings.NewReader(b.Encode()), "application/x-www-form-urlencoded"
	case string:
		rd, ctype = strings.NewReader(b), "application/json"
	case []byte:
		rd, ctype = bytes.NewReader(b), "application/json"
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd, ctype = bytes.NewReader(j), "application/json"
	}
	if q.method == "" {
		q.method = http.MethodPost
	}
	r, err := http.NewRequest(q.method, e.srv.URL+q.path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if q.ctype != "" {
		ctype = q.ctype
	}
	if ctype != "" {
		r.Header.Set("Content-Type", ctype)
	}
	if q.bearer != "" {
		r.Header.Set("Authorization", "Bearer "+q.bearer)
	}
	if q.basic[0] != "" {
		r.SetBasicAuth(q.basic[0], q.basic[1])
	}
	if q.origin != "" {
		r.Header.Set("Origin", q.origin)
	}
	res, err := http.DefaultClient.Do(r)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	out := resp{status: res.StatusCode, header: res.Header, raw: string(raw)}
	if len(bytes.TrimSpace(raw)) > 0 {
		_ = json.Unmarshal(raw, &out.body)
	}
	if res.StatusCode >= 500 {
		e.t.Errorf("%s %s answered %d: %s", q.method, q.path, res.StatusCode, raw)
	}
	return out
}

// post is a JSON POST.
func (e *env) post(path string, body map[string]any) resp {
	e.t.Helper()
	return e.do(req{path: path, body: body})
}

// want fails the test unless r has the status (and, for errors, the code).
func want(t testing.TB, r resp, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.raw)
	}
	if code != "" && r.str("error") != code {
		t.Fatalf("error %q, want %q: %s", r.str("error"), code, r.raw)
	}
}

// signIn posts a password sign-in for the SPA client.
func (e *env) signIn(username string) resp {
	e.t.Helper()
	return e.post(api.PathSignIn, map[string]any{"username": username, "password": userPassword, "client_id": spaClient})
}

// accessToken signs a user without a second factor in and returns the
// access token.
func (e *env) accessToken(username string) string {
	e.t.Helper()
	r := e.signIn(username)
	want(e.t, r, http.StatusOK, "")
	if r.str("status") != api.StatusComplete || r.str("access_token") == "" {
		e.t.Fatalf("sign-in did not complete: %s", r.raw)
	}
	return r.str("access_token")
}

// amrOf reads the amr of an access token.
func (e *env) amrOf(token string) []string {
	e.t.Helper()
	ut, err := e.prov.VerifyUserToken(context.Background(), token)
	if err != nil {
		e.t.Fatalf("verify access token: %v", err)
	}
	return ut.AMR
}

// forEachBackend runs fn against every store backend.
func forEachBackend(t *testing.T, fn func(t *testing.T, e *env)) {
	for _, b := range gormstoretest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			fn(t, newEnv(t, b.Open(t)))
		})
	}
}
