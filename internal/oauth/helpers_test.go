package oauth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"
	"golang.org/x/oauth2"

	"github.com/gatehouse/gatehouse/internal/account"
	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

var fastArgon = secret.Argon2Params{MemoryKiB: 64, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}

const (
	testIssuer   = "https://id.example.test"
	alicePass    = "correct horse battery staple"
	webSecret    = "web-secret-0123456789"
	svcSecret    = "svc-secret-0123456789"
	mobileSecret = "mobile-secret-0123456789"
	webRedirect  = "https://app.example.test/cb"
	spaRedirect  = "https://spa.example.test/cb"
)

// testClock is real time plus an offset the test can move forward.
type testClock struct{ off atomic.Int64 }

func (c *testClock) Now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *testClock) Advance(d time.Duration) { c.off.Add(int64(d)) }

type env struct {
	t      testing.TB
	st     store.Store
	p      *Provider
	clock  *testClock
	srv    *httptest.Server
	hasher *secret.PasswordHasher
	master []byte
	// twoFactor, when set before the provider is built (newEnvWith), is
	// Config.TwoFactor.
	twoFactor *twofactor.Service
	// allowPrivate is Config.AllowPrivate (outbound calls to loopback test servers).
	allowPrivate bool
}

// forEachBackend runs fn against every store backend (SQLite always,
// PostgreSQL when GATEHOUSE_TEST_POSTGRES_DSN is set).
func forEachBackend(t *testing.T, fn func(t *testing.T, e *env)) {
	for _, b := range gormstoretest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			fn(t, newEnv(t, b.Open(t)))
		})
	}
}

func newEnv(t testing.TB, st store.Store) *env {
	t.Helper()
	return newEnvWith(t, st, nil)
}

// newEnvWith is newEnv with setup run before the provider is built.
func newEnvWith(t testing.TB, st store.Store, setup func(e *env)) *env {
	t.Helper()
	e := &env{
		t:      t,
		st:     st,
		clock:  &testClock{},
		hasher: secret.NewPasswordHasher(fastArgon, 4),
		master: []byte("0123456789abcdef0123456789abcdef"),
	}
	if setup != nil {
		setup(e)
	}
	p, err := e.newProvider()
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.p = p
	mux := http.NewServeMux()
	p.Register(mux)
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	e.seed()
	return e
}

func (e *env) config() Config {
	logger := slog.New(slog.DiscardHandler)
	rec := &audit.Recorder{Store: e.st, Logger: logger, Now: e.clock.Now}
	return Config{
		Issuer:    testIssuer,
		MasterKey: e.master,
		Store:     e.st,
		Hasher:    e.hasher,
		Accounts:  &account.Authenticator{Store: e.st, Hasher: e.hasher, Audit: rec, Throttle: account.DefaultThrottle, Now: e.clock.Now},
		TwoFactor: e.twoFactor,
		Audit:     rec,
		Logger:    logger,
		Now:       e.clock.Now,

		AllowPrivate: e.allowPrivate,
	}
}

// newProvider is another process on the same database.
func (e *env) newProvider() (*Provider, error) {
	return New(context.Background(), e.config())
}

// seed stores the clients and users most tests use.
func (e *env) seed() {
	e.putClient(resource.Client{
		ID: "web", FirstParty: true,
		GrantTypes: []string{"code", "refresh_token"},
		Scope:      []string{"patient.read"},
		Auth: &resource.ClientAuth{AuthorizationCode: &resource.GrantSettings{
			RedirectURI:  resource.StringList{webRedirect, "http://127.0.0.1/cb"},
			TokenFormat:  "jwt",
			RefreshToken: true,
		}},
		PostLogoutRedirectURIs: resource.StringList{"https://app.example.test/bye"},
	}, webSecret)
	e.putClient(resource.Client{
		ID:         "web-opaque",
		GrantTypes: []string{"authorization_code"},
		Auth: &resource.ClientAuth{AuthorizationCode: &resource.GrantSettings{
			RedirectURI: resource.StringList{webRedirect},
		}},
	}, webSecret)
	e.putClient(resource.Client{
		ID:         "spa",
		GrantTypes: []string{"authorization_code"},
		Auth: &resource.ClientAuth{AuthorizationCode: &resource.GrantSettings{
			RedirectURI:  resource.StringList{spaRedirect},
			RefreshToken: true,
		}},
	}, "")
	e.putClient(resource.Client{
		ID:         "svc",
		GrantTypes: []string{"client_credentials"},
		Scope:      []string{"patient.read", ScopeAdmin},
		Auth:       &resource.ClientAuth{ClientCredentials: &resource.GrantSettings{TokenFormat: "jwt", AccessTokenExpiration: 600}},
	}, svcSecret)
	e.putClient(resource.Client{
		ID:         "svc-opaque",
		GrantTypes: []string{"client_credentials"},
		Scope:      []string{"patient.read"},
	}, svcSecret)
	e.putClient(resource.Client{
		ID:         "mobile",
		GrantTypes: []string{"password"},
		Scope:      []string{"patient.read"},
		Auth:       &resource.ClientAuth{Password: &resource.GrantSettings{RefreshToken: true, AccessTokenExpiration: 300}},
	}, mobileSecret)

	e.putUser(resource.User{ID: "alice", Email: "alice@example.test", EmailVerified: true, PhoneNumber: "+14155550123",
		Name: &resource.HumanName{GivenName: "Alice", FamilyName: "Liddell"}}, alicePass)
	e.putUser(resource.User{ID: "bob", Email: "bob@example.test"}, "bob password 123")
	if err := e.st.PutTwoFactor(context.Background(), store.TwoFactor{UserID: "bob", Method: "totp", Enabled: true,
		Secret: []byte("sealed"), EnrolledAt: time.Now().UTC()}); err != nil {
		e.t.Fatalf("put two factor: %v", err)
	}
}

