package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

// The interoperability suite drives Gatehouse with openid-client (and
// oauth4webapi under it) from the npm registry: independent, widely used
// client libraries, so "works with our own tests" is not the only proof.
// It needs Node.js and `npm ci --prefix interop`; .ci/run does both and sets
// GATEHOUSE_TEST_INTEROP=1, and then a missing piece fails the test.

const (
	interopRedirect   = "http://127.0.0.1:5555/cb"
	interopPostLogout = "http://127.0.0.1:5555/bye"
	interopSPAOrigin  = "https://spa.example"
	interopSPACB      = "https://spa.example/cb"
	interopResource   = "https://api.example/orders"
)

func interopDir(t *testing.T) string {
	t.Helper()
	if os.Getenv("GATEHOUSE_TEST_INTEROP") == "" {
		t.Skip("set GATEHOUSE_TEST_INTEROP=1 after `npm ci --prefix interop` to run the openid-client suite")
	}
	dir, err := filepath.Abs(filepath.Join("..", "..", "interop"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "openid-client")); err != nil {
		t.Fatalf("openid-client is not installed: run `npm ci --prefix interop` (%v)", err)
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("Node.js is required: %v", err)
	}
	return dir
}

// rpRun runs one scenario of interop/rp.mjs and answers its browser steps
// with b.
type rpRun struct {
	t   *testing.T
	app *testApp
	dir string
	b   *browser
}

var hiddenInput = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

func (r *rpRun) run(scenario string, env map[string]string) string {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "rp.mjs", scenario)
	cmd.Dir = r.dir
	cmd.Env = append(os.Environ(), "GATEHOUSE_ISSUER="+r.app.URL)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		r.t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		r.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	result := ""
	lines := bufio.NewScanner(stdout)
	lines.Buffer(make([]byte, 64<<10), 1<<20)
	for lines.Scan() {
		kind, arg, _ := strings.Cut(lines.Text(), " ")
		switch kind {
		case "AUTHORIZE":
			fmt.Fprintln(stdin, r.authorize(arg))
		case "LOGOUT":
			p := r.b.get(arg)
			fmt.Fprintln(stdin, "DONE "+p.location)
		case "LOGOUT_POST":
			u, _ := url.Parse(arg)
			p := r.b.post(r.app.URL+u.Path, u.Query())
			fmt.Fprintln(stdin, "DONE "+p.location)
		case "RESULT":
			result = arg
		default:
			r.t.Logf("rp: %s", lines.Text())
		}
	}
	_, _ = io.Copy(io.Discard, stdout)
	if err := cmd.Wait(); err != nil {
		r.t.Fatalf("scenario %s: %v\n%s", scenario, err, stderr.String())
	}
	if result == "" {
		r.t.Fatalf("scenario %s gave no result\n%s", scenario, stderr.String())
	}
	return result
}

// authorize signs alice in on the hosted pages and returns the callback
// the RP gets: a redirect, or the fields of a form_post page.
func (r *rpRun) authorize(authURL string) string {
	r.t.Helper()
	p := r.b.get(authURL)
	if p.location == "" && strings.HasPrefix(p.url.Path, "/auth/login") {
		p = r.b.submit(p, "/auth/login", url.Values{"username": {"alice@example.com"}, "password": {"password"}})
	}
	if p.location == "" && p.url.Path == "/auth/consent" {
		p = r.b.submit(p, "/auth/consent", url.Values{"decision": {"allow"}})
	}
	if p.location != "" {
		return "CALLBACK " + p.location
	}
	fields := url.Values{}
	for _, m := range hiddenInput.FindAllStringSubmatch(p.body, -1) {
		fields.Add(html.UnescapeString(m[1]), html.UnescapeString(m[2]))
	}
	if !fields.Has("code") && !fields.Has("error") {
		r.t.Fatalf("the sign-in did not answer the client; ended at %s %d:\n%s", p.url, p.status, p.body)
	}
	return "FORM " + fields.Encode()
}

