package admin

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

// phcWith builds a well-formed argon2id PHC string with the given cost and
// arbitrary salt and key: validation reads the parameters, not the hash.
func phcWith(variant string, version, m, t, p int) string {
	b := base64.RawStdEncoding
	return fmt.Sprintf("$%s$v=%d$m=%d,t=%d,p=%d$%s$%s", variant, version, m, t, p,
		b.EncodeToString([]byte("sixteen-byte-slt")), b.EncodeToString([]byte("thirty-two-byte-derived-key-0123")))
}

func TestImportedPasswordHashSignsInAndIsNeverShown(t *testing.T) {
	for _, be := range gormstoretest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t, be.Open(t))
			// A hash made elsewhere with this server's parameters, as a
			// migration from another argon2id system would bring it.
			imported, err := secret.NewPasswordHasher(fastArgon, 1).Hash(ctx, "migrated-secret")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := json.Marshal(map[string]any{"email": "moved@example.com", "passwordHash": imported})

			err = e.st.CreateBrowserSession(ctx, store.BrowserSession{ID: "old-session", UserID: "moved", AuthTime: e.now,
				CreatedAt: e.now, UpdatedAt: e.now, ExpiresAt: time.Now().Add(time.Hour)})
			if err != nil {
				t.Fatal(err)
			}

			t.Run("a PUT with passwordHash stores that hash as the user's password", func(t *testing.T) {
				r := e.do(req{method: http.MethodPut, path: "/User/moved", body: string(body), contentType: "application/json"})
				mustStatus(t, r, http.StatusCreated)
				noSecrets(t, r.body, imported, "passwordHash")
				u, err := e.st.GetUser(ctx, "moved")
				if err != nil {
					t.Fatal(err)
				}
				if u.PasswordHash != imported {
					t.Fatalf("stored hash %q, want the imported one", u.PasswordHash)
				}
				if ok, _ := e.h.Hasher.Verify(ctx, u.PasswordHash, "migrated-secret"); !ok {
					t.Fatal("the migrated password does not verify")
				}
				if strings.Contains(string(u.Doc), "passwordHash") || strings.Contains(string(u.Doc), "$argon2id") {
					t.Fatalf("the stored document carries the hash: %s", u.Doc)
				}
			})
			t.Run("it ends the user's sessions like any password change", func(t *testing.T) {
				if _, err := e.st.GetBrowserSession(ctx, "old-session"); err == nil {
					t.Fatal("a session survives a password import")
				}
			})
			t.Run("reads in JSON, YAML and lists never show it", func(t *testing.T) {
				for _, r := range []response{
					e.get("/User/moved"),
					e.do(req{method: http.MethodGet, path: "/User/moved", accept: "text/yaml"}),
					e.get("/User?_count=10"),
				} {
					mustStatus(t, r, http.StatusOK)
					noSecrets(t, r.body, imported, "passwordHash")
				}
			})
			t.Run("a replace with neither password nor passwordHash keeps the imported hash", func(t *testing.T) {
				mustStatus(t, e.putYAML("/User/moved", "email: moved@example.com\nname: {givenName: Mo}\n"), http.StatusOK)
				if u, _ := e.st.GetUser(ctx, "moved"); u.PasswordHash != imported {
					t.Fatal("the imported hash was lost on a replace")
				}
			})
			t.Run("the audit event says the password was imported, without the hash", func(t *testing.T) {
				r := e.get("/AuditEvent?user=moved&type=" + audit.AdminWrite)
				mustStatus(t, r, http.StatusOK)
				noSecrets(t, r.body, imported)
				var b struct {
					Entry []struct{ Resource AuditEvent }
				}
				if err := json.Unmarshal(r.body, &b); err != nil {
					t.Fatal(err)
				}
				found := false
				for _, en := range b.Entry {
					found = found || en.Resource.Detail["passwordImported"] == "true"
				}
				if !found {
					t.Fatalf("no audit event marks the import: %s", r.body)
				}
			})
			t.Run("apply accepts passwordHash too", func(t *testing.T) {
				results, err := e.h.Apply(ctx, strings.NewReader("resourceType: User\nid: applied\npasswordHash: '"+imported+"'\n"))
				if err != nil || len(results) != 1 || results[0].Err != nil {
					t.Fatalf("apply: %+v, %v", results, err)
				}
				if u, _ := e.st.GetUser(ctx, "applied"); u.PasswordHash != imported {
					t.Fatal("apply did not store the imported hash")
				}
			})
		})
	}
}

