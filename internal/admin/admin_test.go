package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

const (
	adminUser     = "admin"
	adminPassword = "correct horse battery staple"
)

var fastArgon = secret.Argon2Params{MemoryKiB: 64, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}

// The Aidbox documentation's examples, exactly as written there.
const (
	aidboxAuthConfig = `twoFactor:
  issuerName: my-app
  validPastTokensCount: 3
  webhook: {endpoint: https://my-app.com, timeout: 500}
`
	aidboxClient = `secret: verysecret-0123456789
first_party: true
grant_types: [code]
auth:
  authorization_code:
    redirect_uri: 'http://localhost:3001'
    access_token_expiration: 360
    token_format: jwt
    secret_required: true
    refresh_token: true
`
	aidboxUser = `id: my-user
password: password
`
)

// offline resolves nothing, as on this machine: a webhook host that does not
// resolve is accepted at save time.
func offline(context.Context, string) ([]net.IP, error) {
	return nil, &net.DNSError{Err: "no such host", IsNotFound: true}
}

type env struct {
	t   *testing.T
	st  store.Store
	h   *Handler
	mux *http.ServeMux
	now time.Time
}

func newEnv(t *testing.T, st store.Store) *env {
	t.Helper()
	hasher := secret.NewPasswordHasher(fastArgon, 4)
	phc, err := hasher.Hash(context.Background(), adminPassword)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, st: st, now: time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)}
	logger := slog.New(slog.DiscardHandler)
	clock := func() time.Time { return e.now }
	e.h = &Handler{
		Store:             st,
		Hasher:            hasher,
		Audit:             &audit.Recorder{Store: st, Logger: logger, Now: clock},
		Logger:            logger,
		Now:               clock,
		AdminUser:         adminUser,
		AdminPasswordHash: phc,
		Options:           resource.Options{LookupIP: offline},
	}
	if e.h.Sealer, err = secret.NewSealer(bytes.Repeat([]byte{7}, 32)); err != nil {
		t.Fatal(err)
	}
	e.mux = http.NewServeMux()
	e.h.Register(e.mux)
	return e
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response is not JSON (%d): %s", r.status, r.body)
	}
	return m
}

// expressions lists the expression paths of an OperationOutcome body.
func (r response) expressions(t *testing.T) []string {
	t.Helper()
	m := r.json(t)
	if m["resourceType"] != "OperationOutcome" {
		t.Fatalf("not an OperationOutcome: %s", r.body)
	}
	var out []string
	for _, is := range m["issue"].([]any) {
		exprs, _ := is.(map[string]any)["expression"].([]any)
		for _, e := range exprs {
			out = append(out, e.(string))
		}
	}
	return out
}

type req struct {
	method, path, body, contentType, accept, ifMatch string
	auth                                             string // "" = admin Basic; "none" = no header; else the header value
}

func (e *env) do(r req) response {
	e.t.Helper()
	hr := httptest.NewRequest(r.method, r.path, strings.NewReader(r.body))
	hr.RemoteAddr = "192.0.2.1:1234"
	if r.contentType != "" {
		hr.Header.Set("Content-Type", r.contentType)
	}
	if r.accept != "" {
		hr.Header.Set("Accept", r.accept)
	}
	if r.ifMatch != "" {
		hr.Header.Set("If-Match", r.ifMatch)
	}
	switch r.auth {
	case "":
		hr.SetBasicAuth(adminUser, adminPassword)
	case "none":
	default:
		hr.Header.Set("Authorization", r.auth)
	}
	rec := httptest.NewRecorder()
	e.mux.ServeHTTP(rec, hr)
	return response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
}

func (e *env) putYAML(path, body string) response {
	return e.do(req{method: http.MethodPut, path: path, body: body, contentType: "text/yaml"})
}

func (e *env) get(path string) response { return e.do(req{method: http.MethodGet, path: path}) }

// mustStatus fails unless the response has the status.
func mustStatus(t *testing.T, r response, want int) {
	t.Helper()
	if r.status != want {
		t.Fatalf("status %d, want %d: %s", r.status, want, r.body)
	}
}

// noSecrets fails if a response body shows any secret material.
func noSecrets(t *testing.T, body []byte, secrets ...string) {
	t.Helper()
	for _, s := range append(secrets, "$argon2id", "SecretHash", "secretHash") {
		if bytes.Contains(body, []byte(s)) {
			t.Fatalf("response shows %q: %s", s, body)
		}
	}
}

