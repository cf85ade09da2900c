package gormstore_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/conformance"
	"github.com/gatehouse/gatehouse/internal/store/gormstore"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

func TestConformance(t *testing.T) {
	for _, b := range gormstoretest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			conformance.RunTests(t, b.Open)
		})
	}
}

// openers give the concrete store per backend, for tests of gormstore's own API.
func openers(t testing.TB) map[string]func(t testing.TB) *gormstore.Store {
	m := map[string]func(t testing.TB) *gormstore.Store{"sqlite": gormstoretest.OpenSQLite}
	if os.Getenv(gormstoretest.PostgresEnv) != "" {
		m["postgres"] = gormstoretest.OpenPostgres
	}
	return m
}

func TestMigrate(t *testing.T) {
	for name, open := range openers(t) {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			ctx := context.Background()

			t.Run("schema_migrations records every version", func(t *testing.T) {
				applied, latest, err := s.MigrationStatus(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if latest < 1 || len(applied) != latest || applied[0] != 1 || applied[len(applied)-1] != latest {
					t.Errorf("applied %v, latest %d; want 1..latest", applied, latest)
				}
			})

			t.Run("migrating again changes nothing and keeps the data", func(t *testing.T) {
				if _, _, err := s.PutUser(ctx, store.User{ID: "survivor"}, 0); err != nil {
					t.Fatal(err)
				}
				before, _, _ := s.MigrationStatus(ctx)
				for range 2 {
					if err := s.Migrate(ctx); err != nil {
						t.Fatalf("migrate again: %v", err)
					}
				}
				after, _, err := s.MigrationStatus(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if len(after) != len(before) {
					t.Errorf("versions %v after re-running, were %v", after, before)
				}
				if _, err := s.GetUser(ctx, "survivor"); err != nil {
					t.Errorf("data lost: %v", err)
				}
			})
		})
	}
}

func TestMigrateFromTwoProcessesAtOnce(t *testing.T) {
	ctx := context.Background()
	cases := map[string]func(t *testing.T) func() (*gormstore.Store, error){
		"sqlite": func(t *testing.T) func() (*gormstore.Store, error) {
			path := filepath.Join(t.TempDir(), "shared.db")
			return func() (*gormstore.Store, error) { return gormstore.OpenSQLite(path, nil) }
		},
	}
	if os.Getenv(gormstoretest.PostgresEnv) != "" {
		cases["postgres"] = func(t *testing.T) func() (*gormstore.Store, error) {
			dsn := gormstoretest.PostgresDSN(t)
			return func() (*gormstore.Store, error) { return gormstore.OpenPostgres(dsn, nil) }
		}
	}
	for name, mk := range cases {
		t.Run(name+" applies each migration once", func(t *testing.T) {
			open := mk(t)
			stores := make([]*gormstore.Store, 4)
			for i := range stores {
				s, err := open()
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = s.Close() })
				stores[i] = s
			}
			var wg sync.WaitGroup
			errs := make([]error, len(stores))
			for i, s := range stores {
				wg.Go(func() { errs[i] = s.Migrate(ctx) })
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Errorf("process %d: %v", i, err)
				}
			}
			applied, latest, err := stores[0].MigrationStatus(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(applied) != latest {
				t.Errorf("applied %v, want each of 1..%d once", applied, latest)
			}
		})
	}
}

