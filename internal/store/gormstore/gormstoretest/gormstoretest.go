// Package gormstoretest gives tests a real, migrated store: SQLite in a
// temporary directory always, and PostgreSQL (a fresh schema per call) when
// GATEHOUSE_TEST_POSTGRES_DSN names a server. Tests use these instead of
// in-memory fakes, so they exercise the SQL that production runs.
package gormstoretest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	// Registers the "pgx" database/sql driver used to create and drop
	// test schemas.
	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/gormstore"
)

// PostgresEnv names the environment variable holding the PostgreSQL DSN for
// tests, e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable.
const PostgresEnv = "GATEHOUSE_TEST_POSTGRES_DSN"

// Backend is one database a test can run against.
type Backend struct {
	Name string
	Open func(t testing.TB) store.Store
}

// Open returns a migrated SQLite store in t.TempDir(), closed at cleanup.
func Open(t testing.TB) store.Store {
	t.Helper()
	return OpenSQLite(t)
}

// OpenSQLite is Open with the concrete type, for tests of gormstore itself.
func OpenSQLite(t testing.TB) *gormstore.Store {
	t.Helper()
	return OpenSQLiteAt(t, filepath.Join(t.TempDir(), "gatehouse.db"))
}

// OpenSQLiteAt is OpenSQLite on a file the test chose (one it also opens
// another way, or on a file system of its own).
func OpenSQLiteAt(t testing.TB, path string) *gormstore.Store {
	t.Helper()
	s, err := gormstore.OpenSQLite(path, quietLogger())
	if err != nil {
		t.Fatalf("open sqlite test store: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatalf("migrate sqlite test store: %v", err)
	}
	return s
}

// OpenPostgres returns a migrated store in a fresh PostgreSQL schema, dropped
// at cleanup. It skips nothing: without GATEHOUSE_TEST_POSTGRES_DSN it fails
// the test, so call it only when PostgresDSN would return a DSN.
func OpenPostgres(t testing.TB) *gormstore.Store {
	t.Helper()
	dsn := PostgresDSN(t)
	if dsn == "" {
		t.Fatalf("open postgres test store: %s is not set", PostgresEnv)
	}
	return OpenPostgresAt(t, dsn)
}

// OpenPostgresAt returns a migrated store on dsn (from PostgresDSN), closed
// at cleanup: for tests that also reach the schema another way (LockTable).
func OpenPostgresAt(t testing.TB, dsn string) *gormstore.Store {
	t.Helper()
	s, err := gormstore.OpenPostgres(dsn, quietLogger())
	if err != nil {
		t.Fatalf("open postgres test store: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatalf("migrate postgres test store: %v", err)
	}
	return s
}

// Backends lists the stores to run a test against: SQLite always, PostgreSQL
// when GATEHOUSE_TEST_POSTGRES_DSN is set. Each Open call gives an empty,
// migrated database of its own.
func Backends(t testing.TB) []Backend {
	t.Helper()
	bs := []Backend{{Name: "sqlite", Open: Open}}
	if os.Getenv(PostgresEnv) != "" {
		bs = append(bs, Backend{Name: "postgres", Open: func(t testing.TB) store.Store {
			t.Helper()
			return OpenPostgres(t)
		}})
	}
	return bs
}

// PostgresDSN creates an empty schema on the server GATEHOUSE_TEST_POSTGRES_DSN
// names and returns a DSN whose search_path is that schema, so several
// processes (say, two servers under test) can share it. The schema is dropped
// at cleanup. It returns "" when the variable is unset and fails the test
// when the server cannot be reached.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	base := os.Getenv(PostgresEnv)
	if base == "" {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("%s: %v", PostgresEnv, err)
	}
	defer admin.Close()
	if err := admin.PingContext(ctx); err != nil {
		t.Fatalf("%s is set but the server is unreachable: %v", PostgresEnv, err)
	}
	schema := "gatehouse_test_" + randomHex(8)
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create test schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		db, err := sql.Open("pgx", base)
		if err != nil {
			t.Errorf("drop test schema %s: %v", schema, err)
			return
		}
		defer db.Close()
		if _, err := db.ExecContext(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop test schema %s: %v", schema, err)
		}
	})
	dsn, err := withSearchPath(base, schema)
	if err != nil {
		t.Fatalf("%s: %v", PostgresEnv, err)
	}
	return dsn
}

// withSearchPath adds a search_path runtime parameter to a URL or key=value DSN.
func withSearchPath(dsn, schema string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", err
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String(), nil
	}
	return dsn + " search_path=" + schema, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func quietLogger() *slog.Logger {
	return slog.New(slog.DiscardHandler)
}

// LockTable stalls every statement on table in the PostgreSQL schema dsn
// names, as a paused or overloaded server would: a separate connection
// takes an ACCESS EXCLUSIVE lock in an open transaction. The returned
// function releases it (once; also at cleanup).
func LockTable(t testing.TB, dsn, table string) (release func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatalf("lock table %s: %v", table, err)
	}
	// The transaction outlives this call: database/sql would roll it back
	// when its context ends.
	tx, err := db.BeginTx(context.Background(), nil)
	if err != nil {
		db.Close()
		t.Fatalf("lock table %s: %v", table, err)
	}
	if _, err := tx.ExecContext(ctx, "LOCK TABLE "+table+" IN ACCESS EXCLUSIVE MODE"); err != nil {
		_ = tx.Rollback()
		db.Close()
		t.Fatalf("lock table %s: %v", table, err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			if err := tx.Rollback(); err != nil {
				t.Errorf("release the lock on %s: %v", table, err)
			}
			db.Close()
		})
	}
	t.Cleanup(release)
	return release
}
