package server

// End-to-end tests of step-up (issue 13): a session signed in with less
// than a client or request asks for proves only the missing factor, through
// the real server, with golang.org/x/oauth2 as the client and oathtool as
// the authenticator app.

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

const (
	acrPwd = "urn:gatehouse:acr:pwd"
	acrMFA = "urn:gatehouse:acr:mfa"
	acrPHR = "urn:gatehouse:acr:phr"
)

// clientError is the OAuth error a redirect back to the client carries.
func clientError(t *testing.T, p page, state string) string {
	t.Helper()
	u, err := url.Parse(p.location)
	if err != nil || p.location == "" || !strings.HasPrefix(p.location, tfRedirectURI) {
		t.Fatalf("no redirect to the client: ended at %s (status %d, location %q)\n%s", p.url, p.status, p.location, p.body)
	}
	if u.Query().Get("code") != "" || u.Query().Get("state") != state {
		t.Fatalf("redirect %s: a code, or another state", u)
	}
	return u.Query().Get("error")
}

func expectClaims(t *testing.T, what string, acr string, amr []string, authTime int64, gotACR string, gotAMR []string, gotAuthTime int64) {
	t.Helper()
	if gotACR != acr || !slices.Equal(gotAMR, amr) || gotAuthTime != authTime {
		t.Fatalf("%s: acr %q amr %v auth_time %d, want %q %v %d", what, gotACR, gotAMR, gotAuthTime, acr, amr, authTime)
	}
}

