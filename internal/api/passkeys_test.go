package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"testing"

	"github.com/gatehouse/gatehouse/internal/api"
	"github.com/gatehouse/gatehouse/internal/passkey"
	"github.com/gatehouse/gatehouse/internal/passkey/passkeytest"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

// withPasskeys gives the API the passkey service and the engine its
// factor, as the server wires them (issuer http://127.0.0.1:8080, so the
// relying party is localhost:8080).
func withPasskeys(h *api.Handler) {
	h.Passkeys = &passkey.Service{Store: h.Store, Issuer: "http://127.0.0.1:8080", HandleKey: bytes.Repeat([]byte{3}, 32),
		Audit: h.Audit, Logger: h.Logger, Now: h.Now}
	h.SignIn.Factors = append(h.SignIn.Factors, passkey.Factor{Passkeys: h.Passkeys})
}

func options(t *testing.T, r resp, key string) []byte {
	t.Helper()
	v := r.body
	if key != "" {
		v, _ = r.body[key].(map[string]any)
	}
	b, err := json.Marshal(v["options"])
	if err != nil || len(b) < 10 {
		t.Fatalf("no options in %s", r.raw)
	}
	return b
}

func asObject(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// registerPasskey adds a passkey for the user of token through the API.
func registerPasskey(t *testing.T, e *env, token string, a *passkeytest.Authenticator) map[string]any {
	t.Helper()
	r := e.do(req{path: api.PathPasskeyRegistrationOption, bearer: token})
	want(t, r, http.StatusOK, "")
	cred, _, err := a.Create(options(t, r, ""))
	if err != nil {
		t.Fatal(err)
	}
	r = e.do(req{path: api.PathPasskeys, bearer: token, body: map[string]any{"credential": asObject(t, cred), "name": "Laptop"}})
	want(t, r, http.StatusCreated, "")
	return r.body
}

func TestPasskeysThroughTheAPI(t *testing.T) {
	for _, b := range gormstoretest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			t.Run("a passkey registered with a token is listed, renamed, signs in as the second factor and is deleted", func(t *testing.T) {
				e := newEnv(t, b.Open(t), withPasskeys)
				e.user(resource.User{ID: "pk", Email: "pk@example.com"})
				token := e.accessToken("pk")
				a := &passkeytest.Authenticator{Origin: "http://localhost:8080", UserVerified: true}
				pk := registerPasskey(t, e, token, a)
				id, _ := pk["id"].(string)
				if pk["name"] != "Laptop" || pk["type"] != "passkey" || id == "" || pk["backupEligible"] != true {
					t.Fatalf("registered = %v", pk)
				}
				if _, _, err := a.Create(options(t, e.do(req{path: api.PathPasskeyRegistrationOption, bearer: token}), "")); err == nil {
					t.Error("the registered authenticator was not excluded from a second registration")
				}
				r := e.do(req{method: http.MethodGet, path: api.PathAuthenticators, bearer: token})
				want(t, r, http.StatusOK, "")
				if l := r.list("passkeys"); len(l) != 1 {
					t.Fatalf("authenticators = %s", r.raw)
				}
				r = e.do(req{method: http.MethodPatch, path: api.PathPasskeys + "/" + id, bearer: token, body: map[string]any{"name": "Phone"}})
				want(t, r, http.StatusOK, "")
				if r.str("name") != "Phone" {
					t.Errorf("renamed = %s", r.raw)
				}

				r = e.signIn("pk")
				want(t, r, http.StatusOK, "")
				if r.str("status") != api.StatusNeedsSecondFactor || !slices.ContainsFunc(r.list("factors"), func(f any) bool {
					m, _ := f.(map[string]any)
					return m["strategy"] == "passkey"
				}) {
					t.Fatalf("sign-in = %s", r.raw)
				}
				mfa := r.str("mfa_token")
				r = e.post(api.PathSignInPrepare, map[string]any{"client_id": spaClient, "mfa_token": mfa, "strategy": "passkey"})
				want(t, r, http.StatusOK, "")
				answer, err := a.Get(options(t, r, "prepared"))
				if err != nil {
					t.Fatal(err)
				}
				r = e.post(api.PathSignInAttempt, map[string]any{"client_id": spaClient, "mfa_token": mfa, "strategy": "passkey", "code": asObject(t, answer)})
				want(t, r, http.StatusOK, "")
				if amr := e.amrOf(r.str("access_token")); !slices.Equal(amr, []string{"pwd", "hwk", "user", "mfa"}) {
					t.Errorf("amr = %v", amr)
				}

				r = e.do(req{method: http.MethodDelete, path: api.PathPasskeys + "/" + id, bearer: token})
				want(t, r, http.StatusNoContent, "")
				r = e.signIn("pk")
				if r.str("status") != api.StatusComplete {
					t.Errorf("after the last passkey went, the sign-in = %s", r.raw)
				}
			})

			refusals := []struct {
				name   string
				answer func(t *testing.T, a *passkeytest.Authenticator, opts []byte) string
			}{
				{"malformed JSON is a 400", func(t *testing.T, a *passkeytest.Authenticator, opts []byte) string { return `{"id":` }},
				{"an answer from another origin is a 400", func(t *testing.T, a *passkeytest.Authenticator, opts []byte) string {
					b, err := (&passkeytest.Authenticator{Origin: "https://evil.example", UserVerified: true, Creds: a.Creds}).Get(opts)
					if err != nil {
						t.Fatal(err)
					}
					return string(b)
				}},
				{"an answer to another challenge is a 400", func(t *testing.T, a *passkeytest.Authenticator, opts []byte) string {
					b, err := a.Assert(a.Creds[0], "c29tZSBvdGhlciBjaGFsbGVuZ2U", 99)
					if err != nil {
						t.Fatal(err)
					}
					return string(b)
				}},
				{"an unknown passkey is a 400", func(t *testing.T, a *passkeytest.Authenticator, opts []byte) string {
					other := &passkeytest.Authenticator{Origin: a.Origin, UserVerified: true}
					if _, _, err := other.Create([]byte(`{"publicKey":{"challenge":"eA","rp":{"id":"localhost"},"user":{"id":"dQ"}}}`)); err != nil {
						t.Fatal(err)
					}
					b, err := other.Assert(other.Creds[0], passkeytest.Challenge(opts), 5)
					if err != nil {
						t.Fatal(err)
					}
					return string(b)
				}},
			}
			for _, tc := range refusals {
				t.Run(tc.name+", stores nothing and counts the attempt", func(t *testing.T) {
					ctx := context.Background()
					e := newEnv(t, b.Open(t), withPasskeys)
					e.user(resource.User{ID: "pk", Email: "pk@example.com"})
					a := &passkeytest.Authenticator{Origin: "http://localhost:8080", UserVerified: true}
					pk := registerPasskey(t, e, e.accessToken("pk"), a)
					mfa := e.signIn("pk").str("mfa_token")
					r := e.post(api.PathSignInPrepare, map[string]any{"client_id": spaClient, "mfa_token": mfa, "strategy": "passkey"})
					want(t, r, http.StatusOK, "")
					opts := options(t, r, "prepared")
					before, _ := e.st.GetWebAuthnCredential(ctx, pk["id"].(string))
					r = e.post(api.PathSignInAttempt, map[string]any{"client_id": spaClient, "mfa_token": mfa, "strategy": "passkey", "code": tc.answer(t, a, opts)})
					want(t, r, http.StatusBadRequest, "invalid_passkey")
					after, _ := e.st.GetWebAuthnCredential(ctx, pk["id"].(string))
					if after.SignCount != before.SignCount || !after.LastUsedAt.Equal(before.LastUsedAt) {
						t.Errorf("the refusal changed the passkey: %+v -> %+v", before, after)
					}
					tf, err := e.st.GetTwoFactor(ctx, "pk")
					if err != nil || tf.Failures != 1 {
						t.Errorf("attempt counter = %+v, %v; want 1 failure", tf, err)
					}
				})
			}

			t.Run("a replayed assertion is a 400 and five refusals lock the passkey like any factor", func(t *testing.T) {
				e := newEnv(t, b.Open(t), withPasskeys)
				e.user(resource.User{ID: "pk", Email: "pk@example.com"})
				a := &passkeytest.Authenticator{Origin: "http://localhost:8080", UserVerified: true}
				registerPasskey(t, e, e.accessToken("pk"), a)
				first := e.signIn("pk").str("mfa_token")
				r := e.post(api.PathSignInPrepare, map[string]any{"client_id": spaClient, "mfa_token": first, "strategy": "passkey"})
				answer, err := a.Get(options(t, r, "prepared"))
				if err != nil {
					t.Fatal(err)
				}
				want(t, e.post(api.PathSignInAttempt, map[string]any{"client_id": spaClient, "mfa_token": first, "strategy": "passkey", "code": string(answer)}), http.StatusOK, "")
				second := e.signIn("pk").str("mfa_token")
				for i := range 5 {
					r := e.post(api.PathSignInAttempt, map[string]any{"client_id": spaClient, "mfa_token": second, "strategy": "passkey", "code": string(answer)})
					want(t, r, http.StatusBadRequest, "invalid_passkey")
					_ = i
				}
				r = e.post(api.PathSignInPrepare, map[string]any{"client_id": spaClient, "mfa_token": second, "strategy": "passkey"})
				good, err := a.Get(options(t, r, "prepared"))
				if err != nil {
					t.Fatal(err)
				}
				want(t, e.post(api.PathSignInAttempt, map[string]any{"client_id": spaClient, "mfa_token": second, "strategy": "passkey", "code": string(good)}),
					http.StatusBadRequest, "invalid_passkey")
			})

			t.Run("registration needs a fresh sign-in and refuses a bad answer", func(t *testing.T) {
				e := newEnv(t, b.Open(t), withPasskeys)
				e.user(resource.User{ID: "pk", Email: "pk@example.com"})
				token := e.accessToken("pk")
				r := e.do(req{path: api.PathPasskeyRegistrationOption, bearer: token})
				want(t, r, http.StatusOK, "")
				bad, _, err := (&passkeytest.Authenticator{Origin: "https://evil.example"}).Create(options(t, r, ""))
				if err != nil {
					t.Fatal(err)
				}
				want(t, e.do(req{path: api.PathPasskeys, bearer: token, body: map[string]any{"credential": string(bad)}}), http.StatusBadRequest, "invalid_passkey")
				want(t, e.do(req{path: api.PathPasskeys, bearer: token, body: map[string]any{"credential": "not json"}}), http.StatusBadRequest, "invalid_passkey")
				e.clock.Advance(api.FreshLogin + 1)
				want(t, e.do(req{path: api.PathPasskeyRegistrationOption, bearer: token}), http.StatusForbidden, "reauthentication_required")
				want(t, e.do(req{method: http.MethodDelete, path: api.PathPasskeys + "/nope", bearer: token}), http.StatusForbidden, "reauthentication_required")
			})

			t.Run("the admin lists a user's passkeys and deletes one", func(t *testing.T) {
				e := newEnv(t, b.Open(t), withPasskeys)
				e.user(resource.User{ID: "pk", Email: "pk@example.com"})
				pk := registerPasskey(t, e, e.accessToken("pk"), &passkeytest.Authenticator{Origin: "http://localhost:8080", UserVerified: true})
				admin := [2]string{adminUser, adminPass}
				r := e.do(req{method: http.MethodGet, path: "/User/pk/$authenticators", basic: admin})
				want(t, r, http.StatusOK, "")
				if len(r.list("passkeys")) != 1 {
					t.Fatalf("admin list = %s", r.raw)
				}
				want(t, e.do(req{method: http.MethodDelete, path: "/User/pk/$authenticators/passkey/" + pk["id"].(string), basic: admin}), http.StatusNoContent, "")
				r = e.do(req{method: http.MethodDelete, path: "/User/pk/$authenticators/passkey/" + pk["id"].(string), basic: admin})
				if r.status != http.StatusNotFound {
					t.Errorf("second delete = %d %s", r.status, r.raw)
				}
			})
		})
	}
}
