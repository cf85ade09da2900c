package server

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/passkey/passkeytest"
	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

// Passkeys over two processes that serve one database as one service
// (same master key, same public URL): a passkey registered through one
// answers a password grant's mfa_token on the other, a replay of that
// answer is refused on either, and the hosted passwordless sign-in refuses
// a bad answer with its message and 400. On SQLite and PostgreSQL.
func TestPasskeysAcrossProcesses(t *testing.T) {
	for _, be := range gormstoretest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			st := be.Open(t)
			key := secret.RandomBytes(32)
			// Both processes answer as http://127.0.0.1:8080, so the relying
			// party of both is localhost:8080.
			public := func(c *config.Config) { c.Issuer = "http://127.0.0.1:8080" }
			one := startAppWithKey(t, st, key, public)
			two := startAppWithKey(t, st, key, public)
			putResource(t, one, "/Client/mobile", passwordClientYAML)
			putResource(t, one, "/User/pk-bob", "email: pk-bob@example.com\npassword: "+i5Password+"\n")
			a := &passkeytest.Authenticator{Origin: "http://localhost:8080", UserVerified: true}

			password := func(app *testApp) apiResp {
				return tokenRequest(t, app, "mobile", i5Secret, url.Values{"grant_type": {"password"}, "username": {"pk-bob"}, "password": {i5Password}, "scope": {"openid"}})
			}
			t.Run("a passkey registered on one process is the second factor of a password grant finished on the other", func(t *testing.T) {
				bearer := password(one)
				wantTokens(t, bearer)
				r := callAPI(t, one, http.MethodPost, "/auth/passkeys/registration-options", bearer.str("access_token"), map[string]any{})
				wantStatus(t, r, http.StatusOK, "")
				opts, _ := json.Marshal(r.body["options"])
				cred, _, err := a.Create(opts)
				if err != nil {
					t.Fatal(err)
				}
				wantStatus(t, callAPI(t, two, http.MethodPost, "/auth/passkeys", bearer.str("access_token"), map[string]any{"credential": string(cred), "name": "Phone"}), http.StatusCreated, "")

				r = callAPI(t, two, http.MethodGet, "/auth/passkeys", bearer.str("access_token"), nil)
				wantStatus(t, r, http.StatusOK, "")
				if l := r.list(t, "passkeys"); len(l) != 1 || l[0]["name"] != "Phone" {
					t.Fatalf("GET /auth/passkeys with the token = %s", r.raw)
				}

				r = password(one)
				wantStatus(t, r, http.StatusForbidden, "mfa_required")
				mfa := r.str("mfa_token")
				r = callAPI(t, one, http.MethodPost, "/auth/sign-in/prepare", "", map[string]any{"client_id": "mobile", "client_secret": i5Secret, "mfa_token": mfa, "strategy": "passkey"})
				wantStatus(t, r, http.StatusOK, "")
				prepared, _ := r.body["prepared"].(map[string]any)
				opts, _ = json.Marshal(prepared["options"])
				answer, err := a.Get(opts)
				if err != nil {
					t.Fatal(err)
				}
				grant := func(app *testApp, token string) apiResp {
					return tokenRequest(t, app, "mobile", i5Secret, url.Values{"grant_type": {"urn:gatehouse:grant-type:mfa-otp"}, "mfa_token": {token},
						"strategy": {"passkey"}, "otp": {string(answer)}, "scope": {"openid"}})
				}
				r = grant(two, mfa)
				wantTokens(t, r)
				if amr := idTokenAMR(t, two, r); !slices.Equal(amr, []string{"pwd", "hwk", "user", "mfa"}) {
					t.Fatalf("amr = %v", amr)
				}
				r = password(two)
				wantStatus(t, r, http.StatusForbidden, "mfa_required")
				wantStatus(t, grant(one, r.str("mfa_token")), http.StatusBadRequest, "invalid_grant")
			})

			t.Run("the hosted second-factor page asks for the passkey and refuses a bad answer with a message and 400", func(t *testing.T) {
				b := browserFor(t, two)
				p := b.get(two.URL + "/auth/login")
				m := benchCSRF.FindStringSubmatch(p.body)
				if m == nil {
					t.Fatalf("no CSRF token on the login page: %s", p.body)
				}
				p = b.post(two.URL+"/auth/login", url.Values{"_csrf": {m[1]}, "username": {"pk-bob@example.com"}, "password": {i5Password}})
				if p.url.Path != "/auth/login/two-factor" || !strings.Contains(p.body, `id="passkey-step" data-options="{`) {
					t.Fatalf("after the password: %s %s", p.url, p.body)
				}
				m = benchCSRF.FindStringSubmatch(p.body)
				p = b.post(two.URL+"/auth/login/two-factor", url.Values{"_csrf": {m[1]}, "strategy": {"passkey"}, "code": {`{"id":"x"}`}})
				if p.status != http.StatusBadRequest || !strings.Contains(p.body, "That passkey could not be used") || !strings.Contains(p.body, `data-options="{`) {
					t.Fatalf("a bad answer: %d %s", p.status, p.body)
				}
			})

			t.Run("an AuthConfig's relying party is checked when it is written", func(t *testing.T) {
				tests := []struct{ name, yaml, expression string }{
					{"an IP address as rpId", "webauthn: {rpId: 127.0.0.1}\n", "webauthn.rpId"},
					{"an origin outside the rpId", "webauthn: {rpId: example.com, origins: ['https://example.org']}\n", "webauthn.origins[0]"},
					{"an unknown user verification", "webauthn: {userVerification: sometimes}\n", "webauthn.userVerification"},
				}
				for _, tc := range tests {
					t.Run(tc.name+" is a 422", func(t *testing.T) {
						code, body := adminRequest(t, one, http.MethodPut, "/AuthConfig/pk", "text/yaml", tc.yaml)
						if code != http.StatusUnprocessableEntity || !strings.Contains(body, `"OperationOutcome"`) || !strings.Contains(body, tc.expression) {
							t.Fatalf("PUT = %d %s", code, body)
						}
					})
				}
				putResource(t, one, "/AuthConfig/pk", "webauthn: {rpId: example.com, rpName: Example, origins: ['https://login.example.com'], userVerification: required, attestation: direct}\n")
				// It would apply to every sign-in (the only AuthConfig): remove it.
				if code, body := adminRequest(t, one, http.MethodDelete, "/AuthConfig/pk", "", ""); code != http.StatusOK {
					t.Fatalf("DELETE = %d %s", code, body)
				}
			})

			t.Run("the hosted passwordless sign-in refuses a bad answer with a message and 400", func(t *testing.T) {
				b := browserFor(t, one)
				p := b.get(one.URL + "/auth/login")
				m := benchCSRF.FindStringSubmatch(p.body)
				if m == nil {
					t.Fatalf("no CSRF token on the login page: %s", p.body)
				}
				csrf := m[1]
				forged, err := a.Assert(a.Creds[0], "bm90IGEgY2hhbGxlbmdlIG9mIG91cnM", 1000)
				if err != nil {
					t.Fatal(err)
				}
				before, _ := st.GetTwoFactor(t.Context(), "pk-bob")
				for _, answer := range []string{"", `{"id":`, `{"id":"AAAA","rawId":"AAAA","type":"public-key","response":{}}`, string(forged)} {
					p = b.post(one.URL+"/auth/login/passkey", url.Values{"_csrf": {csrf}, "credential": {answer}})
					if p.status != http.StatusBadRequest || !strings.Contains(p.body, "That passkey could not be used") {
						t.Fatalf("answer %q: %d %s", answer, p.status, p.body)
					}
				}
				// The forged answer named pk-bob's passkey: it counted on
				// pk-bob's attempt counter; the others named nobody.
				if after, _ := st.GetTwoFactor(t.Context(), "pk-bob"); after.Failures != before.Failures+1 {
					t.Fatalf("pk-bob's failures went from %d to %d, want one more", before.Failures, after.Failures)
				}
			})
		})
	}
}

