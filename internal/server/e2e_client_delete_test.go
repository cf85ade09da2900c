package server

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

// TestDeletingAClientEndsWhatItWasIssued: DELETE /Client/{id} makes its
// access and refresh tokens inactive at once, and a client re-created
// with the same id does not bring them back.
func TestDeletingAClientEndsWhatItWasIssued(t *testing.T) {
	for _, be := range gormstoretest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			app := startApp(t, be.Open(t))
			app.mustPut("/User/alice", userYAML)
			const app2 = `
secret: app2-secret-0123456789
grant_types: [password]
scope: [openid]
auth:
  password:
    refresh_token: true
`
			app.mustPut("/Client/app2", app2)
			app.mustPut("/Client/rs", "secret: rs-secret-0123456789\ngrant_types: [client_credentials]\n")
			tokens := tokenRequest(t, app, "app2", "app2-secret-0123456789",
				url.Values{"grant_type": {"password"}, "username": {"alice@example.com"}, "password": {"password"}, "scope": {"openid"}})
			wantTokens(t, tokens)
			if in := introspect(t, app, "rs", "rs-secret-0123456789", tokens.str("access_token")); in["active"] != true {
				t.Fatalf("before the delete: %v", in)
			}

			if code, body := app.admin(http.MethodDelete, "/Client/app2", "", ""); code != http.StatusOK && code != http.StatusNoContent {
				t.Fatalf("DELETE = %d %s", code, body)
			}
			t.Run("the access token is inactive at once", func(t *testing.T) {
				if in := introspect(t, app, "rs", "rs-secret-0123456789", tokens.str("access_token")); in["active"] != false {
					t.Fatalf("after the delete: %v", in)
				}
			})
			app.mustPut("/Client/app2", app2)
			t.Run("a client re-created with the id does not revive them", func(t *testing.T) {
				if in := introspect(t, app, "rs", "rs-secret-0123456789", tokens.str("access_token")); in["active"] != false {
					t.Fatalf("after re-creating the client: %v", in)
				}
				r := tokenRequest(t, app, "app2", "app2-secret-0123456789", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tokens.str("refresh_token")}})
				wantStatus(t, r, http.StatusBadRequest, "invalid_grant")
				req, _ := http.NewRequest(http.MethodGet, app.URL+"/auth/userinfo", nil)
				req.Header.Set("Authorization", "Bearer "+tokens.str("access_token"))
				if res := doJSON(t, req); res.status != http.StatusUnauthorized {
					t.Fatalf("userinfo = %d %s", res.status, res.raw)
				}
			})
		})
	}
}
