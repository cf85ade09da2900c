package oauth

import (
	"net/http"
	"net/url"
	"testing"
)

// TestStorageUnavailableIs503WithRetryAfter: every protocol endpoint gives
// the answer every surface gives when storage cannot serve: 503
// temporarily_unavailable with Retry-After.
func TestStorageUnavailableIs503WithRetryAfter(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		opaque := e.clientCredentials("svc-opaque", svcSecret, "patient.read").str("access_token")
		jwt := e.clientCredentials("svc", svcSecret, "patient.read").str("access_token")
		if opaque == "" || jwt == "" {
			t.Fatal("no tokens to try with")
		}
		if err := e.st.Close(); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name string
			do   func() response
		}{
			{"a client_credentials token request", func() response { return e.clientCredentials("svc-opaque", svcSecret, "") }},
			{"a password grant", func() response {
				return e.post(PathToken, url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {alicePass}}, "mobile", mobileSecret)
			}},
			{"a refresh", func() response { return e.refresh("web", webSecret, "some-refresh-token") }},
			{"an introspection", func() response { return e.introspect(opaque) }},
			{"a revocation", func() response {
				return e.post(PathRevoke, url.Values{"token": {opaque}}, "svc-opaque", svcSecret)
			}},
			{"a userinfo request", func() response { return e.get(PathUserinfo, jwt) }},
		}
		for _, tt := range tests {
			t.Run(tt.name+" with the database closed is 503 with Retry-After", func(t *testing.T) {
				r := tt.do()
				if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") != "2" || r.str("error") != "temporarily_unavailable" {
					t.Fatalf("status %d, Retry-After %q: %s; want 503 temporarily_unavailable with Retry-After 2",
						r.status, r.header.Get("Retry-After"), r.raw)
				}
			})
		}
	})
}