func (e *env) putClient(c resource.Client, sec string) {
	e.t.Helper()
	ctx := context.Background()
	hash, err := resource.HashWriteOnly(ctx, e.hasher, sec)
	if err != nil {
		e.t.Fatal(err)
	}
	existing, err := e.st.GetClient(ctx, c.ID)
	var ex *store.Client
	if err == nil {
		ex = &existing
	}
	rec, err := resource.ToStoreClient(c, hash, ex)
	if err != nil {
		e.t.Fatalf("client %s: %v", c.ID, err)
	}
	if _, _, err := e.st.PutClient(ctx, rec, 0); err != nil {
		e.t.Fatalf("put client %s: %v", c.ID, err)
	}
	// As the admin API does after a change.
	if e.p != nil {
		e.p.ForgetClient(c.ID)
	}
}

func (e *env) putUser(u resource.User, password string) {
	e.t.Helper()
	ctx := context.Background()
	hash, err := resource.HashWriteOnly(ctx, e.hasher, password)
	if err != nil {
		e.t.Fatal(err)
	}
	existing, err := e.st.GetUser(ctx, u.ID)
	var ex *store.User
	if err == nil {
		ex = &existing
	}
	rec, err := resource.ToStoreUser(u, hash, ex)
	if err != nil {
		e.t.Fatalf("user %s: %v", u.ID, err)
	}
	if _, _, err := e.st.PutUser(ctx, rec, 0); err != nil {
		e.t.Fatalf("put user %s: %v", u.ID, err)
	}
}

type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (r response) str(k string) string { s, _ := r.body[k].(string); return s }

// post sends a form to path, with HTTP Basic when id != "" and a DPoP
// header for each proof.
func (e *env) post(path string, form url.Values, id, sec string, proofs ...string) response {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id != "" {
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(sec))
	}
	for _, p := range proofs {
		req.Header.Add("DPoP", p)
	}
	return e.do(req)
}

func (e *env) do(req *http.Request) response {
	e.t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.read(res)
}

// read consumes res into a response.
func (e *env) read(res *http.Response) response {
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	out := response{status: res.StatusCode, header: res.Header, raw: string(b)}
	if len(b) > 0 {
		_ = json.Unmarshal(b, &out.body)
	}
	return out
}

func (e *env) get(path string, bearer string) response {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.srv.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	return e.do(req)
}

func (e *env) clientCredentials(id, sec, scope string) response {
	e.t.Helper()
	return e.post(PathToken, url.Values{"grant_type": {"client_credentials"}, "scope": {scope}}, id, sec)
}

func (e *env) introspect(token string) response {
	e.t.Helper()
	return e.post(PathIntrospect, url.Values{"token": {token}}, "svc", svcSecret)
}

// verifier returns a PKCE verifier of n characters.
func verifier(n int) string {
	s := strings.Repeat(base64.RawURLEncoding.EncodeToString(secret.RandomBytes(96)), 2)
	return s[:n]
}