func TestOpenPicksTheBackendFromTheURL(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, url string
		want      string
		file      string
	}{
		{"an empty URL opens SQLite in the data directory", "", "sqlite", filepath.Join(dir, "gatehouse.db")},
		{"a sqlite: URL opens that file", "sqlite:" + filepath.Join(dir, "a", "x.db"), "sqlite", filepath.Join(dir, "a", "x.db")},
		{"a plain path opens that file", filepath.Join(dir, "b", "y.db"), "sqlite", filepath.Join(dir, "b", "y.db")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := gormstore.Open(c.url, dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if s.Dialect() != c.want {
				t.Errorf("dialect %s, want %s", s.Dialect(), c.want)
			}
			if err := s.Migrate(context.Background()); err != nil {
				t.Fatal(err)
			}
			if matches, _ := filepath.Glob(c.file); len(matches) != 1 {
				t.Errorf("no database file at %s", c.file)
			}
		})
	}
	if dsn := gormstoretest.PostgresDSN(t); dsn != "" {
		t.Run("a postgres URL opens PostgreSQL", func(t *testing.T) {
			s, err := gormstore.Open(dsn, dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if s.Dialect() != "postgres" {
				t.Errorf("dialect %s", s.Dialect())
			}
		})
	}
	t.Run("sqlite::memory: opens a private in-memory database", func(t *testing.T) {
		s, err := gormstore.Open("sqlite::memory:", dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		ctx := context.Background()
		if err := s.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.PutUser(ctx, store.User{ID: "m"}, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetUser(ctx, "m"); err != nil {
			t.Errorf("the user written is not there: %v", err)
		}
	})
	t.Run("the database file is readable by its owner only", func(t *testing.T) {
		path := filepath.Join(dir, "private", "p.db")
		s, err := gormstore.OpenSQLite(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("mode %v, want 0600", fi.Mode().Perm())
		}
	})
	t.Run("an unknown scheme is refused", func(t *testing.T) {
		if _, err := gormstore.Open("mysql://u:p@h/db", dir, nil); err == nil || strings.Contains(err.Error(), "u:p") {
			t.Errorf("err = %v, want a refusal that does not repeat the URL", err)
		}
	})
	t.Run("no URL and no data directory is refused", func(t *testing.T) {
		if _, err := gormstore.Open("", "", nil); err == nil {
			t.Error("opened a store with nowhere to keep it")
		}
	})
}

func TestFailedStatementsDoNotLogParameterValues(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&buf, &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := gormstore.OpenSQLite(filepath.Join(t.TempDir(), "g.db"), logger)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	const secretHash = "$argon2id$SECRET-HASH-VALUE"
	if _, _, err := s.PutUser(ctx, store.User{ID: "a", Email: "same@example.org"}, 0); err != nil {
		t.Fatal(err)
	}
	_, _, err = s.PutUser(ctx, store.User{ID: "b", Email: "same@example.org", PasswordHash: secretHash}, 0)
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("err = %v, want conflict", err)
	}
	if strings.Contains(err.Error(), secretHash) {
		t.Errorf("the error repeats the password hash: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Contains(buf.String(), secretHash) || strings.Contains(buf.String(), "same@example.org") {
		t.Errorf("the log holds parameter values:\n%s", buf.String())
	}
}

func TestEveryStatementIsLoggedBelowDebugWithoutValues(t *testing.T) {
	for _, tc := range []struct {
		name  string
		level slog.Level
		want  bool
	}{
		{"at DEBUG-4 every statement is logged", gormstore.LevelSQL, true},
		{"at DEBUG statements are not logged", slog.LevelDebug, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			var mu sync.Mutex
			logger := slog.New(slog.NewTextHandler(lockedWriter{&buf, &mu}, &slog.HandlerOptions{Level: tc.level}))
			s, err := gormstore.OpenSQLite(filepath.Join(t.TempDir(), "g.db"), logger)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			if err := s.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			const secretHash = "$argon2id$SECRET-HASH-VALUE"
			if _, _, err := s.PutUser(ctx, store.User{ID: "logged", Email: "logged@example.org", PasswordHash: secretHash}, 0); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			out := buf.String()
			if got := strings.Contains(out, "INSERT INTO users"); got != tc.want {
				t.Errorf("statement logged = %v, want %v:\n%s", got, tc.want, out)
			}
			if strings.Contains(out, secretHash) || strings.Contains(out, "logged@example.org") {
				t.Errorf("the log holds parameter values:\n%s", out)
			}
		})
	}
}

type lockedWriter struct {
	buf *bytes.Buffer
	mu  *sync.Mutex
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func BenchmarkHotPaths(b *testing.B) {
	for _, be := range gormstoretest.Backends(b) {
		s := be.Open(b)
		ctx := context.Background()
		if _, _, err := s.PutUser(ctx, store.User{ID: "bench", Email: "bench@example.org", PhoneNumber: "+15550800", PhoneVerified: true}, 0); err != nil {
			b.Fatal(err)
		}
		if err := s.CreateBrowserSession(ctx, store.BrowserSession{ID: "bench-sess", UserID: "bench", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
			b.Fatal(err)
		}
		b.Run(be.Name+"/get browser session", func(b *testing.B) {
			for b.Loop() {
				if _, err := s.GetBrowserSession(ctx, "bench-sess"); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(be.Name+"/find user by e-mail", func(b *testing.B) {
			for b.Loop() {
				if _, err := s.FindUser(ctx, "Bench@example.org"); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(be.Name+"/find user by phone", func(b *testing.B) {
			for b.Loop() {
				if _, err := s.FindUserByPhone(ctx, "+15550800"); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(be.Name+"/hit counter", func(b *testing.B) {
			now := time.Now()
			for b.Loop() {
				if _, err := s.HitCounter(ctx, "bench", time.Minute, now); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(be.Name+"/put user", func(b *testing.B) {
			for b.Loop() {
				if _, _, err := s.PutUser(ctx, store.User{ID: "bench", Email: "bench@example.org", PhoneNumber: "+15550800", PhoneVerified: true}, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// unmigrated opens an empty database per backend, for upgrade tests that
// build an older schema first.
func unmigrated(t *testing.T) map[string]func(t *testing.T) *gormstore.Store {
	m := map[string]func(t *testing.T) *gormstore.Store{
		"sqlite": func(t *testing.T) *gormstore.Store {
			s, err := gormstore.OpenSQLite(filepath.Join(t.TempDir(), "old.db"), nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			return s
		},
	}
	if os.Getenv(gormstoretest.PostgresEnv) != "" {
		m["postgres"] = func(t *testing.T) *gormstore.Store {
			s, err := gormstore.OpenPostgres(gormstoretest.PostgresDSN(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			return s
		}
	}
	return m
}

func TestUpgradeFromVersion1(t *testing.T) {
	ctx := context.Background()
	for name, open := range unmigrated(t) {
		t.Run(name, func(t *testing.T) {
			t.Run("a version-1 database keeps its data and gains the phone look-up", func(t *testing.T) {
				s := open(t)
				if err := s.MigrateTo(ctx, 1); err != nil {
					t.Fatal(err)
				}
				for _, u := range []store.User{
					{ID: "old-1", Email: "old@example.org", PhoneNumber: "+15550600", PhoneVerified: true},
					{ID: "old-2", PhoneNumber: "+15550600"},
				} {
					if _, _, err := s.PutUser(ctx, u, 0); err != nil {
						t.Fatal(err)
					}
				}
				if err := s.Migrate(ctx); err != nil {
					t.Fatalf("upgrade: %v", err)
				}
				applied, latest, err := s.MigrationStatus(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if len(applied) != latest || latest < 3 {
					t.Errorf("applied %v, latest %d", applied, latest)
				}
				u, err := s.FindUserByPhone(ctx, "+15550600")
				if err != nil || u.ID != "old-1" || u.Email != "old@example.org" {
					t.Errorf("find by phone after the upgrade = %+v, %v; want old-1", u, err)
				}
			})

			t.Run("a number verified on several users does not stop the upgrade", func(t *testing.T) {
				s := open(t)
				if err := s.MigrateTo(ctx, 1); err != nil {
					t.Fatal(err)
				}
				for _, u := range []store.User{
					{ID: "share-a", PhoneNumber: "+15550700", PhoneVerified: true},
					{ID: "share-b", PhoneNumber: "+15550700", PhoneVerified: true},
				} {
					if _, _, err := s.PutUser(ctx, u, 0); err != nil {
						t.Fatal(err)
					}
				}
				if err := s.Migrate(ctx); err != nil {
					t.Fatalf("upgrade: %v", err)
				}
				if _, err := s.FindUserByPhone(ctx, "+15550700"); !errors.Is(err, store.ErrConflict) {
					t.Errorf("find the shared number: %v, want a conflict", err)
				}
			})

			t.Run("migrating to an unknown version is refused", func(t *testing.T) {
				s := open(t)
				for _, v := range []int{0, 99} {
					if err := s.MigrateTo(ctx, v); err == nil {
						t.Errorf("migrate to %d went through", v)
					}
				}
			})
		})
	}
}