func TestAidboxExamplesRoundTrip(t *testing.T) {
	for _, be := range gormstoretest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			e := newEnv(t, be.Open(t))
			examples := []struct {
				path, body string
				writeOnly  []string // keys absent from the read-back
				secrets    []string
			}{
				{"/AuthConfig/myconfig", aidboxAuthConfig, nil, nil},
				{"/Client/mywebapp", aidboxClient, []string{"secret"}, []string{"verysecret-0123456789"}},
				{"/User/my-user", aidboxUser, []string{"password"}, []string{"password: password", `"password"`}},
			}
			for _, ex := range examples {
				t.Run("PUT "+ex.path+" in YAML then read it back in JSON and YAML", func(t *testing.T) {
					put := e.putYAML(ex.path, ex.body)
					mustStatus(t, put, http.StatusCreated)
					if put.header.Get("ETag") != `W/"1"` || put.header.Get("Location") != ex.path {
						t.Fatalf("headers %v", put.header)
					}
					noSecrets(t, put.body, ex.secrets...)

					var want map[string]any
					if err := yaml.Unmarshal([]byte(ex.body), &want); err != nil {
						t.Fatal(err)
					}
					for _, k := range ex.writeOnly {
						delete(want, k)
					}
					typ, id, _ := strings.Cut(strings.TrimPrefix(ex.path, "/"), "/")
					want["id"] = id

					asJSON := e.get(ex.path)
					mustStatus(t, asJSON, http.StatusOK)
					if ct := asJSON.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
						t.Fatalf("content type %q", ct)
					}
					noSecrets(t, asJSON.body, ex.secrets...)
					gotJSON := asJSON.json(t)

					asYAML := e.do(req{method: http.MethodGet, path: ex.path, accept: "text/yaml"})
					mustStatus(t, asYAML, http.StatusOK)
					if ct := asYAML.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/yaml") {
						t.Fatalf("content type %q", ct)
					}
					noSecrets(t, asYAML.body, ex.secrets...)
					var gotYAML map[string]any
					if err := yaml.Unmarshal(asYAML.body, &gotYAML); err != nil {
						t.Fatalf("YAML response: %v\n%s", err, asYAML.body)
					}

					for name, got := range map[string]map[string]any{"JSON": gotJSON, "YAML": gotYAML} {
						meta, _ := got["meta"].(map[string]any)
						if got["resourceType"] != typ || meta["versionId"] != "1" || meta["lastUpdated"] == nil {
							t.Fatalf("%s read-back lacks resourceType/meta: %v", name, got)
						}
						delete(got, "meta")
						delete(got, "resourceType")
						if typ == resource.TypeUser {
							tf, _ := got["twoFactor"].(map[string]any)
							if tf["enabled"] != false {
								t.Fatalf("%s: user twoFactor = %v", name, got["twoFactor"])
							}
							delete(got, "twoFactor")
						}
						if !sameJSON(got, want) {
							t.Fatalf("%s read-back differs from what was put:\n got %v\nwant %v", name, got, want)
						}
					}

					again := e.putYAML(ex.path, ex.body)
					mustStatus(t, again, http.StatusOK)
					if again.header.Get("ETag") != `W/"2"` {
						t.Fatalf("replace ETag %q", again.header.Get("ETag"))
					}
				})
			}

			t.Run("the stored client secret and user password are argon2id hashes", func(t *testing.T) {
				ctx := context.Background()
				c, err := e.st.GetClient(ctx, "mywebapp")
				if err != nil {
					t.Fatal(err)
				}
				if ok, _ := e.h.Hasher.Verify(ctx, c.SecretHash, "verysecret-0123456789"); !ok || !secret.IsPHC(c.SecretHash) {
					t.Fatalf("client secret hash %q", c.SecretHash)
				}
				u, err := e.st.GetUser(ctx, "my-user")
				if err != nil {
					t.Fatal(err)
				}
				if ok, _ := e.h.Hasher.Verify(ctx, u.PasswordHash, "password"); !ok {
					t.Fatal("user password hash does not verify")
				}
				if bytes.Contains(c.Doc, []byte("verysecret-0123456789")) || bytes.Contains(u.Doc, []byte(`"password"`)) {
					t.Fatal("stored documents contain write-only values")
				}
			})
		})
	}
}

// sameJSON compares two decoded documents after normalising numbers.
func sameJSON(a, b map[string]any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	var na, nb any
	_ = json.Unmarshal(ja, &na)
	_ = json.Unmarshal(jb, &nb)
	ca, _ := json.Marshal(na)
	cb, _ := json.Marshal(nb)
	return bytes.Equal(ca, cb)
}

func TestStatusCodes(t *testing.T) {
	for _, be := range gormstoretest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			e := newEnv(t, be.Open(t))
			mustStatus(t, e.putYAML("/User/alice", "email: alice@example.com\npassword: pw-alice\n"), http.StatusCreated)

			tests := []struct {
				name     string
				r        req
				want     int
				wantExpr string
			}{
				{"a PUT of a new resource creates it (201)", req{method: "PUT", path: "/User/bob", body: `{"email":"bob@example.com"}`, contentType: "application/json"}, 201, ""},
				{"a PUT of an existing resource replaces it (200)", req{method: "PUT", path: "/User/alice", body: "email: alice@example.com\n", contentType: "application/yaml"}, 200, ""},
				{"application/x-yaml is accepted", req{method: "PUT", path: "/User/carol", body: "email: carol@example.com\n", contentType: "application/x-yaml"}, 201, ""},
				{"a body without Content-Type is sniffed", req{method: "PUT", path: "/User/dave", body: "email: dave@example.com\n"}, 201, ""},
				{"a GET of an existing resource is 200", req{method: "GET", path: "/User/alice"}, 200, ""},
				{"a GET of a missing resource is 404", req{method: "GET", path: "/User/nobody"}, 404, ""},
				{"a GET with an impossible id is 404", req{method: "GET", path: "/User/" + strings.Repeat("x", 100)}, 404, ""},
				{"a DELETE of a missing resource is 404", req{method: "DELETE", path: "/Client/nothing"}, 404, ""},
				{"unparseable JSON is 400", req{method: "PUT", path: "/User/alice", body: `{"email":`, contentType: "application/json"}, 400, ""},
				{"an invalid field is 422 naming it", req{method: "PUT", path: "/User/alice", body: `{"email":"not-an-email"}`, contentType: "application/json"}, 422, "email"},
				{"an invalid id in the URL is 422 naming id", req{method: "PUT", path: "/User/a%20b", body: `{}`, contentType: "application/json"}, 422, "id"},
				{"another resourceType in the body is 422", req{method: "PUT", path: "/User/alice", body: `{"resourceType":"Client"}`, contentType: "application/json"}, 422, "resourceType"},
				{"a form body is 415", req{method: "PUT", path: "/User/alice", body: "email=x", contentType: "application/x-www-form-urlencoded"}, 415, ""},
				{"a mismatched If-Match is 412", req{method: "PUT", path: "/User/alice", body: "{}", contentType: "application/json", ifMatch: `W/"99"`}, 412, ""},
				{"If-Match on a missing resource is 412", req{method: "PUT", path: "/User/ghost", body: "{}", contentType: "application/json", ifMatch: `"1"`}, 412, ""},
				{"If-Match on a DELETE that does not match is 412", req{method: "DELETE", path: "/User/alice", ifMatch: "99"}, 412, ""},
				{"no credentials is 401", req{method: "GET", path: "/User/alice", auth: "none"}, 401, ""},
				{"a duplicate e-mail is 409 naming email", req{method: "PUT", path: "/User/mallory", body: "email: ALICE@example.com\n", contentType: "text/yaml"}, 409, "email"},
				{"a body over 1 MiB is 413", req{method: "PUT", path: "/User/alice", body: `{"name":{"givenName":"` + strings.Repeat("a", resource.MaxBodyBytes) + `"}}`, contentType: "application/json"}, 413, ""},
				{"a list is 200", req{method: "GET", path: "/User"}, 200, ""},
				{"a list with a bad _count is 400", req{method: "GET", path: "/User?_count=abc"}, 400, "_count"},
				{"a list with _page 0 is 400", req{method: "GET", path: "/Client?_page=0"}, 400, "_page"},
				{"the audit log lists", req{method: "GET", path: "/AuditEvent?user=alice"}, 200, ""},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					r := e.do(tc.r)
					mustStatus(t, r, tc.want)
					if r.status >= 400 {
						exprs := r.expressions(t)
						if tc.wantExpr != "" && (len(exprs) == 0 || exprs[0] != tc.wantExpr) {
							t.Fatalf("expressions %v, want %q", exprs, tc.wantExpr)
						}
					}
					if r.status == 401 && r.header.Get("WWW-Authenticate") != `Basic realm="gatehouse", Bearer` {
						t.Fatalf("WWW-Authenticate = %q", r.header.Get("WWW-Authenticate"))
					}
				})
			}

			t.Run("If-Match in every accepted form replaces when it matches", func(t *testing.T) {
				for _, tag := range []string{"W/\"%d\"", "\"%d\"", "%d"} {
					cur := e.get("/User/bob")
					mustStatus(t, cur, 200)
					v := cur.json(t)["meta"].(map[string]any)["versionId"].(string)
					r := e.do(req{method: "PUT", path: "/User/bob", body: `{"email":"bob@example.com"}`, contentType: "application/json",
						ifMatch: strings.Replace(tag, "%d", v, 1)})
					mustStatus(t, r, 200)
				}
			})
			t.Run("a DELETE of an existing resource returns it and then it is gone", func(t *testing.T) {
				r := e.do(req{method: "DELETE", path: "/User/carol"})
				mustStatus(t, r, 200)
				if r.json(t)["id"] != "carol" {
					t.Fatalf("deleted body %s", r.body)
				}
				mustStatus(t, e.get("/User/carol"), 404)
			})
		})
	}
}

