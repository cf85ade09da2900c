package oauth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
)

// push sends q to the PAR endpoint as client id (Basic when sec != "").
func (e *env) push(q url.Values, id, sec string) response {
	e.t.Helper()
	if sec == "" {
		q.Set("client_id", id)
		return e.post(PathPAR, q, "", "")
	}
	q.Del("client_id")
	return e.post(PathPAR, q, id, sec)
}

// pushCounter counts the pushed requests stored through it.
type pushCounter struct {
	store.Store
	n atomic.Int32
}

func (c *pushCounter) CreateOAuthRequest(ctx context.Context, r store.OAuthRequest) error {
	if r.Kind == store.KindPushed {
		c.n.Add(1)
	}
	return c.Store.CreateOAuthRequest(ctx, r)
}

func TestPushedAuthorizationRequests(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		parOnly := clientWithPKCE()
		parOnly.ID = "par-only"
		parOnly.RequirePushedAuthorizationRequests = true
		e.putClient(parOnly, webSecret)

		t.Run("a confidential client pushes, the browser brings the request_uri, and the code works", func(t *testing.T) {
			v := verifier(64)
			q := authorizeQuery("web", webRedirect, challenge(v), "openid", "patient.read")
			q.Set("nonce", "nonce-0123456789")
			res := e.push(q, "web", webSecret)
			uri := res.str("request_uri")
			if res.status != http.StatusCreated || !strings.HasPrefix(uri, "urn:ietf:params:oauth:request_uri:") || res.body["expires_in"] != float64(90) {
				t.Fatalf("push: %d %s", res.status, res.raw)
			}
			if strings.Contains(res.raw, webSecret) {
				t.Fatal("the answer holds the client secret")
			}
			ar, err := e.parse(url.Values{"client_id": {"web"}, "request_uri": {uri}})
			if err != nil {
				t.Fatalf("authorize with the request_uri: %v", err)
			}
			if ar.RedirectURI != webRedirect || ar.State != q.Get("state") || ar.Nonce != "nonce-0123456789" || strings.Join(ar.Scopes, " ") != "openid patient.read" {
				t.Fatalf("resolved request = %+v", ar)
			}
			if ar.Query.Get(pushedMarkParam) == "" || ar.Query.Has("request_uri") {
				t.Fatalf("resumable query = %s, want the pushed parameters and their mark", ar.Query.Encode())
			}
			rec := httptest.NewRecorder()
			if err := e.p.CompleteAuthorize(rec, httptest.NewRequest(http.MethodGet, PathAuthorize, nil), ar, aliceGrant()); err != nil {
				t.Fatal(err)
			}
			loc, _ := url.Parse(rec.Header().Get("Location"))
			if loc.Query().Get("state") != q.Get("state") || loc.Query().Get("iss") != testIssuer {
				t.Fatalf("redirect = %s", loc)
			}
			tok := e.exchange("web", webSecret, loc.Query().Get("code"), webRedirect, v)
			if tok.status != http.StatusOK || tok.str("id_token") == "" {
				t.Fatalf("exchange: %d %s", tok.status, tok.raw)
			}

			t.Run("and the request_uri is used up", func(t *testing.T) {
				_, err := e.parse(url.Values{"client_id": {"web"}, "request_uri": {uri}})
				if ae, ok := err.(*AuthorizeError); !ok || ae.Code != "invalid_request_uri" || ae.Redirectable {
					t.Fatalf("reuse: %#v", err)
				}
			})
		})
		t.Run("a public client pushes with its client_id alone", func(t *testing.T) {
			q := authorizeQuery("spa", spaRedirect, challenge(verifier(50)), "openid")
			res := e.push(q, "spa", "")
			if res.status != http.StatusCreated {
				t.Fatalf("push: %d %s", res.status, res.raw)
			}
			if _, err := e.parse(url.Values{"client_id": {"spa"}, "request_uri": {res.str("request_uri")}}); err != nil {
				t.Fatal(err)
			}
		})
		t.Run("an expired request_uri is refused", func(t *testing.T) {
			res := e.push(authorizeQuery("web", webRedirect, challenge(verifier(50)), "openid"), "web", webSecret)
			e.clock.Advance(PushedRequestLifespan + time.Second)
			_, err := e.parse(url.Values{"client_id": {"web"}, "request_uri": {res.str("request_uri")}})
			if ae, ok := err.(*AuthorizeError); !ok || ae.Code != "invalid_request_uri" {
				t.Fatalf("expired: %#v", err)
			}
		})
		t.Run("a request_uri brought with another client_id is refused", func(t *testing.T) {
			res := e.push(authorizeQuery("web", webRedirect, challenge(verifier(50)), "openid"), "web", webSecret)
			for _, cid := range []string{"spa", ""} {
				_, err := e.parse(url.Values{"client_id": {cid}, "request_uri": {res.str("request_uri")}})
				if ae, ok := err.(*AuthorizeError); !ok || ae.Code != "invalid_request" {
					t.Fatalf("client_id %q: %#v", cid, err)
				}
			}
			if _, err := e.parse(url.Values{"client_id": {"web"}, "request_uri": {res.str("request_uri")}}); err != nil {
				t.Fatalf("a refusal for the wrong client used the request up: %v", err)
			}
		})
		t.Run("parameters beside the request_uri are ignored", func(t *testing.T) {
			res := e.push(authorizeQuery("web", webRedirect, challenge(verifier(50)), "openid"), "web", webSecret)
			ar, err := e.parse(url.Values{"client_id": {"web"}, "request_uri": {res.str("request_uri")},
				"redirect_uri": {"http://127.0.0.1/cb"}, "scope": {"openid patient.read"}})
			if err != nil {
				t.Fatal(err)
			}
			if ar.RedirectURI != webRedirect || strings.Join(ar.Scopes, " ") != "openid" {
				t.Fatalf("resolved = %s %v, want the pushed redirect URI and scope", ar.RedirectURI, ar.Scopes)
			}
		})
		t.Run("of ten requests racing with one request_uri exactly one gets through", func(t *testing.T) {
			res := e.push(authorizeQuery("web", webRedirect, challenge(verifier(50)), "openid"), "web", webSecret)
			var ok, refused atomic.Int32
			var wg sync.WaitGroup
			for range 10 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, err := e.parse(url.Values{"client_id": {"web"}, "request_uri": {res.str("request_uri")}})
					if err == nil {
						ok.Add(1)
					} else if ae, isAE := err.(*AuthorizeError); isAE && ae.Code == "invalid_request_uri" {
						refused.Add(1)
					}
				}()
			}
			wg.Wait()
			if ok.Load() != 1 || refused.Load() != 9 {
				t.Fatalf("%d through, %d refused", ok.Load(), refused.Load())
			}
		})

		t.Run("a push by client_secret_post keeps no secret", func(t *testing.T) {
			q := authorizeQuery("web", webRedirect, challenge(verifier(50)), "openid")
			q.Set("client_secret", webSecret)
			res := e.push(q, "web", "")
			if res.status != http.StatusCreated {
				t.Fatalf("push: %d %s", res.status, res.raw)
			}
			rec, err := e.st.GetOAuthRequest(ctx, store.KindPushed, pushedSignature(res.str("request_uri")))
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(rec.Form, "secret") || strings.Contains(rec.Form, webSecret) {
				t.Fatalf("stored form = %s", rec.Form)
			}
		})

		t.Run("a client that requires pushed requests", func(t *testing.T) {
			plain := authorizeQuery("par-only", webRedirect, challenge(verifier(50)), "openid")
			t.Run("gets invalid_request for a plain authorization request", func(t *testing.T) {
				_, err := e.parse(plain)
				if ae, ok := err.(*AuthorizeError); !ok || ae.Code != "invalid_request" || !ae.Redirectable {
					t.Fatalf("%#v", err)
				}
			})
			res := e.push(plain, "par-only", webSecret)
			if res.status != http.StatusCreated {
				t.Fatalf("push: %d %s", res.status, res.raw)
			}
			ar, err := e.parse(url.Values{"client_id": {"par-only"}, "request_uri": {res.str("request_uri")}})
			if err != nil {
				t.Fatalf("pushed: %v", err)
			}
			t.Run("resumes its pushed request from the parked query after sign-in", func(t *testing.T) {
				again, err := e.parse(ar.Query)
				if err != nil {
					t.Fatalf("resume: %v", err)
				}
				if again.Query.Encode() != ar.Query.Encode() {
					t.Fatal("the resumed query differs: the hosted pages would not recognise their parked request")
				}
			})
			t.Run("refuses a parked query whose parameters were changed", func(t *testing.T) {
				for k, v := range map[string]string{"redirect_uri": "http://127.0.0.1/cb", "scope": "openid patient.read", "state": "another-state-0123", pushedMarkParam: "4102444800.AAAA"} {
					q := url.Values{}
					for qk, qv := range ar.Query {
						q[qk] = qv
					}
					q.Set(k, v)
					if _, err := e.parse(q); err == nil {
						t.Fatalf("a query with %s changed counted as pushed", k)
					}
				}
			})
			t.Run("refuses a parked query after the mark expired", func(t *testing.T) {
				e.clock.Advance(pushedMarkLifespan + time.Second)
				if _, err := e.parse(ar.Query); err == nil {
					t.Fatal("an expired mark counted as pushed")
				}
			})
		})
		t.Run("deleting the client deletes its pushed requests", func(t *testing.T) {
			c := clientWithPKCE()
			c.ID = "par-gone"
			e.putClient(c, webSecret)
			res := e.push(authorizeQuery("par-gone", webRedirect, challenge(verifier(50)), "openid"), "par-gone", webSecret)
			if err := e.st.DeleteClient(ctx, "par-gone"); err != nil {
				t.Fatal(err)
			}
			e.p.ForgetClient("par-gone")
			e.putClient(c, webSecret)
			if _, err := e.parse(url.Values{"client_id": {"par-gone"}, "request_uri": {res.str("request_uri")}}); err == nil {
				t.Fatal("a pushed request survived the deletion of its client")
			}
		})
		t.Run("discovery advertises the endpoint", func(t *testing.T) {
			d := e.get(PathOpenIDConf, "")
			if d.str("pushed_authorization_request_endpoint") != testIssuer+PathPAR || d.body["require_pushed_authorization_requests"] != false {
				t.Fatalf("discovery = %s", d.raw)
			}
		})
	})
}

