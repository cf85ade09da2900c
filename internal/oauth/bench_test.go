package oauth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/secret"
)

// benchEnv uses the production argon2 cost, so BenchmarkClientAuth shows
// what the secret cache saves.
func benchEnv(b *testing.B) *env {
	b.Helper()
	e := &env{t: b, st: gormstoreOpen(b), clock: &testClock{}, hasher: secret.NewPasswordHasher(secret.DefaultArgon2, 0),
		master: []byte("0123456789abcdef0123456789abcdef")}
	p, err := e.newProvider()
	if err != nil {
		b.Fatal(err)
	}
	e.p = p
	e.seed()
	return e
}

func benchToken(b *testing.B, e *env, client string) {
	h := http.HandlerFunc(e.p.handleToken)
	body := url.Values{"grant_type": {"client_credentials"}, "scope": {"patient.read"}}.Encode()
	b.ResetTimer()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, PathToken, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(client, svcSecret)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}

func BenchmarkClientCredentialsJWT(b *testing.B)    { benchToken(b, benchEnv(b), "svc") }
func BenchmarkClientCredentialsOpaque(b *testing.B) { benchToken(b, benchEnv(b), "svc-opaque") }

// BenchmarkClientAuth is the client-secret check with the cache warm.
func BenchmarkClientAuth(b *testing.B) {
	e := benchEnv(b)
	ctx := context.Background()
	if _, err := e.p.checkClient(ctx, "svc", svcSecret, grantClientCredentials, false); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := e.p.checkClient(ctx, "svc", svcSecret, grantClientCredentials, false); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkClientAuthUncached is the same check paying argon2 every time
// (the cost of a wrong secret).
func BenchmarkClientAuthUncached(b *testing.B) {
	e := benchEnv(b)
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		if _, err := e.p.checkClient(ctx, "svc", "wrong", grantClientCredentials, false); err == nil {
			b.Fatal("wrong secret accepted")
		}
	}
}
