package admin

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

// wantUnavailable checks the one answer for storage that cannot serve now.
func wantUnavailable(t *testing.T, r response) {
	t.Helper()
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") != "2" {
		t.Fatalf("status %d, Retry-After %q, want 503 and 2: %s", r.status, r.header.Get("Retry-After"), r.body)
	}
	issue := r.json(t)["issue"].([]any)[0].(map[string]any)
	if issue["code"] != "transient" {
		t.Fatalf("issue code %v, want transient: %s", issue["code"], r.body)
	}
	for _, leak := range []string{"sql", "gorm", "closed", "deadline"} {
		if strings.Contains(strings.ToLower(string(r.body)), leak) {
			t.Fatalf("the answer shows internals (%q): %s", leak, r.body)
		}
	}
}

// TestStorageUnavailableIs503WithRetryAfter reproduces the fault report's
// finding 6: with the database unable to write, an admin PUT answered 500
// where the token endpoint answered 503.
func TestStorageUnavailableIs503WithRetryAfter(t *testing.T) {
	for _, be := range gormstoretest.Backends(t) {
		t.Run("on "+be.Name, func(t *testing.T) {
			st := be.Open(t)
			e := newEnv(t, st)
			mustStatus(t, e.putYAML("/User/u1", "email: u1@example.com\npassword: a-long-password\n"), http.StatusCreated)
			// The Basic credential is now cached: the requests below reach
			// the handlers, not only the authentication.
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			for _, r := range []struct {
				name string
				req  req
			}{
				{"a PUT of a User", req{method: http.MethodPut, path: "/User/u2", body: "email: u2@example.com\n", contentType: "text/yaml"}},
				{"a PUT of a Client", req{method: http.MethodPut, path: "/Client/c1", body: "secret: verysecret-0123456789\ngrant_types: [client_credentials]\n", contentType: "text/yaml"}},
				{"a PUT of an AuthConfig", req{method: http.MethodPut, path: "/AuthConfig/default", body: "theme: {title: T}\n", contentType: "text/yaml"}},
				{"a GET", req{method: http.MethodGet, path: "/User/u1"}},
				{"a listing", req{method: http.MethodGet, path: "/User?_count=10"}},
				{"a DELETE", req{method: http.MethodDelete, path: "/User/u1"}},
				{"the audit log", req{method: http.MethodGet, path: "/AuditEvent"}},
			} {
				t.Run(r.name+" with the database closed is 503 with Retry-After", func(t *testing.T) {
					wantUnavailable(t, e.do(r.req))
				})
			}
			t.Run("Basic authentication that cannot reach the database is 503 with Retry-After", func(t *testing.T) {
				fresh := newEnv(t, st)
				wantUnavailable(t, fresh.get("/User/u1"))
			})
		})
	}
}

// TestAPUTPastItsDeadlineIs503 stalls PostgreSQL with a lock: the PUT ends
// at its request's deadline with the same answer, and works once the lock
// is gone.
func TestAPUTPastItsDeadlineIs503(t *testing.T) {
	if os.Getenv(gormstoretest.PostgresEnv) == "" {
		t.Skipf("%s is not set", gormstoretest.PostgresEnv)
	}
	dsn := gormstoretest.PostgresDSN(t)
	st := gormstoretest.OpenPostgresAt(t, dsn)
	e := newEnv(t, st)
	mustStatus(t, e.putYAML("/User/u1", "email: u1@example.com\n"), http.StatusCreated)
	put := func(deadline time.Duration) (response, time.Duration) {
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		hr := httptest.NewRequestWithContext(ctx, http.MethodPut, "/User/u1", strings.NewReader("email: u1@example.org\n"))
		hr.Header.Set("Content-Type", "text/yaml")
		hr.SetBasicAuth(adminUser, adminPassword)
		rec := httptest.NewRecorder()
		start := time.Now()
		e.mux.ServeHTTP(rec, hr)
		return response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}, time.Since(start)
	}
	release := gormstoretest.LockTable(t, dsn, "users")
	const deadline = 300 * time.Millisecond
	r, took := put(deadline)
	wantUnavailable(t, r)
	if took > 5*deadline {
		t.Errorf("answered after %s, want within 5× the %s deadline", took, deadline)
	}
	release()
	r, _ = put(10 * time.Second)
	mustStatus(t, r, http.StatusOK)
}