func TestStepUpEndToEnd(t *testing.T) {
	requireTool(t, "oathtool", "oathtool")
	requireTool(t, "zbarimg", "zbar-tools")
	for _, be := range gormstoretest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			app := startApp(t, be.Open(t))
			putResource(t, app, "/Client/plain", webClientYAML)
			putResource(t, app, "/Client/bank", webClientYAML+"    required_acr: "+acrMFA+"\n")

			t.Run("an unknown required_acr is a 422 OperationOutcome that names the field", func(t *testing.T) {
				code, body := adminRequest(t, app, http.MethodPut, "/Client/gold", "text/yaml", webClientYAML+"    required_acr: urn:gatehouse:acr:gold\n")
				if code != http.StatusUnprocessableEntity || !strings.Contains(body, `"OperationOutcome"`) || !strings.Contains(body, `"auth.authorization_code.required_acr"`) {
					t.Fatalf("PUT = %d %s", code, body)
				}
				if code, _ := adminRequest(t, app, http.MethodGet, "/Client/gold", "", ""); code != http.StatusNotFound {
					t.Fatalf("the refused client exists: %d", code)
				}
			})

			t.Run("discovery lists the three levels", func(t *testing.T) {
				var doc struct {
					ACR []string `json:"acr_values_supported"`
				}
				getJSON(t, app.URL+"/.well-known/openid-configuration", &doc)
				if !slices.Equal(doc.ACR, []string{acrPwd, acrMFA, acrPHR}) {
					t.Fatalf("acr_values_supported = %v", doc.ACR)
				}
			})

			t.Run("a password session steps up to mfa for a client that requires it, without the password again", func(t *testing.T) {
				putUser(t, app, "stepper", "")
				b := browserFor(t, app)
				l0 := newOAuthLogin(app, "plain")
				first := l0.exchange(t, b.signIn(l0.URL, "stepper", tfPassword))
				expectClaims(t, "the password sign-in", acrPwd, []string{"pwd"}, first.AuthTime, first.ACR, first.AMR, first.AuthTime)

				// The user turns on TOTP; this session stays at the password.
				p := b.get(app.URL + pathTwoFactorEnable)
				e := readEnrolmentPage(t, p)
				a := &authenticator{user: "stepper", secret: e.secret}
				submitForm(t, b, p, "code", url.Values{"code": {a.next(t)}})
				time.Sleep(1100 * time.Millisecond) // a new auth_time would show

				l1 := newOAuthLogin(app, "bank")
				if got := clientError(t, b.get(l1.URL+"&prompt=none"), l1.state); got != "unmet_authentication_requirements" {
					t.Fatalf("prompt=none below the client's level: error %q", got)
				}

				l2 := newOAuthLogin(app, "bank")
				p = b.get(l2.URL)
				expectCodePrompt(t, p)
				if formWith(parseHTML(t, p), "password") != nil {
					t.Fatal("the step-up asks for the password")
				}
				tok := l2.tokens(t, toClient(t, b, submitCode(t, b, p, a.next(t))))
				id := l2.idClaims(t, tok)
				want := []string{"pwd", "otp", "mfa"}
				expectClaims(t, "the ID token after the step-up", acrMFA, want, first.AuthTime, id.ACR, id.AMR, id.AuthTime)

				var at idClaims
				verifyJWT(t, app, tok.AccessToken, &at)
				expectClaims(t, "the JWT access token", acrMFA, want, first.AuthTime, at.ACR, at.AMR, at.AuthTime)

				in := introspect(t, app, "bank", "verysecret-0123456789", tok.AccessToken)
				var inAMR []string
				for _, m := range in["amr"].([]any) {
					inAMR = append(inAMR, m.(string))
				}
				at64, _ := in["auth_time"].(float64)
				acr, _ := in["acr"].(string)
				expectClaims(t, "introspection", acrMFA, want, first.AuthTime, acr, inAMR, int64(at64))

				if evs := auditEvents(t, app, "stepper", "login.step_up"); len(evs) != 1 || evs[0].Detail["amr"] != "pwd otp mfa" {
					t.Fatalf("step-up audit events %+v", evs)
				}

				t.Run("the stepped-up session now signs into a plain client at mfa with no prompt", func(t *testing.T) {
					l := newOAuthLogin(app, "plain")
					id := l.exchange(t, toClient(t, b, b.get(l.URL)))
					expectClaims(t, "plain after the step-up", acrMFA, want, first.AuthTime, id.ACR, id.AMR, id.AuthTime)
				})
				t.Run("max_age still asks for a new sign-in, which moves auth_time", func(t *testing.T) {
					l := newOAuthLogin(app, "bank")
					p := b.get(l.URL + "&max_age=1")
					if p.url.Path != "/auth/login" || formWith(parseHTML(t, p), "password") == nil {
						t.Fatalf("max_age=1 after the step-up ended at %s (status %d, location %q)", p.url, p.status, p.location)
					}
					p = submitForm(t, b, p, "password", url.Values{"username": {"stepper"}, "password": {tfPassword}})
					expectCodePrompt(t, p)
					id := l.exchange(t, toClient(t, b, submitCode(t, b, p, a.next(t))))
					if id.AuthTime <= first.AuthTime || id.ACR != acrMFA {
						t.Fatalf("after max_age: auth_time %d (first %d), acr %s", id.AuthTime, first.AuthTime, id.ACR)
					}
				})
			})

			t.Run("acr_values of mfa on a plain client step a password session up, here by enrolling", func(t *testing.T) {
				putUser(t, app, "asker", "")
				b := browserFor(t, app)
				l0 := newOAuthLogin(app, "plain")
				first := l0.exchange(t, b.signIn(l0.URL, "asker", tfPassword))
				time.Sleep(1100 * time.Millisecond)

				l1 := newOAuthLogin(app, "plain")
				if got := clientError(t, b.get(l1.URL+"&prompt=none&acr_values="+url.QueryEscape(acrMFA)), l1.state); got != "unmet_authentication_requirements" {
					t.Fatalf("prompt=none with acr_values=mfa: error %q", got)
				}
				t.Run("an essential acr in the claims parameter asks the same", func(t *testing.T) {
					l := newOAuthLogin(app, "plain")
					claims := `{"id_token":{"acr":{"essential":true,"values":["` + acrMFA + `"]}}}`
					if got := clientError(t, b.get(l.URL+"&prompt=none&claims="+url.QueryEscape(claims)), l.state); got != "unmet_authentication_requirements" {
						t.Fatalf("prompt=none with an essential acr of mfa: error %q", got)
					}
					l = newOAuthLogin(app, "plain")
					claims = `{"id_token":{"acr":{"essential":true,"values":["urn:other:gold"]}}}`
					if got := clientError(t, b.get(l.URL+"&claims="+url.QueryEscape(claims)), l.state); got != "unmet_authentication_requirements" {
						t.Fatalf("an essential acr of unknown values: error %q", got)
					}
				})
				t.Run("without acr_values the plain client still takes the password session", func(t *testing.T) {
					l := newOAuthLogin(app, "plain")
					id := l.exchange(t, toClient(t, b, b.get(l.URL)))
					expectClaims(t, "plain without acr_values", acrPwd, []string{"pwd"}, first.AuthTime, id.ACR, id.AMR, id.AuthTime)
				})

				l2 := newOAuthLogin(app, "plain")
				p := b.get(l2.URL + "&acr_values=" + url.QueryEscape(acrPHR+" "+acrMFA))
				if p.url.Path != pathTwoFactorPrompt || formWith(parseHTML(t, p), "password") != nil {
					t.Fatalf("acr_values=mfa ended at %s (status %d, location %q)", p.url, p.status, p.location)
				}
				e := readEnrolmentPage(t, p)
				a := &authenticator{user: "asker", secret: e.secret}
				p = submitForm(t, b, p, "code", url.Values{"code": {a.next(t)}})
				if codes := recoveryCodes(t, p); len(codes) != 10 {
					t.Fatalf("%d recovery codes", len(codes))
				}
				id := l2.exchange(t, toClient(t, b, continueLogin(t, b, p)))
				expectClaims(t, "after enrolling in the step-up", acrMFA, []string{"pwd", "otp", "mfa"}, first.AuthTime, id.ACR, id.AMR, id.AuthTime)
			})

			t.Run("phr, which no factor of the user reaches, is unmet even with interaction", func(t *testing.T) {
				putUser(t, app, "nokey", "")
				b := browserFor(t, app)
				l := newOAuthLogin(app, "plain")
				b.signIn(l.URL, "nokey", tfPassword)
				l = newOAuthLogin(app, "plain")
				if got := clientError(t, b.get(l.URL+"&acr_values="+url.QueryEscape(acrPHR)), l.state); got != "unmet_authentication_requirements" {
					t.Fatalf("acr_values=phr: error %q", got)
				}
			})
		})
	}
}
