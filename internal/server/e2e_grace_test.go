package server

// End-to-end tests of the enrolment grace period (issue 13): a client that
// requires a second factor lets a user without one skip its enrolment for
// AuthConfig twoFactor.gracePeriod.days from the first sign-in where the
// requirement applied; the page counts down; after it, enrolment comes first.

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

func TestEnrolmentGraceEndToEnd(t *testing.T) {
	for _, be := range gormstoretest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			clock := &offsetClock{}
			app := startAppWithDeps(t, be.Open(t), secret.RandomBytes(32), func(d *Deps) { d.Now = clock.Now })
			required := "twoFactor:\n  required: true\n"
			putResource(t, app, "/Client/strict", webClientYAML+required)
			putResource(t, app, "/Client/strictapi", passwordClientYAML+required)

			t.Run("gracePeriod.days outside 1 to 365 is a 422 OperationOutcome that names the field", func(t *testing.T) {
				for _, days := range []string{"0", "366"} {
					code, body := adminRequest(t, app, http.MethodPut, "/AuthConfig/default", "text/yaml", "twoFactor:\n  gracePeriod:\n    days: "+days+"\n")
					if code != http.StatusUnprocessableEntity || !strings.Contains(body, `"twoFactor.gracePeriod.days"`) {
						t.Fatalf("days %s: PUT = %d %s", days, code, body)
					}
				}
			})
			putResource(t, app, "/AuthConfig/default", "twoFactor:\n  gracePeriod:\n    days: 7\n")

			// enrolmentPage signs a new browser in at strict up to the enrolment.
			enrolmentPage := func(t *testing.T, user string) (*browser, oauthLogin, page) {
				t.Helper()
				b := browserFor(t, app)
				l := newOAuthLogin(app, "strict")
				p := passwordStep(t, b, l.URL, user)
				if p.url.Path != pathTwoFactorPrompt || !has(t, p, "totp-secret") {
					t.Fatalf("expected the enrolment, got %s (status %d):\n%s", p.url, p.status, p.body)
				}
				return b, l, p
			}
			apiSignIn := func(t *testing.T, user string) apiResp {
				t.Helper()
				r := callAPI(t, app, http.MethodPost, "/auth/sign-in", "", map[string]any{
					"client_id": "strictapi", "client_secret": "verysecret-0123456789", "username": user, "password": tfPassword,
				})
				wantStatus(t, r, http.StatusOK, "")
				if r.str("status") != "needs_enrollment" {
					t.Fatalf("sign-in API: %s", r.raw)
				}
				return r
			}
			putUser(t, app, "late", "")

			t.Run("during the grace the enrolment says how long is left and Not now signs in with the password", func(t *testing.T) {
				b, l, p := enrolmentPage(t, "late")
				if got := pageText(t, p, "grace"); !strings.Contains(got, "7 days") {
					t.Fatalf("#grace = %q", got)
				}
				id := l.exchange(t, toClient(t, b, submitForm(t, b, p, "skip", url.Values{"skip": {"1"}})))
				expectClaims(t, "a skipped enrolment", acrPwd, []string{"pwd"}, id.AuthTime, id.ACR, id.AMR, id.AuthTime)
				l2 := newOAuthLogin(app, "strict")
				l2.exchange(t, toClient(t, b, b.get(l2.URL)))
				if evs := auditEvents(t, app, "late", "two_factor.enrolment_skipped"); len(evs) != 1 {
					t.Fatalf("skip audit events %+v", evs)
				}
			})

			t.Run("the sign-in API reports the grace and may skip", func(t *testing.T) {
				r := apiSignIn(t, "late")
				if r.body["skippable"] != true || r.str("graceEndsAt") == "" {
					t.Fatalf("sign-in API during the grace: %s", r.raw)
				}
				s := callAPI(t, app, http.MethodPost, "/auth/sign-in/enroll/skip", "", map[string]any{
					"client_id": "strictapi", "client_secret": "verysecret-0123456789", "mfa_token": r.str("mfa_token"),
				})
				wantStatus(t, s, http.StatusOK, "")
				if s.str("status") != "complete" || s.str("access_token") == "" {
					t.Fatalf("skip: %s", s.raw)
				}
			})

			t.Run("the grace counts from the first sign-in where it applied", func(t *testing.T) {
				clock.Advance(3 * 24 * time.Hour)
				_, _, p := enrolmentPage(t, "late")
				if got := pageText(t, p, "grace"); !strings.Contains(got, "4 days") {
					t.Fatalf("#grace three days later = %q", got)
				}
				putUser(t, app, "newcomer", "")
				_, _, p = enrolmentPage(t, "newcomer")
				if got := pageText(t, p, "grace"); !strings.Contains(got, "7 days") {
					t.Fatalf("#grace of a user whose grace starts now = %q", got)
				}
			})

			t.Run("after the grace the enrolment cannot be skipped on any surface", func(t *testing.T) {
				clock.Advance(4*24*time.Hour + time.Minute)
				b, _, p := enrolmentPage(t, "late")
				if has(t, p, "grace") || has(t, p, "skip-enrolment") {
					t.Fatalf("Not now after the grace:\n%s", p.body)
				}
				p = b.submit(p, "/auth/login/two-factor/skip", url.Values{"skip": {"1"}})
				if p.location != "" || !has(t, p, "totp-secret") || !strings.Contains(errorText(t, p), "over") {
					t.Fatalf("a skip after the grace: %s (status %d, location %q) #error %q", p.url, p.status, p.location, errorText(t, p))
				}
				r := apiSignIn(t, "late")
				if _, ok := r.body["skippable"]; ok {
					t.Fatalf("sign-in API after the grace: %s", r.raw)
				}
				s := callAPI(t, app, http.MethodPost, "/auth/sign-in/enroll/skip", "", map[string]any{
					"client_id": "strictapi", "client_secret": "verysecret-0123456789", "mfa_token": r.str("mfa_token"),
				})
				wantStatus(t, s, http.StatusForbidden, "enrollment_required")
			})
		})
	}
}
