package api_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/api"
	"github.com/gatehouse/gatehouse/internal/resource"
)

// A password reset delivered by the AuthConfig's webhook: the payload
// names the event and carries the code and the hosted page's link, and
// nothing of it is in the answer.
func TestPasswordResetOverTheWebhook(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		const email = "pat@example.com"
		e.user(resource.User{ResourceType: resource.TypeUser, ID: "pat", Email: email})
		r := e.post(api.PathPasswordReset, map[string]any{"client_id": spaClient, "email": email})
		want(t, r, http.StatusAccepted, "")
		e.api.Passwords.WaitForSends()
		ev := e.gw.lastEvent(t, email)
		if ev.Event != "password.reset" || ev.Token == "" || strings.Contains(r.raw, ev.Token) {
			t.Fatalf("event %+v, answer %s", ev, r.raw)
		}
		link, err := url.Parse(ev.Link)
		if err != nil || link.Path != "/auth/reset-password" || link.Query().Get("code") != ev.Token ||
			link.Query().Get("reset") != r.str("reset_id") || link.Query().Get("client_id") != spaClient {
			t.Fatalf("link %q", ev.Link)
		}

		t.Run("a request without an e-mail address is refused", func(t *testing.T) {
			want(t, e.post(api.PathPasswordReset, map[string]any{"client_id": spaClient}), http.StatusBadRequest, "invalid_request")
		})
		t.Run("a new password that breaks the rules spends nothing", func(t *testing.T) {
			want(t, e.post(api.PathPasswordResetConfirm, map[string]any{"client_id": spaClient, "reset_id": r.str("reset_id"),
				"code": ev.Token, "new_password": "short"}), http.StatusBadRequest, "invalid_password")
		})
		t.Run("the code sets the new password once", func(t *testing.T) {
			body := map[string]any{"client_id": spaClient, "reset_id": r.str("reset_id"), "code": ev.Token, "new_password": "a-new-password"}
			want(t, e.post(api.PathPasswordResetConfirm, body), http.StatusOK, "")
			want(t, e.post(api.PathPasswordResetConfirm, body), http.StatusUnprocessableEntity, "invalid_code")
			got := e.post(api.PathSignIn, map[string]any{"username": "pat", "password": "a-new-password", "client_id": spaClient})
			if got.str("access_token") == "" {
				t.Fatalf("sign-in with the new password: %s", got.raw)
			}
		})
		t.Run("without any delivery the request is refused plainly", func(t *testing.T) {
			e.authConfig(func(ac *resource.AuthConfig) { ac.TwoFactor.Webhook = nil })
			want(t, e.post(api.PathPasswordReset, map[string]any{"client_id": spaClient, "email": email}), http.StatusConflict, "delivery_not_configured")
		})
	})
}