func challenge(v string) string {
	h := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// authorizeQuery is a code request for client with PKCE challenge ch ("" for none).
func authorizeQuery(clientID, redirect, ch string, scopes ...string) url.Values {
	q := url.Values{
		"client_id":     {clientID},
		"response_type": {"code"},
		"redirect_uri":  {redirect},
		"state":         {"state-" + secret.RandomToken(8)},
		"scope":         {strings.Join(scopes, " ")},
	}
	if ch != "" {
		q.Set("code_challenge", ch)
		q.Set("code_challenge_method", "S256")
	}
	return q
}

func (e *env) parse(q url.Values) (*AuthorizeRequest, error) {
	r := httptest.NewRequest(http.MethodGet, PathAuthorize+"?"+q.Encode(), nil)
	return e.p.ParseAuthorize(r.Context(), r)
}

func aliceGrant() Grant {
	return Grant{Subject: "alice", SessionID: "sid-1", ACR: "1", AuthTime: time.Now().Add(-time.Minute), AMR: []string{"pwd"}}
}

// complete runs ParseAuthorize and CompleteAuthorize and returns the redirect.
func (e *env) complete(q url.Values, g Grant) *url.URL {
	e.t.Helper()
	ar, err := e.parse(q)
	if err != nil {
		e.t.Fatalf("ParseAuthorize: %v", err)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, PathAuthorize+"?"+q.Encode(), nil)
	if err := e.p.CompleteAuthorize(rec, req, ar, g); err != nil {
		e.t.Fatalf("CompleteAuthorize: %v", err)
	}
	if rec.Code != http.StatusSeeOther && rec.Code != http.StatusFound {
		e.t.Fatalf("CompleteAuthorize status %d, body %s", rec.Code, rec.Body)
	}
	u, err := url.Parse(rec.Header().Get("Location"))
	if err != nil {
		e.t.Fatal(err)
	}
	if got := u.Query().Get("state"); got != q.Get("state") {
		e.t.Fatalf("state = %q, want %q", got, q.Get("state"))
	}
	return u
}

// code obtains a code for alice.
func (e *env) code(q url.Values) string {
	e.t.Helper()
	u := e.complete(q, aliceGrant())
	c := u.Query().Get("code")
	if c == "" {
		e.t.Fatalf("no code in %s", u)
	}
	return c
}

func (e *env) exchange(clientID, sec, code, redirect, verifier string) response {
	e.t.Helper()
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect}}
	if verifier != "" {
		form.Set("code_verifier", verifier)
	}
	if sec == "" {
		form.Set("client_id", clientID)
		return e.post(PathToken, form, "", "")
	}
	return e.post(PathToken, form, clientID, sec)
}

func (e *env) refresh(clientID, sec, rt string) response {
	e.t.Helper()
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
	if sec == "" {
		form.Set("client_id", clientID)
		return e.post(PathToken, form, "", "")
	}
	return e.post(PathToken, form, clientID, sec)
}

// webTokens runs the code flow for the "web" client and returns the token response.
func (e *env) webTokens(scopes ...string) response {
	e.t.Helper()
	v := verifier(64)
	c := e.code(authorizeQuery("web", webRedirect, challenge(v), scopes...))
	res := e.exchange("web", webSecret, c, webRedirect, v)
	if res.status != http.StatusOK {
		e.t.Fatalf("exchange: %d %s", res.status, res.raw)
	}
	return res
}

// verifyJWT checks tok's signature against the served JWKS with go-jose and
// returns the header and claims.
func (e *env) verifyJWT(tok string) (jose.Header, map[string]any) {
	e.t.Helper()
	res := e.get(PathJWKS, "")
	var set jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(res.raw), &set); err != nil {
		e.t.Fatalf("jwks: %v", err)
	}
	obj, err := jose.ParseSigned(tok)
	if err != nil {
		e.t.Fatalf("parse JWT: %v", err)
	}
	h := obj.Signatures[0].Protected
	keys := set.Key(h.KeyID)
	if len(keys) != 1 {
		e.t.Fatalf("kid %q not in JWKS (%d keys)", h.KeyID, len(set.Keys))
	}
	if h.Algorithm != keys[0].Algorithm || (h.Algorithm != "ES256" && h.Algorithm != "RS256") {
		e.t.Fatalf("alg = %s, the JWKS key %s is for %s", h.Algorithm, h.KeyID, keys[0].Algorithm)
	}
	payload, err := obj.Verify(keys[0].Key)
	if err != nil {
		e.t.Fatalf("signature does not verify: %v", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		e.t.Fatal(err)
	}
	return h, claims
}

func (e *env) oauth2Config(clientID, sec string, style oauth2.AuthStyle, redirect string, scopes ...string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     clientID,
		ClientSecret: sec,
		RedirectURL:  redirect,
		Scopes:       scopes,
		Endpoint: oauth2.Endpoint{
			AuthURL:   e.srv.URL + PathAuthorize,
			TokenURL:  e.srv.URL + PathToken,
			AuthStyle: style,
		},
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func clientWithPKCE() resource.Client {
	return resource.Client{
		ID:         "strict",
		GrantTypes: []string{"authorization_code"},
		Auth: &resource.ClientAuth{AuthorizationCode: &resource.GrantSettings{
			RedirectURI: resource.StringList{webRedirect},
			PKCE:        true,
		}},
	}
}

var (
	gormstoreOpen = gormstoretest.Open
	backendsFor   = gormstoretest.Backends
)

// backendName is the backend sub-test name forEachBackend put in t.Name().
func backendName(t *testing.T) string {
	parts := strings.Split(t.Name(), "/")
	if len(parts) < 2 {
		return ""
	}
	return parts[1]
}
