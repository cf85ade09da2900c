package server

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

// authorizeParameters are every parameter /auth/authorize reads or that a
// client library may send to it.
var authorizeParameters = []string{
	"client_id", "response_type", "redirect_uri", "scope", "state", "nonce",
	"code_challenge", "code_challenge_method", "response_mode", "prompt", "max_age",
	"login_hint", "id_token_hint", "acr_values", "claims", "ui_locales", "claims_locales",
	"display", "request", "request_uri", "registration", "audience", "resource",
}

// junkValues are values no client should send.
var junkValues = []string{
	"", " ", "\x00", "\xff\xfe", "%ff", "-1", "0", "99999999999999999999999", "1e309",
	"{", "[]", "null", `{"id_token":{"acr":{"essential":true,"values":5}}}`, `{"userinfo":[]}`,
	"javascript:alert(1)", "urn:ietf:params:oauth:request_uri:x", "eyJhbGciOiJub25lIn0.e30.",
	"none login consent select_account", "http://evil.example/cb", "\u202e\U0001F4A5",
	strings.Repeat("a", 6000),
}

// TestNoAuthorizeParameterValueAnswers5xx sends every authorize parameter
// with every junk value, alone and inside an otherwise valid request, from
// a stranger and from a signed-in browser: client input is never a server
// error.
func TestNoAuthorizeParameterValueAnswers5xx(t *testing.T) {
	app := startApp(t, gormstoretest.Open(t))
	app.mustPut("/Client/mywebapp", webClientYAML)
	app.mustPut("/User/alice", userYAML)

	valid := func() url.Values {
		return url.Values{
			"client_id": {"mywebapp"}, "response_type": {"code"}, "redirect_uri": {browserRedirectURI},
			"scope": {"openid"}, "state": {"junk-state-1"}, "nonce": {"junk-nonce-1"},
			"code_challenge": {oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())}, "code_challenge_method": {"S256"},
		}
	}
	signedIn := browserFor(t, app)
	if back := signedIn.signIn(app.URL+"/auth/authorize?"+valid().Encode(), "alice@example.com", "password"); back.Query().Get("code") == "" {
		t.Fatalf("the signed-in browser got no code: %s", back)
	}
	browsers := []struct {
		name string
		b    *browser
	}{{"a stranger", browserFor(t, app)}, {"a signed-in browser", signedIn}}

	for _, br := range browsers {
		t.Run(br.name+" never gets a 5xx", func(t *testing.T) {
			br.b.t = t
			n := 0
			for _, param := range authorizeParameters {
				for _, v := range junkValues {
					inValid, repeated := valid(), valid()
					inValid[param] = []string{v}
					repeated[param] = []string{v, v + "2"}
					for _, q := range []url.Values{{param: {v}}, inValid, repeated} {
						n++
						req, _ := http.NewRequest(http.MethodGet, app.URL+"/auth/authorize?"+q.Encode(), nil)
						if p := br.b.do(req); p.status >= 500 {
							t.Errorf("%s=%.40q answered %d: %.200s", param, v, p.status, p.body)
						}
					}
				}
			}
			t.Logf("%d requests", n)
		})
	}
}