func TestListPagesAsABundle(t *testing.T) {
	e := newEnv(t, gormstoretest.Open(t))
	for _, id := range []string{"c1", "c2", "c3", "c4", "c5"} {
		mustStatus(t, e.putYAML("/Client/"+id, "grant_types: [code]\nauth: {authorization_code: {redirect_uri: 'https://app.example.com/cb'}}\nsecret: secret-0123456789-"+id+"\n"), 201)
	}
	r := e.get("/Client?_count=2&_page=2")
	mustStatus(t, r, 200)
	noSecrets(t, r.body, "s-c1", "s-c2", "s-c3", "s-c4", "s-c5")
	var b struct {
		ResourceType string
		Type         string
		Total        int
		Link         []BundleLink
		Entry        []struct{ Resource map[string]any }
	}
	if err := json.Unmarshal(r.body, &b); err != nil {
		t.Fatal(err)
	}
	if b.ResourceType != "Bundle" || b.Type != "searchset" || b.Total != 5 || len(b.Entry) != 2 {
		t.Fatalf("bundle %s", r.body)
	}
	if b.Entry[0].Resource["resourceType"] != "Client" || len(b.Link) != 2 || b.Link[1].Relation != "next" {
		t.Fatalf("bundle %s", r.body)
	}
	last := e.get("/Client?_count=2&_page=3")
	if err := json.Unmarshal(last.body, &b); err != nil || len(b.Entry) != 1 || len(b.Link) != 1 {
		t.Fatalf("last page %s", last.body)
	}
	huge := e.get("/Client?_count=5000")
	mustStatus(t, huge, 200)
	if !strings.Contains(string(huge.body), "_count=1000") {
		t.Fatalf("_count above 1000 should be capped: %s", huge.body)
	}
	yamlList := e.do(req{method: "GET", path: "/Client?_format=yaml"})
	if !strings.HasPrefix(yamlList.header.Get("Content-Type"), "text/yaml") || !strings.Contains(string(yamlList.body), "resourceType: Bundle") {
		t.Fatalf("YAML list: %s", yamlList.body)
	}
}

