package web_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

// TestStorageUnavailablePagesAre503WithRetryAfter: the hosted pages give
// the answer every surface gives when storage cannot serve, 503 with
// Retry-After, on each kind of page.
func TestStorageUnavailablePagesAre503WithRetryAfter(t *testing.T) {
	for _, be := range gormstoretest.Backends(t) {
		t.Run("on "+be.Name, func(t *testing.T) {
			st := be.Open(t)
			e := newEnv(t, st)
			b := e.browser()
			b.signIn()
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			for _, tt := range []struct {
				name string
				do   func() page
			}{
				{"the login page", func() page { return b.get("/auth/login") }},
				{"a password POST", func() page {
					return b.post("/auth/login", url.Values{"username": {"alice"}, "password": {alicePassword}, "_csrf": {"x"}})
				}},
				{"the two-factor settings", func() page { return b.get("/auth/two-factor") }},
				{"the logout page", func() page { return b.get("/auth/logout") }},
			} {
				t.Run(tt.name+" with the database closed is 503 with Retry-After", func(t *testing.T) {
					p := tt.do()
					if p.status != http.StatusServiceUnavailable || p.header.Get("Retry-After") != "2" {
						t.Fatalf("status %d, Retry-After %q; want 503 and 2", p.status, p.header.Get("Retry-After"))
					}
					if !strings.Contains(p.body, "temporarily unavailable") {
						t.Fatalf("not the unavailable page:\n%s", p.body)
					}
				})
			}
		})
	}
}
