package api_test

import (
	"net/http"
	"strconv"
	"testing"

	"github.com/gatehouse/gatehouse/internal/account"
	"github.com/gatehouse/gatehouse/internal/api"
	"github.com/gatehouse/gatehouse/internal/resource"
)

func TestDestinationTakenAnswersShareOneBudget(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		e.user(resource.User{ID: "owner", Email: "owner@example.com"})
		e.user(resource.User{ID: "prober", Email: "prober@example.com"})
		at := e.accessToken("prober")
		probe := func() resp {
			return e.do(req{path: api.PathVerificationCodes, bearer: at, body: map[string]any{"channel": "email", "destination": "owner@example.com"}})
		}
		t.Run("verification codes answer taken only within the per-user look-up budget", func(t *testing.T) {
			for i := range api.BindableLimit {
				if r := probe(); r.status != http.StatusConflict {
					t.Fatalf("probe %d: %d %s", i, r.status, r.raw)
				}
			}
			want(t, probe(), http.StatusTooManyRequests, "too_many_requests")
		})
		t.Run("and bindable shares that budget", func(t *testing.T) {
			want(t, e.do(req{method: http.MethodGet, path: api.PathBindable + "?email=owner@example.com", bearer: at}), http.StatusTooManyRequests, "too_many_requests")
		})
	})
}

func TestSignInThrottleSaysSo(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		e.user(resource.User{ID: "tess", Email: "tess@example.com"})
		for range account.DefaultThrottle.PerAccount {
			want(t, e.post(api.PathSignIn, map[string]any{"username": "tess", "password": "wrong-password", "client_id": spaClient}), http.StatusUnauthorized, "invalid_credentials")
		}
		r := e.post(api.PathSignIn, map[string]any{"username": "tess", "password": userPassword, "client_id": spaClient})
		want(t, r, http.StatusTooManyRequests, "too_many_attempts")
		if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 {
			t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
		}
	})
}