func TestRejectedWritesChangeNothing(t *testing.T) {
	for _, be := range gormstoretest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			e := newEnv(t, be.Open(t))
			mustStatus(t, e.putYAML("/AuthConfig/myconfig", aidboxAuthConfig), 201)
			mustStatus(t, e.putYAML("/Client/mywebapp", aidboxClient), 201)
			mustStatus(t, e.putYAML("/User/my-user", aidboxUser+"email: me@example.com\n"), 201)

			bomb := "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n" +
				"d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nemail: [*e]\n"
			clientWith := func(uri string) string {
				return "grant_types: [code]\nauth:\n  authorization_code:\n    redirect_uri: '" + uri + "'\n"
			}
			tests := []struct {
				name, path, body string
				contentType      string
				ifMatch          string
				want             int
				wantExpr         string
			}{
				{"an unknown field", "/User/my-user", "id: my-user\npasswrd: x\n", "text/yaml", "", 422, "passwrd"},
				{"an unknown nested field", "/AuthConfig/myconfig", "twoFactor:\n  webhook: {endpoint: https://my-app.com, timeot: 500}\n", "text/yaml", "", 422, "twoFactor.webhook.timeot"},
				{"a wrong type", "/AuthConfig/myconfig", `{"twoFactor":{"webhook":{"endpoint":"https://my-app.com","timeout":"500"}}}`, "application/json", "", 422, "twoFactor.webhook.timeout"},
				{"a redirect URI with a fragment", "/Client/mywebapp", clientWith("https://app.example.com/cb#x"), "text/yaml", "", 422, "auth.authorization_code.redirect_uri"},
				{"a wildcard redirect URI", "/Client/mywebapp", clientWith("https://*.example.com/cb"), "text/yaml", "", 422, "auth.authorization_code.redirect_uri"},
				{"a javascript: redirect URI", "/Client/mywebapp", clientWith("javascript:alert(1)"), "text/yaml", "", 422, "auth.authorization_code.redirect_uri"},
				{"a code client without a redirect URI", "/Client/mywebapp", "grant_types: [code]\n", "text/yaml", "", 422, "auth.authorization_code.redirect_uri"},
				{"a webhook timeout of 0", "/AuthConfig/myconfig", "twoFactor: {webhook: {endpoint: https://my-app.com, timeout: 0}}\n", "text/yaml", "", 422, "twoFactor.webhook.timeout"},
				{"a webhook timeout of -1", "/AuthConfig/myconfig", "twoFactor: {webhook: {endpoint: https://my-app.com, timeout: -1}}\n", "text/yaml", "", 422, "twoFactor.webhook.timeout"},
				{"a webhook on a private address", "/AuthConfig/myconfig", "twoFactor: {webhook: {endpoint: 'https://10.0.0.7/hook'}}\n", "text/yaml", "", 422, "twoFactor.webhook.endpoint"},
				{"a webhook over plain http", "/AuthConfig/myconfig", "twoFactor: {webhook: {endpoint: 'http://my-app.com/hook'}}\n", "text/yaml", "", 422, "twoFactor.webhook.endpoint"},
				{"a body over 1 MiB", "/User/my-user", "email: x@example.com\nname: {givenName: " + strings.Repeat("a", resource.MaxBodyBytes) + "}\n", "text/yaml", "", 413, ""},
				{"a YAML alias bomb", "/User/my-user", bomb, "text/yaml", "", 400, "b[0]"},
				{"an invalid e-mail", "/User/my-user", "email: me@@example.com\n", "text/yaml", "", 422, "email"},
				{"a mismatched If-Match", "/User/my-user", "email: new@example.com\n", "text/yaml", `W/"7"`, 412, ""},
				{"an admin enabling a factor the user never enrolled", "/User/my-user", "password: new-password\ntwoFactor: {enabled: true}\n", "text/yaml", "", 422, "twoFactor.enabled"},
				{"an admin setting up TOTP for a user", "/User/my-user", "password: new-password\ntwoFactor: {enabled: true, method: totp}\n", "text/yaml", "", 422, "twoFactor.method"},
				{"a reference to a missing AuthConfig", "/Client/mywebapp", aidboxClient + "authConfig: {id: nope}\n", "text/yaml", "", 422, "authConfig.id"},
				{"secret_required without any secret on a new client", "/Client/fresh", "grant_types: [code]\nauth: {authorization_code: {redirect_uri: 'https://a.example.com/cb', secret_required: true}}\n", "text/yaml", "", 422, "auth.authorization_code.secret_required"},
				{"a Client body sent to the User URL", "/User/my-user", "resourceType: Client\n", "text/yaml", "", 422, "resourceType"},
				{"a negative refresh token grace", "/Client/mywebapp", aidboxClient + "refresh_token_grace_seconds: -1\n", "text/yaml", "", 422, "refresh_token_grace_seconds"},
				{"a refresh token grace over a minute", "/Client/mywebapp", aidboxClient + "refresh_token_grace_seconds: 61\n", "text/yaml", "", 422, "refresh_token_grace_seconds"},
				{"a fractional refresh token grace", "/Client/mywebapp", `{"grant_types":["code"],"refresh_token_grace_seconds":1.5}`, "application/json", "", 422, "refresh_token_grace_seconds"},
				{"a refresh token grace given as a string", "/Client/mywebapp", `{"grant_types":["code"],"refresh_token_grace_seconds":"5"}`, "application/json", "", 422, "refresh_token_grace_seconds"},
			}
			for _, tc := range tests {
				t.Run(tc.name+" is refused and changes nothing", func(t *testing.T) {
					before := e.snapshot(tc.path)
					r := e.do(req{method: "PUT", path: tc.path, body: tc.body, contentType: tc.contentType, ifMatch: tc.ifMatch})
					mustStatus(t, r, tc.want)
					exprs := r.expressions(t)
					if tc.wantExpr != "" && !contains(exprs, tc.wantExpr) {
						t.Fatalf("expressions %v, want %q", exprs, tc.wantExpr)
					}
					if after := e.snapshot(tc.path); after != before {
						t.Fatalf("stored resource changed:\nbefore %s\nafter  %s", before, after)
					}
				})
			}
		})
	}
}

