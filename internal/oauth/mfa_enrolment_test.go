package oauth

import (
	"context"
	"net/http"
	"net/url"
	"testing"

	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

// A sign-up under AuthConfig twoFactor.defaultMethod totp leaves a TOTP
// enrolment due: the password grant must treat that account like one whose
// client requires a second factor it has not set up.
func TestPasswordGrantWithATOTPEnrolmentDue(t *testing.T) {
	forEachMFABackend(t, func(t *testing.T, m *mfaEnv) {
		ctx := context.Background()
		m.putUser(resource.User{ID: "erin", Email: "erin@example.test"}, userPass)
		if err := m.st.PutTwoFactor(ctx, resource.TOTPEnrolmentMarker("erin", m.clock.Now())); err != nil {
			t.Fatal(err)
		}
		wantEnrolFirst := func(t *testing.T, r response) {
			t.Helper()
			if r.status != http.StatusForbidden || r.str("error") != "mfa_required" {
				t.Fatalf("got %d %s", r.status, r.raw)
			}
			if r.str("mfa_token") != "" || r.str("access_token") != "" || r.str("refresh_token") != "" {
				t.Fatalf("a user who must enrol got something to continue with: %s", r.raw)
			}
			if r.str("error_description") == "" {
				t.Fatalf("no error_description: %s", r.raw)
			}
		}
		t.Run("the password alone is refused with mfa_required and nothing to continue with", func(t *testing.T) {
			wantEnrolFirst(t, m.password("erin", "", "openid"))
		})
		t.Run("an otp does not get around it", func(t *testing.T) {
			wantEnrolFirst(t, m.password("erin", "123456", ""))
		})
		t.Run("every client refuses it, also one without any two-factor rule", func(t *testing.T) {
			r := m.post(PathToken, url.Values{"grant_type": {"password"}, "username": {"erin"}, "password": {userPass}}, "mobile2", mobile2Secret)
			wantEnrolFirst(t, r)
		})
		t.Run("no code is sent for an account with nothing to send to", func(t *testing.T) {
			if n := m.gw.count("erin"); n != 0 {
				t.Fatalf("the gateway got %d messages", n)
			}
		})
		t.Run("once the user has enrolled, the usual second-factor exchange applies", func(t *testing.T) {
			u, err := m.st.GetUser(ctx, "erin")
			if err != nil {
				t.Fatal(err)
			}
			en, err := m.tf.BeginTOTP(u, "Gatehouse")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := m.tf.ConfirmTOTP(ctx, twofactor.ConfirmInput{UserID: "erin", Secret: en.Secret, Code: m.totpNow(t, en.Secret), PastSteps: 1}); err != nil {
				t.Fatalf("confirm: %v", err)
			}
			r := m.password("erin", "", "")
			if r.status != http.StatusForbidden || r.str("mfa_token") == "" {
				t.Fatalf("got %d %s", r.status, r.raw)
			}
		})
	})
}
