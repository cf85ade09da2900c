package passkey_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/passkey"
	"github.com/gatehouse/gatehouse/internal/passkey/passkeytest"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type env struct {
	s     store.Store
	svc   *passkey.Service
	clock *clock
	user  store.User
	ac    resource.AuthConfig
}

func newEnv(t *testing.T, open func(testing.TB) store.Store) *env {
	t.Helper()
	s := open(t)
	c := &clock{t: time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)}
	svc := &passkey.Service{Store: s, Issuer: "http://127.0.0.1:8080", HandleKey: bytes.Repeat([]byte{9}, 32),
		Audit: &audit.Recorder{Store: s, Logger: slog.New(slog.DiscardHandler), Now: c.Now}, Now: c.Now}
	u, _, err := s.PutUser(context.Background(), store.User{ID: "alice", Email: "alice@example.com", Doc: []byte(`{"id":"alice"}`)}, 0)
	if err != nil {
		t.Fatal(err)
	}
	return &env{s: s, svc: svc, clock: c, user: u}
}

func (e *env) register(t *testing.T, a *passkeytest.Authenticator, binding string) store.WebAuthnCredential {
	t.Helper()
	ctx := context.Background()
	opts, _, err := e.svc.BeginRegistration(ctx, e.ac, e.user, binding)
	if err != nil {
		t.Fatalf("begin registration: %v", err)
	}
	resp, _, err := a.Create(opts)
	if err != nil {
		t.Fatalf("authenticator create: %v", err)
	}
	rec, err := e.svc.FinishRegistration(ctx, e.ac, e.user, binding, resp, "Laptop", twofactor.Meta{})
	if err != nil {
		t.Fatalf("finish registration: %v", err)
	}
	return rec
}

func (e *env) events(t *testing.T, typ string) int {
	t.Helper()
	_, n, err := e.s.ListAudit(context.Background(), store.AuditFilter{UserID: e.user.ID, Type: typ}, store.Page{Count: 100})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRelyingPartyDefaults(t *testing.T) {
	tests := []struct {
		name    string
		issuer  string
		ac      resource.AuthConfig
		want    passkey.RelyingParty
		wantErr bool
	}{
		{"a loopback IP issuer becomes localhost on the same port", "http://127.0.0.1:8080", resource.AuthConfig{},
			passkey.RelyingParty{ID: "localhost", Name: "Gatehouse", Origins: []string{"http://localhost:8080"}, UserVerification: "preferred", Attestation: "none"}, false},
		{"a localhost issuer is its own relying party", "http://localhost:9000", resource.AuthConfig{},
			passkey.RelyingParty{ID: "localhost", Name: "Gatehouse", Origins: []string{"http://localhost:9000"}, UserVerification: "preferred", Attestation: "none"}, false},
		{"a public issuer gives its host and origin, and the brand names it", "https://login.example.com", resource.AuthConfig{Theme: &resource.Theme{Brand: "Example"}},
			passkey.RelyingParty{ID: "login.example.com", Name: "Example", Origins: []string{"https://login.example.com"}, UserVerification: "preferred", Attestation: "none"}, false},
		{"an AuthConfig's settings win", "https://login.example.com", resource.AuthConfig{WebAuthn: &resource.WebAuthn{RPID: "example.com", RPName: "Ex",
			Origins: []string{"https://app.example.com"}, UserVerification: "required", Attestation: "direct"}},
			passkey.RelyingParty{ID: "example.com", Name: "Ex", Origins: []string{"https://app.example.com"}, UserVerification: "required", Attestation: "direct"}, false},
		{"an rpId above the issuer keeps the issuer's origin", "https://login.example.com", resource.AuthConfig{WebAuthn: &resource.WebAuthn{RPID: "example.com"}},
			passkey.RelyingParty{ID: "example.com", Name: "Gatehouse", Origins: []string{"https://login.example.com"}, UserVerification: "preferred", Attestation: "none"}, false},
		{"an issuer without a host is refused", "not a url", resource.AuthConfig{}, passkey.RelyingParty{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := (&passkey.Service{Issuer: tc.issuer}).RelyingParty(tc.ac)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v", err)
			}
			if tc.wantErr {
				return
			}
			g, _ := json.Marshal(got)
			w, _ := json.Marshal(tc.want)
			if string(g) != string(w) {
				t.Errorf("got %s\nwant %s", g, w)
			}
		})
	}
}