// snapshot is the stored state of a resource: the API's view plus the
// secret hash columns, so a rejected write that touched either shows.
func (e *env) snapshot(path string) string {
	e.t.Helper()
	r := e.get(path)
	ctx := context.Background()
	typ, id, _ := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	extra := ""
	switch typ {
	case resource.TypeUser:
		if u, err := e.st.GetUser(ctx, id); err == nil {
			extra = u.PasswordHash
		}
		if _, err := e.st.GetTwoFactor(ctx, id); err == nil {
			extra += "+2fa"
		}
	case resource.TypeClient:
		if c, err := e.st.GetClient(ctx, id); err == nil {
			extra = c.SecretHash
		}
	}
	return string(r.body) + "|" + extra
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestAdminAuthentication(t *testing.T) {
	e := newEnv(t, gormstoretest.Open(t))
	basic := func(u, p string) string {
		r := httptest.NewRequest("GET", "/", nil)
		r.SetBasicAuth(u, p)
		return r.Header.Get("Authorization")
	}
	tokens := map[string][]string{"admin-token": {"openid", AdminScope}, "plain-token": {"openid"}}
	e.h.VerifyBearer = func(_ context.Context, token string) (string, []string, error) {
		scopes, ok := tokens[token]
		if !ok {
			return "", nil, errors.New("unknown token")
		}
		return "ops-bot", scopes, nil
	}
	tests := []struct {
		name string
		auth string
		want int
	}{
		{"the bootstrap credentials are accepted", basic(adminUser, adminPassword), 200},
		{"no Authorization header is refused", "none", 401},
		{"a wrong password is refused", basic(adminUser, adminPassword+"x"), 401},
		{"a wrong user is refused", basic("root", adminPassword), 401},
		{"an empty password is refused", basic(adminUser, ""), 401},
		{"a malformed Basic header is refused", "Basic !!!notbase64", 401},
		{"an unknown scheme is refused", "Digest username=admin", 401},
		{"a Bearer token with gatehouse:admin is accepted", "Bearer admin-token", 200},
		{"a Bearer token without gatehouse:admin is forbidden", "Bearer plain-token", 403},
		{"an invalid Bearer token is refused", "Bearer forged", 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(req{method: "GET", path: "/User", auth: tc.auth})
			mustStatus(t, r, tc.want)
			if tc.want == 401 {
				if r.header.Get("WWW-Authenticate") != `Basic realm="gatehouse", Bearer` {
					t.Fatalf("WWW-Authenticate = %q", r.header.Get("WWW-Authenticate"))
				}
				if r.json(t)["resourceType"] != "OperationOutcome" {
					t.Fatalf("401 body %s", r.body)
				}
			}
		})
	}

	t.Run("Bearer is refused when no verifier is configured", func(t *testing.T) {
		e.h.VerifyBearer = nil
		mustStatus(t, e.do(req{method: "GET", path: "/User", auth: "Bearer admin-token"}), 401)
	})
	t.Run("a cached login does not outlive a change of the admin password", func(t *testing.T) {
		mustStatus(t, e.do(req{method: "GET", path: "/User"}), 200)
		phc, _ := e.h.Hasher.Hash(context.Background(), "a new admin password")
		old := e.h.AdminPasswordHash
		e.h.AdminPasswordHash = phc
		defer func() { e.h.AdminPasswordHash = old }()
		mustStatus(t, e.do(req{method: "GET", path: "/User"}), 401)
	})
	t.Run("failed logins are audited without the password", func(t *testing.T) {
		events, _, err := e.st.ListAudit(context.Background(), store.AuditFilter{Type: audit.LoginFailure}, store.Page{Count: 100, Page: 1})
		if err != nil || len(events) == 0 {
			t.Fatalf("events %v, %v", events, err)
		}
		for _, ev := range events {
			for _, v := range ev.Detail {
				if strings.Contains(v, adminPassword) {
					t.Fatal("audit detail holds the password")
				}
			}
		}
	})
	t.Run("an address with too many failures is throttled, even with the right password", func(t *testing.T) {
		for range failPerIP {
			e.do(req{method: "GET", path: "/User", auth: basic(adminUser, "guess")})
		}
		e.h.authMu.Lock()
		clear(e.h.authCache)
		e.h.authMu.Unlock()
		r := e.do(req{method: "GET", path: "/User", auth: basic(adminUser, adminPassword)})
		mustStatus(t, r, http.StatusTooManyRequests)
		if r.header.Get("Retry-After") == "" {
			t.Fatal("no Retry-After")
		}
		e.now = e.now.Add(failWindow + time.Minute)
		mustStatus(t, e.do(req{method: "GET", path: "/User", auth: basic(adminUser, adminPassword)}), 200)
	})
}

