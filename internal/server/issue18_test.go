package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

func TestHSTSOnlyWithAnHTTPSIssuer(t *testing.T) {
	for _, tc := range []struct {
		name, issuer, want string
	}{
		{"an https issuer sends Strict-Transport-Security", "https://id.example.test", "max-age=31536000"},
		{"a plain http issuer sends none", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := startApp(t, gormstoretest.Open(t), func(c *config.Config) {
				if tc.issuer != "" {
					c.Issuer = tc.issuer
				}
			})
			res, err := http.Get(app.URL + "/health/alive")
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if got := res.Header.Get("Strict-Transport-Security"); got != tc.want {
				t.Fatalf("Strict-Transport-Security = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestTokenEndpointAuditsTheValidatedRequestID(t *testing.T) {
	app := startApp(t, gormstoretest.Open(t))
	app.mustPut("/Client/web", "secret: websecret-0123456789\ngrant_types: [password]\n")
	app.mustPut("/User/alice", "password: alice-password-1\n")
	req, err := http.NewRequest(http.MethodPost, app.URL+"/auth/token", strings.NewReader(url.Values{
		"grant_type": {"password"}, "username": {"alice"}, "password": {"wrong"},
	}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Request-Id", "spoofed id <script>")
	req.SetBasicAuth("web", "websecret-0123456789")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	assigned := res.Header.Get("X-Request-Id")
	if assigned == "" || assigned == "spoofed id <script>" {
		t.Fatalf("response X-Request-Id %q", assigned)
	}
	evs, _, err := app.Store.ListAudit(context.Background(), store.AuditFilter{Type: audit.LoginFailure}, store.Page{Count: 10, Page: 1})
	if err != nil || len(evs) == 0 {
		t.Fatalf("audit events %v, %v", evs, err)
	}
	if evs[0].RequestID != assigned {
		t.Fatalf("audited request id %q, want the server's %q", evs[0].RequestID, assigned)
	}
}

func TestPasswordResetEndsTokensOnEveryProcess(t *testing.T) {
	for _, be := range gormstoretest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			st := be.Open(t)
			key := secret.RandomBytes(32)
			a := startAppWithKey(t, st, key)
			b := startAppWithKey(t, st, key)
			a.mustPut("/Client/web", "secret: websecret-0123456789\ngrant_types: [password, refresh_token]\nscope: [openid, offline_access]\nauth: {password: {refresh_token: true}}\n")
			a.mustPut("/User/victim", "password: old-password-1\n")
			post := func(app *testApp, path string, form url.Values) map[string]any {
				t.Helper()
				req, err := http.NewRequest(http.MethodPost, app.URL+path, strings.NewReader(form.Encode()))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.SetBasicAuth("web", "websecret-0123456789")
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer res.Body.Close()
				var m map[string]any
				_ = json.NewDecoder(res.Body).Decode(&m)
				return m
			}
			tok := post(a, "/auth/token", url.Values{"grant_type": {"password"}, "username": {"victim"}, "password": {"old-password-1"}, "scope": {"openid offline_access"}})
			at, _ := tok["access_token"].(string)
			rt, _ := tok["refresh_token"].(string)
			if at == "" || rt == "" {
				t.Fatalf("tokens: %v", tok)
			}
			// The reset goes through the other process.
			b.mustPut("/User/victim", "password: new-password-2\n")
			if got := post(a, "/auth/introspect", url.Values{"token": {at}}); got["active"] != false {
				t.Fatalf("old access token after the reset: %v", got)
			}
			if got := post(a, "/auth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}); got["error"] != "invalid_grant" {
				t.Fatalf("old refresh token after the reset: %v", got)
			}
		})
	}
}