func TestInteropWithOpenIDClient(t *testing.T) {
	dir := interopDir(t)
	// Private addresses: the back-channel logout receiver is on loopback.
	app := startApp(t, gormstoretest.Open(t), func(c *config.Config) { c.Webhook.AllowPrivate = true })
	logouts := newLogoutReceiver(t, 0)
	app.mustPut("/User/alice", userYAML)
	for id, extra := range map[string]string{
		"rp-web":       "",
		"rp-web-es256": "id_token_signed_response_alg: ES256",
		"rp-web-par":   "require_pushed_authorization_requests: true",
	} {
		app.mustPut("/Client/"+id, extra+`
secret: rp-web-secret-0123456789
first_party: true
grant_types: [code, refresh_token]
scope: [openid, email, offline_access]
post_logout_redirect_uri: '`+interopPostLogout+`'
auth:
  authorization_code:
    redirect_uri: '`+interopRedirect+`'
    secret_required: true
    refresh_token: true
`)
	}
	// A web app that authenticates with private_key_jwt: its key pair is
	// made here, the public half registered, the private half given to the RP.
	assertionKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	publicJWKS, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: assertionKey.Public(), KeyID: "rp-key-1", Use: "sig"}}})
	privateJWK, _ := json.Marshal(jose.JSONWebKey{Key: assertionKey, KeyID: "rp-key-1", Algorithm: "ES256"})
	app.mustPut("/Client/rp-web-pkjwt", `
first_party: true
grant_types: [code, refresh_token]
scope: [openid, email, offline_access]
token_endpoint_auth_method: private_key_jwt
token_endpoint_auth_signing_alg: ES256
jwks: `+string(publicJWKS)+`
backchannel_logout_uri: '`+logouts.URL+`/logout'
post_logout_redirect_uri: '`+interopPostLogout+`'
auth:
  authorization_code:
    redirect_uri: '`+interopRedirect+`'
    refresh_token: true
`)
	app.mustPut("/Client/rp-spa", `
first_party: true
grant_types: [authorization_code]
scope: [openid, email, offline_access]
allowed_origins: ['`+interopSPAOrigin+`']
auth:
  authorization_code:
    redirect_uri: '`+interopSPACB+`'
    secret_required: false
    pkce: true
`)
	app.mustPut("/Client/rp-svc", `
secret: rp-svc-secret-0123456789
grant_types: [client_credentials]
audience: ['`+interopResource+`']
`)
	web := map[string]string{
		"RP_CLIENT_ID": "rp-web", "RP_CLIENT_SECRET": "rp-web-secret-0123456789", "RP_REDIRECT_URI": interopRedirect,
		"RP_POST_LOGOUT_URI": interopPostLogout, "RP_EXPECT_SUB": "alice", "RP_EXPECT_EMAIL": "alice@example.com",
	}
	with := func(base map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range base {
			out[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	rp := func(t *testing.T) *rpRun { return &rpRun{t: t, app: app, dir: dir, b: app.newBrowser()} }

	t.Run("a confidential web app signs in with code and PKCE, refreshes, revokes and logs out by GET", func(t *testing.T) {
		rp(t).run("confidential", web)
	})
	t.Run("discovery and the JWKS list what the library needs", func(t *testing.T) {
		rp(t).run("discovery", web)
	})
	t.Run("an app registered for ES256 ID tokens validates them", func(t *testing.T) {
		rp(t).run("confidential", with(web, "RP_CLIENT_ID", "rp-web-es256", "RP_EXPECT_ALG", "ES256"))
	})
	t.Run("an app that must push its authorization requests signs in through PAR", func(t *testing.T) {
		rp(t).run("confidential", with(web, "RP_CLIENT_ID", "rp-web-par", "RP_PAR", "1"))
	})
	t.Run("an app that authenticates with private_key_jwt signs in, refreshes, introspects and revokes", func(t *testing.T) {
		rp(t).run("confidential", with(web, "RP_CLIENT_ID", "rp-web-pkjwt", "RP_PRIVATE_JWK", string(privateJWK)))
		// Its logout by GET reached the app's back channel too.
		var lc logoutClaims
		verifyJWT(t, app, logouts.wait(t), &lc)
		if lc.Audience != "rp-web-pkjwt" || lc.Subject != "alice" || lc.SID == "" {
			t.Fatalf("logout token claims %+v", lc)
		}
	})
	t.Run("an app binds its tokens to a DPoP key, calls userinfo with proofs and refreshes with that key only", func(t *testing.T) {
		rp(t).run("dpop", web)
	})
	t.Run("the same app logs out by POST", func(t *testing.T) {
		rp(t).run("confidential", with(web, "RP_LOGOUT_BY_POST", "1"))
	})
	t.Run("a public app gets its code by form_post", func(t *testing.T) {
		rp(t).run("formPost", map[string]string{"RP_CLIENT_ID": "rp-spa", "RP_REDIRECT_URI": interopSPACB, "RP_EXPECT_SUB": "alice"})
	})
	t.Run("a browser app's preflight to the token endpoint is answered for its origin only", func(t *testing.T) {
		rp(t).run("cors", map[string]string{"RP_CLIENT_ID": "rp-spa", "RP_ORIGIN": interopSPAOrigin})
	})
	t.Run("a service asks for a token for one resource server", func(t *testing.T) {
		rp(t).run("resource", map[string]string{"RP_CLIENT_ID": "rp-svc", "RP_CLIENT_SECRET": "rp-svc-secret-0123456789", "RP_RESOURCE": interopResource})
	})
}