func TestUserWritesEndSessionsAndTokens(t *testing.T) {
	for _, be := range gormstoretest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t, be.Open(t))
			mustStatus(t, e.putYAML("/User/my-user", aidboxUser+"email: me@example.com\n"), 201)
			original, _ := e.st.GetUser(ctx, "my-user")

			session := func(id string) {
				t.Helper()
				err := e.st.CreateBrowserSession(ctx, store.BrowserSession{ID: id, UserID: "my-user", AuthTime: e.now,
					CreatedAt: e.now, UpdatedAt: e.now, ExpiresAt: time.Now().Add(time.Hour)})
				if err != nil {
					t.Fatal(err)
				}
			}
			alive := func(id string) bool {
				_, err := e.st.GetBrowserSession(ctx, id)
				return err == nil
			}

			t.Run("a replace without a password keeps it and the sessions", func(t *testing.T) {
				session("s1")
				mustStatus(t, e.putYAML("/User/my-user", "email: me@example.com\nname: {givenName: Me}\n"), 200)
				u, _ := e.st.GetUser(ctx, "my-user")
				if u.PasswordHash != original.PasswordHash {
					t.Fatal("password hash changed on a replace without password")
				}
				if !alive("s1") {
					t.Fatal("session ended without a reason")
				}
			})
			token := func(kind store.OAuthKind, sig string) {
				t.Helper()
				err := e.st.CreateOAuthRequest(ctx, store.OAuthRequest{Kind: kind, Signature: sig, RequestID: "req-" + sig,
					ClientID: "mywebapp", Subject: "my-user", RequestedAt: e.now, ExpiresAt: time.Now().Add(time.Hour), Active: true})
				if err != nil {
					t.Fatal(err)
				}
			}
			tokenActive := func(kind store.OAuthKind, sig string) bool {
				t.Helper()
				tok, err := e.st.GetOAuthRequest(ctx, kind, sig)
				return err == nil && tok.Active
			}
			t.Run("a new password ends every session and deactivates the user's access and refresh tokens", func(t *testing.T) {
				session("s2")
				token(store.KindAccessToken, "pw-at")
				token(store.KindRefreshToken, "pw-rt")
				mustStatus(t, e.putYAML("/User/my-user", "email: me@example.com\npassword: a-new-one\n"), 200)
				if alive("s1") || alive("s2") {
					t.Fatal("sessions survive a password change")
				}
				if tokenActive(store.KindAccessToken, "pw-at") || tokenActive(store.KindRefreshToken, "pw-rt") {
					t.Fatal("tokens survive a password change")
				}
				u, _ := e.st.GetUser(ctx, "my-user")
				if ok, _ := e.h.Hasher.Verify(ctx, u.PasswordHash, "a-new-one"); !ok {
					t.Fatal("new password not stored")
				}
			})
			t.Run("the read-only twoFactor status shows the factor but never its secret", func(t *testing.T) {
				err := e.st.PutTwoFactor(ctx, store.TwoFactor{UserID: "my-user", Method: "totp", Enabled: true,
					Secret: []byte("SEALED-TOTP-SEED"), EnrolledAt: e.now})
				if err != nil {
					t.Fatal(err)
				}
				if err := e.st.ReplaceRecoveryCodes(ctx, "my-user", []string{"h1", "h2"}); err != nil {
					t.Fatal(err)
				}
				r := e.get("/User/my-user")
				noSecrets(t, r.body, "SEALED-TOTP-SEED", "h1")
				tf := r.json(t)["twoFactor"].(map[string]any)
				if tf["enabled"] != true || tf["method"] != "totp" || tf["recoveryCodesRemaining"] != 2.0 || tf["enrolledAt"] == nil {
					t.Fatalf("twoFactor = %v", tf)
				}
				mustStatus(t, e.putYAML("/User/my-user", "email: me@example.com\ntwoFactor: {enabled: true}\n"), 200)
				if _, err := e.st.GetTwoFactor(ctx, "my-user"); err != nil {
					t.Fatal("confirming an enabled factor removed it")
				}
			})
			t.Run("twoFactor.enabled false resets the factor, ends sessions, deactivates tokens and is audited", func(t *testing.T) {
				session("s3")
				token(store.KindRefreshToken, "tf-rt")
				mustStatus(t, e.putYAML("/User/my-user", "email: me@example.com\ntwoFactor: {enabled: false}\n"), 200)
				if _, err := e.st.GetTwoFactor(ctx, "my-user"); !errors.Is(err, store.ErrNotFound) {
					t.Fatalf("factor still there: %v", err)
				}
				if n, _ := e.st.CountRecoveryCodes(ctx, "my-user"); n != 0 {
					t.Fatalf("%d recovery codes left", n)
				}
				if alive("s3") {
					t.Fatal("session survives a 2FA reset")
				}
				if tokenActive(store.KindRefreshToken, "tf-rt") {
					t.Fatal("refresh token survives a 2FA reset")
				}
				events, _, _ := e.st.ListAudit(ctx, store.AuditFilter{UserID: "my-user", Type: audit.TwoFactorReset}, store.Page{Count: 10, Page: 1})
				if len(events) != 1 {
					t.Fatalf("%d reset events", len(events))
				}
			})
			t.Run("inactive ends sessions and deactivates tokens", func(t *testing.T) {
				session("s4")
				err := e.st.CreateOAuthRequest(ctx, store.OAuthRequest{Kind: store.KindAccessToken, Signature: "sig-1", RequestID: "req-1",
					ClientID: "mywebapp", Subject: "my-user", RequestedAt: e.now, ExpiresAt: time.Now().Add(time.Hour), Active: true})
				if err != nil {
					t.Fatal(err)
				}
				mustStatus(t, e.putYAML("/User/my-user", "email: me@example.com\ninactive: true\n"), 200)
				if alive("s4") {
					t.Fatal("session survives deactivation")
				}
				tok, err := e.st.GetOAuthRequest(ctx, store.KindAccessToken, "sig-1")
				if err != nil || tok.Active {
					t.Fatalf("token still active: %+v, %v", tok, err)
				}
			})
			t.Run("DELETE removes the user and deactivates tokens", func(t *testing.T) {
				err := e.st.CreateOAuthRequest(ctx, store.OAuthRequest{Kind: store.KindRefreshToken, Signature: "sig-2", RequestID: "req-2",
					ClientID: "mywebapp", Subject: "my-user", RequestedAt: e.now, ExpiresAt: time.Now().Add(time.Hour), Active: true})
				if err != nil {
					t.Fatal(err)
				}
				mustStatus(t, e.do(req{method: "DELETE", path: "/User/my-user"}), 200)
				if _, err := e.st.GetUser(ctx, "my-user"); !errors.Is(err, store.ErrNotFound) {
					t.Fatalf("user still there: %v", err)
				}
				if tok, err := e.st.GetOAuthRequest(ctx, store.KindRefreshToken, "sig-2"); err == nil && tok.Active {
					t.Fatal("refresh token of a deleted user still active")
				}
			})
			t.Run("every write is audited without secrets", func(t *testing.T) {
				r := e.get("/AuditEvent?user=my-user&type=admin.write")
				mustStatus(t, r, 200)
				noSecrets(t, r.body, "a-new-one", `"password"`)
				var b struct {
					Total int
					Entry []struct{ Resource AuditEvent }
				}
				if err := json.Unmarshal(r.body, &b); err != nil {
					t.Fatal(err)
				}
				if b.Total < 5 || b.Entry[0].Resource.Type != audit.AdminWrite || b.Entry[0].Resource.Detail["actor"] != "basic:admin" {
					t.Fatalf("audit listing %s", r.body)
				}
				del := e.get("/AuditEvent?user=my-user&type=admin.delete")
				if err := json.Unmarshal(del.body, &b); err != nil || b.Total != 1 {
					t.Fatalf("delete events %s", del.body)
				}
			})
		})
	}
}

func TestConcurrentWritesWithIfMatchHaveOneWinner(t *testing.T) {
	for _, be := range gormstoretest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			e := newEnv(t, be.Open(t))
			mustStatus(t, e.putYAML("/AuthConfig/shared", "theme: {title: v1}\n"), 201)
			const n = 8
			codes := make(chan int, n)
			for i := range n {
				go func() {
					body := "theme: {title: writer-" + string(rune('a'+i)) + "}\n"
					hr := httptest.NewRequest("PUT", "/AuthConfig/shared", strings.NewReader(body))
					hr.Header.Set("Content-Type", "text/yaml")
					hr.Header.Set("If-Match", `W/"1"`)
					hr.SetBasicAuth(adminUser, adminPassword)
					rec := httptest.NewRecorder()
					e.mux.ServeHTTP(rec, hr)
					codes <- rec.Code
				}()
			}
			won := 0
			for range n {
				switch c := <-codes; c {
				case 200:
					won++
				case 412:
				default:
					t.Errorf("unexpected status %d", c)
				}
			}
			if won != 1 {
				t.Fatalf("%d writers won, want exactly 1", won)
			}
		})
	}
}