func TestPasskeyCeremonies(t *testing.T) {
	for _, b := range gormstoretest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()

			t.Run("a registered passkey signs in as a second factor and then passwordless", func(t *testing.T) {
				e := newEnv(t, b.Open)
				a := &passkeytest.Authenticator{Origin: "http://localhost:8080", UserVerified: true}
				rec := e.register(t, a, "session-1")
				if rec.Name != "Laptop" || !rec.BackupEligible || len(rec.Transports) != 2 || rec.SignCount != 1 {
					t.Errorf("stored credential = %+v", rec)
				}
				opts, _, err := e.svc.BeginAssertion(ctx, e.ac, e.user, "ticket-1")
				if err != nil {
					t.Fatal(err)
				}
				resp, err := a.Get(opts)
				if err != nil {
					t.Fatal(err)
				}
				got, err := e.svc.FinishAssertion(ctx, e.ac, e.user, "ticket-1", resp, twofactor.Meta{})
				if err != nil {
					t.Fatalf("finish assertion: %v", err)
				}
				if !got.UserVerified || got.CredentialID != rec.ID || len(got.AMR()) != 2 {
					t.Errorf("assertion = %+v, amr %v", got, got.AMR())
				}
				opts, _, err = e.svc.BeginPasswordless(ctx, e.ac, "browser-1")
				if err != nil {
					t.Fatal(err)
				}
				resp, err = a.Get(opts)
				if err != nil {
					t.Fatal(err)
				}
				u, _, err := e.svc.FinishPasswordless(ctx, e.ac, "browser-1", resp, twofactor.Meta{})
				if err != nil || u.ID != "alice" {
					t.Fatalf("passwordless = %v, %v", u.ID, err)
				}
				stored, _ := e.s.GetWebAuthnCredential(ctx, rec.ID)
				if stored.SignCount != 3 || stored.LastUsedAt.IsZero() {
					t.Errorf("after two uses = %+v", stored)
				}
			})

			t.Run("a second registration of the same authenticator is excluded", func(t *testing.T) {
				e := newEnv(t, b.Open)
				a := &passkeytest.Authenticator{Origin: "http://localhost:8080", UserVerified: true}
				e.register(t, a, "s")
				opts, _, err := e.svc.BeginRegistration(ctx, e.ac, e.user, "s")
				if err != nil {
					t.Fatal(err)
				}
				if _, _, err := a.Create(opts); err == nil {
					t.Fatal("the authenticator was not excluded")
				}
			})

			refusals := []struct {
				name   string
				reason string
				answer func(t *testing.T, e *env, a *passkeytest.Authenticator, c *passkeytest.Credential, opts []byte) ([]byte, string)
			}{
				{"malformed JSON is refused", "malformed", func(t *testing.T, e *env, a *passkeytest.Authenticator, c *passkeytest.Credential, opts []byte) ([]byte, string) {
					return []byte(`{"id":`), "ticket"
				}},
				{"an answer from another origin is refused", "verification_failed", func(t *testing.T, e *env, a *passkeytest.Authenticator, c *passkeytest.Credential, opts []byte) ([]byte, string) {
					evil := &passkeytest.Authenticator{Origin: "http://evil.localhost:8080", UserVerified: true, Creds: a.Creds}
					resp, err := evil.Get(opts)
					if err != nil {
						t.Fatal(err)
					}
					return resp, "ticket"
				}},
				{"an answer to a challenge never issued is refused", "unknown_challenge", func(t *testing.T, e *env, a *passkeytest.Authenticator, c *passkeytest.Credential, opts []byte) ([]byte, string) {
					resp, err := a.Assert(c, "bm90LWlzc3VlZC1ieS1nYXRlaG91c2U", 50)
					if err != nil {
						t.Fatal(err)
					}
					return resp, "ticket"
				}},
				{"an answer for another sign-in's challenge is refused", "unknown_challenge", func(t *testing.T, e *env, a *passkeytest.Authenticator, c *passkeytest.Credential, opts []byte) ([]byte, string) {
					resp, err := a.Get(opts)
					if err != nil {
						t.Fatal(err)
					}
					return resp, "another-ticket"
				}},
				{"an expired challenge is refused", "unknown_challenge", func(t *testing.T, e *env, a *passkeytest.Authenticator, c *passkeytest.Credential, opts []byte) ([]byte, string) {
					resp, err := a.Get(opts)
					if err != nil {
						t.Fatal(err)
					}
					e.clock.Add(passkey.ChallengeTTL + time.Second)
					return resp, "ticket"
				}},
				{"a replayed assertion is refused", "unknown_challenge", func(t *testing.T, e *env, a *passkeytest.Authenticator, c *passkeytest.Credential, opts []byte) ([]byte, string) {
					resp, err := a.Get(opts)
					if err != nil {
						t.Fatal(err)
					}
					if _, err := e.svc.FinishAssertion(context.Background(), e.ac, e.user, "ticket", resp, twofactor.Meta{}); err != nil {
						t.Fatalf("first use: %v", err)
					}
					return resp, "ticket"
				}},
				{"an unknown credential is refused", "unknown_credential", func(t *testing.T, e *env, a *passkeytest.Authenticator, c *passkeytest.Credential, opts []byte) ([]byte, string) {
					other := &passkeytest.Authenticator{Origin: a.Origin, UserVerified: true}
					if _, _, err := other.Create(mustJSON(t, map[string]any{"publicKey": map[string]any{"challenge": "x", "rp": map[string]any{"id": "localhost"}, "user": map[string]any{"id": "dXNlcg"}}})); err != nil {
						t.Fatal(err)
					}
					resp, err := other.Assert(other.Creds[0], passkeytest.Challenge(opts), 9)
					if err != nil {
						t.Fatal(err)
					}
					return resp, "ticket"
				}},
				{"a bad signature is refused", "verification_failed", func(t *testing.T, e *env, a *passkeytest.Authenticator, c *passkeytest.Credential, opts []byte) ([]byte, string) {
					resp, err := a.Get(opts)
					if err != nil {
						t.Fatal(err)
					}
					var m map[string]any
					_ = json.Unmarshal(resp, &m)
					m["response"].(map[string]any)["signature"] = "MEUCIQDtAmperedTamperedTamperedTamperedTamperedTampered"
					return mustJSON(t, m), "ticket"
				}},
				{"an answer for another relying party is refused", "verification_failed", func(t *testing.T, e *env, a *passkeytest.Authenticator, c *passkeytest.Credential, opts []byte) ([]byte, string) {
					other := *c
					other.RPID = "evil.example"
					resp, err := a.Assert(&other, passkeytest.Challenge(opts), 50)
					if err != nil {
						t.Fatal(err)
					}
					return resp, "ticket"
				}},
				{"a sign counter that went back is refused and audited", "counter_regression", func(t *testing.T, e *env, a *passkeytest.Authenticator, c *passkeytest.Credential, opts []byte) ([]byte, string) {
					resp, err := a.Assert(c, passkeytest.Challenge(opts), 0)
					if err != nil {
						t.Fatal(err)
					}
					return resp, "ticket"
				}},
			}
			for _, tc := range refusals {
				t.Run(tc.name, func(t *testing.T) {
					e := newEnv(t, b.Open)
					a := &passkeytest.Authenticator{Origin: "http://localhost:8080", UserVerified: true}
					e.register(t, a, "s")
					opts, _, err := e.svc.BeginAssertion(ctx, e.ac, e.user, "ticket")
					if err != nil {
						t.Fatal(err)
					}
					before, _ := e.s.GetWebAuthnCredential(ctx, b64(a.Creds[0].ID))
					resp, binding := tc.answer(t, e, a, a.Creds[0], opts)
					mid, _ := e.s.GetWebAuthnCredential(ctx, b64(a.Creds[0].ID))
					_, err = e.svc.FinishAssertion(ctx, e.ac, e.user, binding, resp, twofactor.Meta{})
					if !errors.Is(err, passkey.ErrInvalid) || passkey.Reason(err) != tc.reason {
						t.Fatalf("err = %v (reason %q), want reason %q", err, passkey.Reason(err), tc.reason)
					}
					after, _ := e.s.GetWebAuthnCredential(ctx, b64(a.Creds[0].ID))
					if after.SignCount != mid.SignCount || !after.LastUsedAt.Equal(mid.LastUsedAt) {
						t.Errorf("a refusal changed the credential: %+v -> %+v (before %+v)", mid, after, before)
					}
					if e.events(t, passkey.EventRefused) == 0 {
						t.Error("the refusal was not audited")
					}
					if tc.reason == "counter_regression" && e.events(t, passkey.EventCloneSuspected) != 1 {
						t.Error("the counter regression was not audited")
					}
				})
			}

			t.Run("with user verification required a second factor without it is refused", func(t *testing.T) {
				e := newEnv(t, b.Open)
				e.ac = resource.AuthConfig{WebAuthn: &resource.WebAuthn{UserVerification: resource.UserVerificationRequired}}
				a := &passkeytest.Authenticator{Origin: "http://localhost:8080", UserVerified: true}
				e.register(t, a, "s")
				a.UserVerified = false
				opts, _, err := e.svc.BeginAssertion(ctx, e.ac, e.user, "ticket")
				if err != nil {
					t.Fatal(err)
				}
				resp, err := a.Get(opts)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := e.svc.FinishAssertion(ctx, e.ac, e.user, "ticket", resp, twofactor.Meta{}); passkey.Reason(err) != "verification_failed" {
					t.Fatalf("err = %v", err)
				}
			})

			t.Run("a passwordless answer without user verification is refused", func(t *testing.T) {
				e := newEnv(t, b.Open)
				a := &passkeytest.Authenticator{Origin: "http://localhost:8080", UserVerified: true}
				e.register(t, a, "s")
				a.UserVerified = false
				opts, _, err := e.svc.BeginPasswordless(ctx, e.ac, "browser")
				if err != nil {
					t.Fatal(err)
				}
				resp, err := a.Get(opts)
				if err != nil {
					t.Fatal(err)
				}
				if _, _, err := e.svc.FinishPasswordless(ctx, e.ac, "browser", resp, twofactor.Meta{}); !errors.Is(err, passkey.ErrInvalid) {
					t.Fatalf("err = %v", err)
				}
			})

			t.Run("a registration answer with a wrong origin stores nothing", func(t *testing.T) {
				e := newEnv(t, b.Open)
				opts, _, err := e.svc.BeginRegistration(ctx, e.ac, e.user, "s")
				if err != nil {
					t.Fatal(err)
				}
				resp, _, err := (&passkeytest.Authenticator{Origin: "https://evil.example"}).Create(opts)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := e.svc.FinishRegistration(ctx, e.ac, e.user, "s", resp, "x", twofactor.Meta{}); !errors.Is(err, passkey.ErrInvalid) {
					t.Fatalf("err = %v", err)
				}
				if list, _ := e.svc.List(ctx, e.user.ID); len(list) != 0 {
					t.Errorf("stored %+v", list)
				}
			})

			t.Run("rename and delete change only the owner's passkey", func(t *testing.T) {
				e := newEnv(t, b.Open)
				a := &passkeytest.Authenticator{Origin: "http://localhost:8080", UserVerified: true}
				rec := e.register(t, a, "s")
				if err := e.svc.Rename(ctx, "bob", rec.ID, "mine", twofactor.Meta{}); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("rename by another = %v", err)
				}
				if err := e.svc.Rename(ctx, e.user.ID, rec.ID, "\x00", twofactor.Meta{}); !errors.Is(err, passkey.ErrBadName) {
					t.Errorf("bad name = %v", err)
				}
				if err := e.svc.Rename(ctx, e.user.ID, rec.ID, "Phone", twofactor.Meta{}); err != nil {
					t.Fatal(err)
				}
				if err := e.svc.Delete(ctx, e.user.ID, rec.ID, "", "", twofactor.Meta{}); err != nil {
					t.Fatal(err)
				}
				if list, _ := e.svc.List(ctx, e.user.ID); len(list) != 0 {
					t.Errorf("left %+v", list)
				}
			})
		})
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func b64(b []byte) string { return base64URL.EncodeToString(b) }

var base64URL = base64.RawURLEncoding