func TestBadPushes(t *testing.T) {
	counter := &pushCounter{Store: gormstoreOpen(t)}
	e := newEnv(t, counter)
	t.Run("bad pushes are refused with the RFC's error and store nothing", func(t *testing.T) {
		good := func() url.Values { return authorizeQuery("web", webRedirect, challenge(verifier(50)), "openid") }
		tests := []struct {
			name       string
			form       url.Values
			id, secret string
			status     int
			code       string
		}{
			{"a wrong client secret", good(), "web", "wrong-secret-0123456789", http.StatusUnauthorized, "invalid_client"},
			{"an unknown client", good(), "nobody", "x-0123456789", http.StatusUnauthorized, "invalid_client"},
			{"a request_uri inside the push", func() url.Values {
				q := good()
				q.Set("request_uri", "urn:ietf:params:oauth:request_uri:abc")
				return q
			}(), "web", webSecret, http.StatusBadRequest, "invalid_request"},
			{"a request object", func() url.Values { q := good(); q.Set("request", "eyJhbGciOiJub25lIn0.e30."); return q }(), "web", webSecret, http.StatusBadRequest, "request_not_supported"},
			{"a redirect URI the client does not have", func() url.Values {
				q := good()
				q.Set("redirect_uri", "https://evil.example.test/cb")
				return q
			}(), "web", webSecret, http.StatusBadRequest, "invalid_request"},
			{"a scope the client may not have", func() url.Values { q := good(); q.Set("scope", "openid admin:everything"); return q }(), "web", webSecret, http.StatusBadRequest, "invalid_scope"},
			{"response_type token", func() url.Values { q := good(); q.Set("response_type", "token"); return q }(), "web", webSecret, http.StatusBadRequest, "unsupported_response_type"},
			{"a plain PKCE challenge", func() url.Values { q := good(); q.Set("code_challenge_method", "plain"); return q }(), "web", webSecret, http.StatusBadRequest, "invalid_request"},
			{"a resource the client may not name", func() url.Values { q := good(); q.Set("resource", "https://other.example/api"); return q }(), "web", webSecret, http.StatusBadRequest, "invalid_target"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				res := e.push(tc.form, tc.id, tc.secret)
				if res.status != tc.status || res.str("error") != tc.code || res.str("request_uri") != "" {
					t.Fatalf("%d %s, want %d %s", res.status, res.raw, tc.status, tc.code)
				}
			})
		}
		if n := counter.n.Load(); n != 0 {
			t.Fatalf("%d pushed requests stored by refused pushes", n)
		}
	})
}