func TestAuthConfigInUseCannotBeDeleted(t *testing.T) {
	e := newEnv(t, gormstoretest.Open(t))
	mustStatus(t, e.putYAML("/AuthConfig/myconfig", aidboxAuthConfig), 201)
	mustStatus(t, e.putYAML("/Client/mywebapp", aidboxClient+"authConfig: {id: myconfig}\n"), 201)
	r := e.do(req{method: "DELETE", path: "/AuthConfig/myconfig"})
	mustStatus(t, r, http.StatusConflict)
	mustStatus(t, e.get("/AuthConfig/myconfig"), 200)
	mustStatus(t, e.do(req{method: "DELETE", path: "/Client/mywebapp"}), 200)
	mustStatus(t, e.do(req{method: "DELETE", path: "/AuthConfig/myconfig"}), 200)
}

func TestWebhookSecretIsKeptButNeverShown(t *testing.T) {
	e := newEnv(t, gormstoretest.Open(t))
	r := e.putYAML("/AuthConfig/hooked", "twoFactor: {webhook: {endpoint: https://my-app.com, secret: whsec-do-not-show, headers: {X-Api-Key: k1}}}\n")
	mustStatus(t, r, 201)
	noSecrets(t, r.body, "whsec-do-not-show")
	noSecrets(t, e.get("/AuthConfig/hooked").body, "whsec-do-not-show")
	noSecrets(t, e.do(req{method: "GET", path: "/AuthConfig/hooked", accept: "application/yaml"}).body, "whsec-do-not-show")
	noSecrets(t, e.get("/AuthConfig").body, "whsec-do-not-show")
	// A GET-edit-PUT round trip (which cannot carry the secret) keeps it.
	mustStatus(t, e.putYAML("/AuthConfig/hooked", "twoFactor: {webhook: {endpoint: https://my-app.com, timeout: 800}}\n"), 200)
	rec, err := e.st.GetAuthConfig(context.Background(), "hooked")
	if err != nil {
		t.Fatal(err)
	}
	a, err := resource.AuthConfigFromStore(rec)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(rec.Doc, []byte("whsec-do-not-show")) {
		t.Fatalf("the stored document holds the webhook secret in clear: %s", rec.Doc)
	}
	if got, err := resource.OpenWebhookSecret(e.h.Sealer, a.Webhook().Secret); err != nil || got != "whsec-do-not-show" {
		t.Fatalf("server-side secret lost: %q, %v", got, err)
	}
	audits := e.get("/AuditEvent?type=admin.write")
	noSecrets(t, audits.body, "whsec-do-not-show")
}

func TestWebhookHeadersAreWriteOnly(t *testing.T) {
	e := newEnv(t, gormstoretest.Open(t))
	stored := func() map[string]string {
		t.Helper()
		rec, err := e.st.GetAuthConfig(context.Background(), "hooked")
		if err != nil {
			t.Fatal(err)
		}
		a, err := resource.AuthConfigFromStore(rec)
		if err != nil {
			t.Fatal(err)
		}
		return a.Webhook().Headers
	}
	r := e.putYAML("/AuthConfig/hooked", "twoFactor: {webhook: {endpoint: https://my-app.com, headers: {Authorization: 'Bearer sms-key-XYZ', X-Tenant: t1}}}\n")
	mustStatus(t, r, 201)
	t.Run("responses show that headers are set, never their values", func(t *testing.T) {
		for _, body := range [][]byte{r.body, e.get("/AuthConfig/hooked").body, e.get("/AuthConfig").body} {
			noSecrets(t, body, "sms-key-XYZ", "t1")
			if !bytes.Contains(body, []byte(`"Authorization":"***"`)) {
				t.Fatalf("the header is not shown as set: %s", body)
			}
		}
	})
	t.Run("a replace that omits the headers keeps them", func(t *testing.T) {
		mustStatus(t, e.putYAML("/AuthConfig/hooked", "twoFactor: {webhook: {endpoint: https://my-app.com, timeout: 800}}\n"), 200)
		if h := stored(); h["Authorization"] != "Bearer sms-key-XYZ" || h["X-Tenant"] != "t1" {
			t.Fatalf("headers %v", h)
		}
	})
	t.Run("a replace that sends the redacted value back keeps that header and changes the others", func(t *testing.T) {
		mustStatus(t, e.putYAML("/AuthConfig/hooked", "twoFactor: {webhook: {endpoint: https://my-app.com, headers: {Authorization: '***', X-Tenant: t2}}}\n"), 200)
		if h := stored(); h["Authorization"] != "Bearer sms-key-XYZ" || h["X-Tenant"] != "t2" || len(h) != 2 {
			t.Fatalf("headers %v", h)
		}
	})
	t.Run("a header left out of a replace that lists headers is removed", func(t *testing.T) {
		mustStatus(t, e.putYAML("/AuthConfig/hooked", "twoFactor: {webhook: {endpoint: https://my-app.com, headers: {Authorization: '***'}}}\n"), 200)
		if h := stored(); h["Authorization"] != "Bearer sms-key-XYZ" || len(h) != 1 {
			t.Fatalf("headers %v", h)
		}
	})
}

