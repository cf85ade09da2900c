package resource

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

var fastArgon = secret.Argon2Params{MemoryKiB: 64, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}

func TestUserToStoreHashesThePasswordAndKeepsItOutOfTheDocument(t *testing.T) {
	ctx := context.Background()
	h := secret.NewPasswordHasher(fastArgon, 2)
	u, err := DecodeUser([]byte("id: my-user\npassword: password\nemail: Alice@Example.COM\n"), FormatYAML)
	if err != nil {
		t.Fatal(err)
	}
	hash, err := HashWriteOnly(ctx, h, u.Password)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := ToStoreUser(u, hash, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := h.Verify(ctx, rec.PasswordHash, "password"); !ok || !secret.IsPHC(rec.PasswordHash) {
		t.Fatalf("PasswordHash %q does not verify the password", rec.PasswordHash)
	}
	if strings.Contains(string(rec.Doc), "password") || strings.Contains(string(rec.Doc), "argon2") {
		t.Fatalf("stored document leaks the password: %s", rec.Doc)
	}
	if rec.Email != "alice@example.com" {
		t.Fatalf("email = %q, want lower case", rec.Email)
	}

	t.Run("a replace without a password keeps the stored hash", func(t *testing.T) {
		again, err := ToStoreUser(User{ID: "my-user"}, "", &rec)
		if err != nil {
			t.Fatal(err)
		}
		if again.PasswordHash != rec.PasswordHash {
			t.Fatal("hash not kept")
		}
	})
	t.Run("a replace with a password takes the new hash", func(t *testing.T) {
		again, err := ToStoreUser(User{ID: "my-user"}, "$argon2id$new", &rec)
		if err != nil {
			t.Fatal(err)
		}
		if again.PasswordHash != "$argon2id$new" {
			t.Fatal("new hash not used")
		}
	})
	t.Run("reading back shows no password and carries meta", func(t *testing.T) {
		rec.Version, rec.UpdatedAt = 4, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		back, err := UserFromStore(rec)
		if err != nil {
			t.Fatal(err)
		}
		if back.Password != "" || back.ID != "my-user" || back.Email != "alice@example.com" ||
			back.Meta.VersionID != "4" || !back.Meta.LastUpdated.Equal(rec.UpdatedAt) || back.ResourceType != TypeUser {
			t.Fatalf("read back %+v %+v", back, back.Meta)
		}
	})
}

func TestClientToStore(t *testing.T) {
	ctx := context.Background()
	h := secret.NewPasswordHasher(fastArgon, 2)
	c, err := DecodeClient([]byte(aidboxClientYAML), FormatYAML)
	if err != nil {
		t.Fatal(err)
	}
	c.ID = "mywebapp"
	hash, err := HashWriteOnly(ctx, h, c.Secret)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := ToStoreClient(c, hash, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := h.Verify(ctx, rec.SecretHash, "verysecret-0123456789"); !ok {
		t.Fatal("secret hash does not verify the secret")
	}
	if strings.Contains(string(rec.Doc), "verysecret-0123456789") || strings.Contains(string(rec.Doc), "argon2") {
		t.Fatalf("stored document leaks the secret: %s", rec.Doc)
	}
	back, err := ClientFromStore(rec)
	if err != nil {
		t.Fatal(err)
	}
	if back.Secret != "" || back.SecretHash != rec.SecretHash || back.IsPublic() || !back.HasGrant("code") {
		t.Fatalf("read back %+v", back)
	}
	if pub := back.Public(); pub.SecretHash != "" || pub.Secret != "" {
		t.Fatal("Public keeps secret material")
	}

	t.Run("a replace without a secret keeps the stored hash", func(t *testing.T) {
		c2 := c
		c2.Secret = ""
		again, err := ToStoreClient(c2, "", &rec)
		if err != nil || again.SecretHash != rec.SecretHash {
			t.Fatalf("hash not kept: %v", err)
		}
	})
	t.Run("secret_required true without any secret is refused", func(t *testing.T) {
		c2 := c
		c2.Secret = ""
		_, err := ToStoreClient(c2, "", nil)
		assertProblem(t, err, "auth.authorization_code.secret_required")
	})
	t.Run("client_credentials without a secret is refused", func(t *testing.T) {
		_, err := ToStoreClient(Client{ID: "svc", GrantTypes: []string{GrantClientCredentials}}, "", nil)
		assertProblem(t, err, "grant_types")
	})
}

func TestClientGrantDefaultsAndPublicness(t *testing.T) {
	f, tr := false, true
	tests := []struct {
		name       string
		client     Client
		wantPublic bool
		wantSecReq bool
	}{
		{"no secret: public, secret not required", Client{GrantTypes: []string{"code"}}, true, false},
		{"a secret: confidential, secret required by default", Client{SecretHash: "h", GrantTypes: []string{"code"}}, false, true},
		{"a secret with secret_required false: public", Client{SecretHash: "h", GrantTypes: []string{"code"},
			Auth: &ClientAuth{AuthorizationCode: &GrantSettings{SecretRequired: &f}}}, true, false},
		{"a secret with secret_required true: confidential", Client{SecretHash: "h", GrantTypes: []string{"code"},
			Auth: &ClientAuth{AuthorizationCode: &GrantSettings{SecretRequired: &tr}}}, false, true},
		{"a secret and only client_credentials: confidential", Client{SecretHash: "h", GrantTypes: []string{GrantClientCredentials}}, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.client.IsPublic(); got != tc.wantPublic {
				t.Fatalf("IsPublic = %v", got)
			}
			g := tc.client.Grant(GrantAuthorizationCode)
			if *g.SecretRequired != tc.wantSecReq || g.AccessTokenExpiration != DefaultAccessTokenExpiration ||
				g.RefreshTokenExpiration != DefaultRefreshTokenExpiration || g.TokenFormat != TokenFormatOpaque {
				t.Fatalf("Grant = %+v (secret required %v)", g, *g.SecretRequired)
			}
		})
	}
}

func TestAuthConfigKeepsTheWebhookSecretForTheServerOnly(t *testing.T) {
	a, err := DecodeAuthConfig([]byte("twoFactor: {webhook: {endpoint: https://x.example.com, secret: whsec-123}}"), FormatYAML)
	if err != nil {
		t.Fatal(err)
	}
	a.ID = "cfg"
	rec, err := ToStoreAuthConfig(a, nil)
	if err != nil {
		t.Fatal(err)
	}
	back, err := AuthConfigFromStore(rec)
	if err != nil {
		t.Fatal(err)
	}
	if back.Webhook().Secret != "whsec-123" {
		t.Fatal("the server lost the webhook secret it signs with")
	}
	if back.Public().Webhook().Secret != "" {
		t.Fatal("Public shows the webhook secret")
	}
	if back.Webhook().Secret != "whsec-123" {
		t.Fatal("Public changed the original")
	}
	a2, _ := DecodeAuthConfig([]byte("twoFactor: {webhook: {endpoint: https://y.example.com}}"), FormatYAML)
	a2.ID = "cfg"
	rec2, err := ToStoreAuthConfig(a2, &rec)
	if err != nil {
		t.Fatal(err)
	}
	back2, _ := AuthConfigFromStore(rec2)
	if back2.Webhook().Secret != "whsec-123" || back2.Webhook().Endpoint != "https://y.example.com" {
		t.Fatalf("replace without a secret: %+v", back2.Webhook())
	}
}

func TestResolveAuthConfig(t *testing.T) {
	for _, be := range gormstoretest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			ctx := context.Background()
			put := func(st store.Store, id, issuer string) {
				t.Helper()
				a := AuthConfig{ID: id, TwoFactor: &AuthConfigTwoFactor{IssuerName: issuer}}
				rec, err := ToStoreAuthConfig(a, nil)
				if err != nil {
					t.Fatal(err)
				}
				if _, _, err := st.PutAuthConfig(ctx, rec, 0); err != nil {
					t.Fatal(err)
				}
			}
			ref := Client{ID: "c", AuthConfig: &Reference{ID: "mine"}}
			plain := Client{ID: "c"}

			t.Run("no configs at all gives the built-in defaults", func(t *testing.T) {
				st := be.Open(t)
				a, err := ResolveAuthConfig(ctx, st, plain)
				if err != nil || a.Issuer() != "Gatehouse" || a.PastTokens() != 1 {
					t.Fatalf("got %+v, %v", a, err)
				}
			})
			t.Run("exactly one config applies to every client", func(t *testing.T) {
				st := be.Open(t)
				put(st, "only", "only-one")
				a, err := ResolveAuthConfig(ctx, st, plain)
				if err != nil || a.Issuer() != "only-one" {
					t.Fatalf("got %+v, %v", a, err)
				}
			})
			t.Run("with several configs the one named default applies", func(t *testing.T) {
				st := be.Open(t)
				put(st, "other", "other")
				put(st, "default", "the-default")
				a, err := ResolveAuthConfig(ctx, st, plain)
				if err != nil || a.Issuer() != "the-default" {
					t.Fatalf("got %+v, %v", a, err)
				}
			})
			t.Run("with several configs and no default the built-in one applies", func(t *testing.T) {
				st := be.Open(t)
				put(st, "one", "one")
				put(st, "two", "two")
				a, err := ResolveAuthConfig(ctx, st, plain)
				if err != nil || a.Issuer() != "Gatehouse" {
					t.Fatalf("got %+v, %v", a, err)
				}
			})
			t.Run("a client's reference wins over default", func(t *testing.T) {
				st := be.Open(t)
				put(st, "default", "the-default")
				put(st, "mine", "mine")
				a, err := ResolveAuthConfig(ctx, st, ref)
				if err != nil || a.Issuer() != "mine" {
					t.Fatalf("got %+v, %v", a, err)
				}
			})
			t.Run("a reference to a missing config is an error, not a fallback", func(t *testing.T) {
				st := be.Open(t)
				put(st, "default", "the-default")
				if _, err := ResolveAuthConfig(ctx, st, ref); !errors.Is(err, store.ErrNotFound) {
					t.Fatalf("err = %v, want ErrNotFound", err)
				}
			})
		})
	}
}

