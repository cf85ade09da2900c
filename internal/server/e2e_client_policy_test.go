package server

// End-to-end tests of the per-Client two-factor policy (issue 13):
// Client.twoFactor {required, methods} over its AuthConfig's, resolved in
// internal/policy and applied by the one engine on every surface — the
// hosted pages, the JSON sign-in API and the password grant.

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/signin"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

func TestPerClientTwoFactorPolicyOnEverySurface(t *testing.T) {
	requireTool(t, "oathtool", "oathtool")
	for _, be := range gormstoretest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			m := newMatrixSuite(t, be.Open(t), secret.RandomBytes(32))
			app := m.app
			hook := "  webhook:\n    endpoint: '" + m.gw.srv.URL + "/codes'\n    timeout: 2000\n"
			putResource(t, app, "/AuthConfig/strict", "twoFactor:\n  issuerName: Strict\n  required: true\n"+hook)
			adminPolicy := "twoFactor:\n  required: true\n  methods: [totp]\n"
			lenient := "authConfig: {id: strict}\ntwoFactor:\n  required: false\n"
			putResource(t, app, "/Client/admin-web", webClientYAML+adminPolicy)
			putResource(t, app, "/Client/admin-mobile", passwordClientYAML+adminPolicy)
			putResource(t, app, "/Client/lenient-web", webClientYAML+lenient)
			putResource(t, app, "/Client/lenient-mobile", passwordClientYAML+lenient)
			putResource(t, app, "/Client/strict-mobile", passwordClientYAML+"authConfig: {id: strict}\n")

			t.Run("an unknown method is a 422 that names the field", func(t *testing.T) {
				code, body := adminRequest(t, app, http.MethodPut, "/Client/fax", "text/yaml", passwordClientYAML+"twoFactor:\n  methods: [totp, fax]\n")
				if code != http.StatusUnprocessableEntity || !strings.Contains(body, `"twoFactor.methods[1]"`) {
					t.Fatalf("PUT = %d %s", code, body)
				}
			})

			t.Run("a client that lifts its AuthConfig's requirement signs a user without a factor in with the password, on every surface", func(t *testing.T) {
				m.user(t, "cp-plain", "")
				l := newOAuthLogin(app, "lenient-web")
				b := browserFor(t, app)
				if id := l.exchange(t, b.signIn(l.URL, "cp-plain", i5Password)); !slices.Equal(id.AMR, []string{"pwd"}) || id.ACR != acrPwd {
					t.Fatalf("hosted: amr %v acr %s", id.AMR, id.ACR)
				}
				if r := m.signIn(t, "lenient-mobile", "cp-plain"); r.status != http.StatusOK || r.str("status") != "complete" {
					t.Fatalf("sign-in API: %d %s", r.status, r.raw)
				}
				wantTokens(t, m.password(t, "lenient-mobile", "cp-plain", url.Values{"scope": {"openid"}}))
				t.Run("while a client of the same AuthConfig that says nothing still requires enrolment", func(t *testing.T) {
					if r := m.signIn(t, "strict-mobile", "cp-plain"); r.status != http.StatusOK || r.str("status") != "needs_enrollment" {
						t.Fatalf("sign-in API: %d %s", r.status, r.raw)
					}
				})
			})

			t.Run("a client whose methods leave out the user's SMS factor refuses the sign-in on every surface", func(t *testing.T) {
				m.smsUser(t, "cp-sms", "+14155559901")
				l := newOAuthLogin(app, "admin-web")
				b := browserFor(t, app)
				if p := passwordStep(t, b, l.URL, "cp-sms"); p.status != http.StatusForbidden || p.location != "" {
					t.Fatalf("hosted: status %d at %s, location %q", p.status, p.url, p.location)
				}
				r := m.signIn(t, "admin-mobile", "cp-sms")
				wantStatus(t, r, http.StatusForbidden, "unmet_authentication_requirements")
				r = m.password(t, "admin-mobile", "cp-sms", url.Values{"scope": {"openid"}})
				wantStatus(t, r, http.StatusForbidden, "access_denied")
			})

			t.Run("a session signed in elsewhere with a factor the client leaves out does not get in; one with TOTP does", func(t *testing.T) {
				for _, tc := range []struct {
					factor, strategy string
					want             string // "" for a code
				}{
					{"sms", signin.StrategyPhoneCode, "unmet_authentication_requirements"},
					{"totp", signin.StrategyTOTP, ""},
				} {
					u := m.newUser(t, tc.factor, tc.strategy)
					f := m.begin(t, "hosted", u)
					var hf *hostedFlow
					switch v := f.(type) {
					case withSent:
						hf = v.flow.(*hostedFlow)
					case *hostedFlow:
						hf = v
					}
					if o := f.try(t, u.answer(t, f.sent())); !o.ok {
						t.Fatalf("%s sign-in at mywebapp refused", tc.factor)
					}
					l := newOAuthLogin(app, "admin-web")
					p := hf.b.get(l.URL)
					if tc.want != "" {
						if got := clientError(t, p, l.state); got != tc.want {
							t.Fatalf("%s session at admin-web: error %q, want %q", tc.factor, got, tc.want)
						}
						continue
					}
					if id := l.exchange(t, toClient(t, hf.b, p)); id.ACR != acrMFA {
						t.Fatalf("%s session at admin-web: acr %s", tc.factor, id.ACR)
					}
				}
			})

			t.Run("a client whose methods are TOTP takes the code and refuses a recovery code, on every surface", func(t *testing.T) {
				a := m.totpUser(t, "cp-totp")
				r := m.signIn(t, "admin-mobile", "cp-totp")
				var strategies []string
				for _, f := range r.list(t, "factors") {
					strategies = append(strategies, f["strategy"].(string))
				}
				if r.str("status") != "needs_second_factor" || !slices.Equal(strategies, []string{"totp"}) {
					t.Fatalf("sign-in API offers %v: %s", strategies, r.raw)
				}
				token := r.str("mfa_token")
				wantStatus(t, m.attempt(t, "admin-mobile", token, "backup_code", a.recovery[0]), http.StatusBadRequest, "strategy_not_available")
				ok := m.attempt(t, "admin-mobile", token, "totp", a.next(t))
				wantTokens(t, ok)
				if amr := idTokenAMR(t, app, ok); !slices.Equal(amr, []string{"pwd", "otp", "mfa"}) {
					t.Fatalf("sign-in API amr %v", amr)
				}

				r = m.password(t, "admin-mobile", "cp-totp", url.Values{"scope": {"openid"}, "otp": {a.recovery[1]}})
				wantStatus(t, r, http.StatusBadRequest, "invalid_grant")
				wantTokens(t, m.password(t, "admin-mobile", "cp-totp", url.Values{"scope": {"openid"}, "otp": {a.next(t)}}))

				l := newOAuthLogin(app, "admin-web")
				b := browserFor(t, app)
				p := passwordStep(t, b, l.URL, "cp-totp")
				expectCodePrompt(t, p)
				p = submitCode(t, b, p, a.recovery[2])
				expectRefused(t, p, "code", "Invalid code", "a recovery code at a TOTP-only client")
				id := l.exchange(t, toClient(t, b, submitCode(t, b, p, a.next(t))))
				if !slices.Equal(id.AMR, []string{"pwd", "otp", "mfa"}) || id.ACR != acrMFA {
					t.Fatalf("hosted: amr %v acr %s", id.AMR, id.ACR)
				}
			})
		})
	}
}