func TestPasswordHashValidation(t *testing.T) {
	// The server hashes with the default (OWASP) parameters here, so the
	// cost floor is OWASP's and not the test's cheap setting.
	owasp := newEnv(t, gormstoretest.Open(t))
	owasp.h.Hasher = secret.NewPasswordHasher(secret.DefaultArgon2, 1)
	// A server configured with cheap parameters (as in tests) accepts hashes
	// as cheap as its own.
	cheap := newEnv(t, gormstoretest.Open(t))

	tests := []struct {
		name string
		e    *env
		body string
		ok   bool
	}{
		{"OWASP's m=19 MiB, t=2 hash", owasp, "passwordHash: '" + phcWith("argon2id", 19, 19456, 2, 1) + "'\n", true},
		{"OWASP's weakest m=7 MiB, t=5 hash (Keycloak's default)", owasp, "passwordHash: '" + phcWith("argon2id", 19, 7168, 5, 1) + "'\n", true},
		{"a libsodium moderate m=256 MiB, t=3 hash", owasp, "passwordHash: '" + phcWith("argon2id", 19, 262144, 3, 1) + "'\n", true},
		{"a hash with parallelism 4", owasp, "passwordHash: '" + phcWith("argon2id", 19, 65536, 3, 4) + "'\n", true},
		{"a hash as cheap as the server's own setting", cheap, "passwordHash: '" + phcWith("argon2id", 19, 64, 1, 1) + "'\n", true},

		{"password and passwordHash together", owasp, "password: x\npasswordHash: '" + phcWith("argon2id", 19, 19456, 2, 1) + "'\n", false},
		{"a bcrypt hash", owasp, "passwordHash: '$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy'\n", false},
		{"an argon2i hash", owasp, "passwordHash: '" + phcWith("argon2i", 19, 19456, 2, 1) + "'\n", false},
		{"an argon2id version 16 hash", owasp, "passwordHash: '" + phcWith("argon2id", 16, 19456, 2, 1) + "'\n", false},
		{"plain text", owasp, "passwordHash: hunter2\n", false},
		{"a hash cheaper than OWASP's floor", owasp, "passwordHash: '" + phcWith("argon2id", 19, 19456, 1, 1) + "'\n", false},
		{"a hash with too little memory however many passes", owasp, "passwordHash: '" + phcWith("argon2id", 19, 4096, 16, 1) + "'\n", false},
		{"a hash cheaper than even a cheap server's own", cheap, "passwordHash: '" + phcWith("argon2id", 19, 32, 1, 1) + "'\n", false},
		{"a 1 GiB hash", owasp, "passwordHash: '" + phcWith("argon2id", 19, 1<<20, 2, 1) + "'\n", false},
		{"a 32-pass hash", owasp, "passwordHash: '" + phcWith("argon2id", 19, 19456, 32, 1) + "'\n", false},
		{"a hash with 64 lanes", owasp, "passwordHash: '" + phcWith("argon2id", 19, 65536, 2, 64) + "'\n", false},
	}
	for i, tc := range tests {
		verb := "is refused with 422 naming passwordHash, and nothing is written"
		if tc.ok {
			verb = "is accepted"
		}
		t.Run(tc.name+" "+verb, func(t *testing.T) {
			path := fmt.Sprintf("/User/u%d", i)
			r := tc.e.putYAML(path, tc.body)
			if tc.ok {
				mustStatus(t, r, http.StatusCreated)
				noSecrets(t, r.body, "passwordHash")
				return
			}
			mustStatus(t, r, http.StatusUnprocessableEntity)
			if exprs := r.expressions(t); !contains(exprs, "passwordHash") {
				t.Fatalf("expressions %v, want passwordHash", exprs)
			}
			if _, err := tc.e.st.GetUser(context.Background(), fmt.Sprintf("u%d", i)); err == nil {
				t.Fatal("a refused user was written")
			}
		})
	}
}