func TestApply(t *testing.T) {
	for _, be := range gormstoretest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t, be.Open(t))
			file := `# demo resources
resourceType: AuthConfig
id: myconfig
twoFactor:
  issuerName: my-app
  validPastTokensCount: 3
  webhook: {endpoint: https://my-app.com, timeout: 500}
---
resourceType: Client
id: broken
grant_types: [code]
auth: {authorization_code: {redirect_uri: 'https://app.example.com/cb#frag'}}
---
resourceType: Client
id: mywebapp
secret: verysecret-0123456789
first_party: true
grant_types: [code]
auth:
  authorization_code:
    redirect_uri: 'http://localhost:3001'
    access_token_expiration: 360
    token_format: jwt
    secret_required: true
    refresh_token: true
---
resourceType: User
id: [unclosed
---
# only a comment
---
id: no-type
---
resourceType: Patient
id: p1
---
resourceType: User
id: my-user
password: password
...
`
			results, err := e.h.Apply(ctx, strings.NewReader(file))
			if err != nil {
				t.Fatal(err)
			}
			type want struct {
				typ, id string
				ok      bool
				line    int
			}
			wants := []want{
				{"AuthConfig", "myconfig", true, 1},
				{"Client", "broken", false, 9},
				{"Client", "mywebapp", true, 14},
				{"", "", false, 27},
				{"", "no-type", false, 32},
				{"Patient", "p1", false, 34},
				{"User", "my-user", true, 37},
			}
			if len(results) != len(wants) {
				t.Fatalf("%d results: %+v", len(results), results)
			}
			for i, w := range wants {
				r := results[i]
				if r.Type != w.typ || r.ID != w.id || (r.Err == nil) != w.ok || r.Index != i+1 || r.Line != w.line {
					t.Errorf("result %d = %+v, want %+v", i, r, w)
				}
				if w.ok && !r.Created {
					t.Errorf("result %d not reported as created", i)
				}
			}
			if _, err := e.st.GetClient(ctx, "broken"); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("invalid document was written: %v", err)
			}
			var ve *resource.ValidationError
			if !errors.As(results[1].Err, &ve) || ve.Problems[0].Path != "auth.authorization_code.redirect_uri" {
				t.Fatalf("broken client error %v", results[1].Err)
			}
			for _, p := range []string{"/AuthConfig/myconfig", "/Client/mywebapp", "/User/my-user"} {
				mustStatus(t, e.get(p), 200)
			}

			again, err := e.h.Apply(ctx, strings.NewReader(file))
			if err != nil {
				t.Fatal(err)
			}
			if again[0].Err != nil || again[0].Created {
				t.Fatalf("a second apply should replace, not create: %+v", again[0])
			}
		})
	}
}

func TestApplyReadFailure(t *testing.T) {
	e := newEnv(t, gormstoretest.Open(t))
	if _, err := e.h.Apply(context.Background(), io.MultiReader(strings.NewReader("id: a\n"), errReader{})); err == nil {
		t.Fatal("a read failure must be an error")
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

func TestBasicAuthThrottleHoldsUnderABurst(t *testing.T) {
	for _, be := range gormstoretest.Backends(t) {
		t.Run(be.Name+": of 60 concurrent wrong passwords only the limit is checked, and the right one then waits", func(t *testing.T) {
			e := newEnv(t, be.Open(t))
			codes := make([]int, 60)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range codes {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					hr := httptest.NewRequest(http.MethodGet, "/User", nil)
					hr.RemoteAddr = "192.0.2.1:1234"
					hr.SetBasicAuth(adminUser, fmt.Sprint("guess", i))
					rec := httptest.NewRecorder()
					e.mux.ServeHTTP(rec, hr)
					codes[i] = rec.Code
				}()
			}
			close(start)
			wg.Wait()
			count := map[int]int{}
			for _, c := range codes {
				count[c]++
			}
			if count[401] != failPerIP || count[429] != 60-failPerIP {
				t.Fatalf("answers %v; want %d × 401 and the rest 429", count, failPerIP)
			}
			mustStatus(t, e.do(req{method: "GET", path: "/User"}), http.StatusTooManyRequests)
		})
	}
}

// TestAProvisioningScriptsParallelRequestsAllPass: a script sends 60 admin
// requests at once with the right password. Before, each reserved its place
// on the per-address failure limit (20) on arrival, so the ones queued for a
// hashing slot counted as failures and most of the burst was refused.
func TestAProvisioningScriptsParallelRequestsAllPass(t *testing.T) {
	for _, be := range gormstoretest.Backends(t) {
		t.Run(be.Name+": 60 concurrent requests with the right password are all served", func(t *testing.T) {
			e := newEnv(t, be.Open(t))
			codes := make([]int, 60)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range codes {
				wg.Go(func() {
					<-start
					hr := httptest.NewRequest(http.MethodGet, "/User", nil)
					hr.RemoteAddr = "192.0.2.1:1234"
					hr.SetBasicAuth(adminUser, adminPassword)
					rec := httptest.NewRecorder()
					e.mux.ServeHTTP(rec, hr)
					codes[i] = rec.Code
				})
			}
			close(start)
			wg.Wait()
			for i, c := range codes {
				if c != http.StatusOK {
					t.Errorf("request %d: %d", i, c)
				}
			}
		})
	}
}

func TestShortClientSecretsAreRefused(t *testing.T) {
	e := newEnv(t, gormstoretest.Open(t))
	tests := []struct {
		name, secret string
		want         int
	}{
		{"a one-character secret is refused", "X", 422},
		{"a 15-character secret is refused", "fifteen-chars-x", 422},
		{"a 16-character secret is accepted", "sixteen-chars-xx", 201},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.putYAML(fmt.Sprintf("/Client/weak%d", i), "secret: '"+tc.secret+"'\ngrant_types: [client_credentials]\nscope: ['gatehouse:admin']\n")
			mustStatus(t, r, tc.want)
			if tc.want == 422 {
				if got := r.expressions(t); len(got) != 1 || got[0] != "secret" {
					t.Fatalf("expressions %v, want [secret]", got)
				}
				noSecrets(t, r.body, tc.secret)
				mustStatus(t, e.get(fmt.Sprintf("/Client/weak%d", i)), 404)
			}
		})
	}
}