// Deleting a passkey on the hosted settings page asks for the password
// again when the last one was typed more than ten minutes ago, deletes
// nothing meanwhile, and deletes once it is confirmed.
func TestHostedPasskeyDeleteAsksForThePassword(t *testing.T) {
	for _, be := range gormstoretest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			clock := &offsetClock{}
			app := startAppWithDeps(t, be.Open(t), secret.RandomBytes(32), func(d *Deps) { d.Now = clock.Now })
			putResource(t, app, "/User/pk-carol", "email: pk-carol@example.com\npassword: "+i5Password+"\n")
			ctx := t.Context()
			csrf := func(p page) string {
				t.Helper()
				m := benchCSRF.FindStringSubmatch(p.body)
				if m == nil {
					t.Fatalf("no CSRF token on %s: %s", p.url, p.body)
				}
				return m[1]
			}
			b := browserFor(t, app)
			p := b.get(app.URL + "/auth/login")
			b.post(app.URL+"/auth/login", url.Values{"_csrf": {csrf(p)}, "username": {"pk-carol"}, "password": {i5Password}})
			// A passkey added since (what the settings page's script does
			// is covered by the browser test).
			if err := app.Store.CreateWebAuthnCredential(ctx, store.WebAuthnCredential{ID: "Y3JlZC1jYXJvbA", UserID: "pk-carol",
				PublicKey: []byte("cose"), Name: "Old laptop"}); err != nil {
				t.Fatal(err)
			}
			clock.Advance(11 * time.Minute)
			p = b.get(app.URL + "/auth/passkeys")
			if p.status != http.StatusOK || !strings.Contains(p.body, "Old laptop") {
				t.Fatalf("settings page: %d %s", p.status, p.body)
			}
			p = b.post(app.URL+"/auth/passkeys/Y3JlZC1jYXJvbA/delete", url.Values{"_csrf": {csrf(p)}})
			if p.url.Path != "/auth/login" || !strings.Contains(p.body, "Confirm your password") {
				t.Fatalf("a delete with a stale password: %s %s", p.url, p.body)
			}
			if list, _ := app.Store.ListWebAuthnCredentials(ctx, "pk-carol"); len(list) != 1 {
				t.Fatalf("deleted before the password was confirmed: %+v", list)
			}
			p = b.post(app.URL+"/auth/login", url.Values{"_csrf": {csrf(p)}, "username": {"pk-carol"}, "password": {i5Password}})
			if p.url.Path != "/auth/passkeys" {
				t.Fatalf("after confirming: %s", p.url)
			}
			p = b.post(app.URL+"/auth/passkeys/Y3JlZC1jYXJvbA/delete", url.Values{"_csrf": {csrf(p)}})
			if p.url.Path != "/auth/passkeys" || !strings.Contains(p.body, "Passkey deleted.") {
				t.Fatalf("the confirmed delete: %s %s", p.url, p.body)
			}
			if list, _ := app.Store.ListWebAuthnCredentials(ctx, "pk-carol"); len(list) != 0 {
				t.Fatalf("still stored: %+v", list)
			}
		})
	}
}