func TestTwoFactorStatusNeverShowsTheSecret(t *testing.T) {
	for _, be := range gormstoretest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			ctx := context.Background()
			st := be.Open(t)
			rec, _ := ToStoreUser(User{ID: "u"}, "", nil)
			if _, _, err := st.PutUser(ctx, rec, 0); err != nil {
				t.Fatal(err)
			}
			s, err := TwoFactorStatus(ctx, st, "u")
			if err != nil || s.Enabled || s.RecoveryCodesRemaining != nil {
				t.Fatalf("without a factor: %+v, %v", s, err)
			}
			at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
			if err := st.PutTwoFactor(ctx, store.TwoFactor{UserID: "u", Method: MethodTOTP, Enabled: true, Secret: []byte("sealed"), EnrolledAt: at}); err != nil {
				t.Fatal(err)
			}
			if err := st.ReplaceRecoveryCodes(ctx, "u", []string{"h1", "h2", "h3"}); err != nil {
				t.Fatal(err)
			}
			s, err = TwoFactorStatus(ctx, st, "u")
			if err != nil || !s.Enabled || s.Method != MethodTOTP || *s.RecoveryCodesRemaining != 3 || !s.EnrolledAt.Equal(at) {
				t.Fatalf("with a factor: %+v, %v", s, err)
			}
		})
	}
}

func TestCheckNewPassword(t *testing.T) {
	long := AuthConfig{Password: &PasswordPolicy{MinLength: 12}}
	for _, tc := range []struct {
		name    string
		ac      AuthConfig
		pw      string
		wantErr bool
		tooLong bool
	}{
		{"eight characters meet the default rule", AuthConfig{}, "12345678", false, false},
		{"seven characters break the default rule", AuthConfig{}, "1234567", true, false},
		{"characters are counted, not bytes", AuthConfig{}, "ééééééé", true, false},
		{"the AuthConfig's minLength applies", long, "12345678901", true, false},
		{"a password of exactly minLength is fine", long, "123456789012", false, false},
		{"more than MaxPasswordBytes bytes is too long", AuthConfig{}, strings.Repeat("a", MaxPasswordBytes+1), true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.ac.CheckNewPassword(tc.pw)
			var re *PasswordRuleError
			if !tc.wantErr {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.As(err, &re) || re.TooLong != tc.tooLong || re.MinLength != tc.ac.PasswordMinLength() {
				t.Fatalf("got %#v (%v)", re, err)
			}
		})
	}
}
