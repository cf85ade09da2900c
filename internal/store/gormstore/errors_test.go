package gormstore_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/gormstore"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

// TestStorageFailuresAreUnavailable holds the one sentinel every surface
// maps to 503: each fault below must come back as store.ErrUnavailable,
// and the ordinary outcomes must not.
func TestStorageFailuresAreUnavailable(t *testing.T) {
	ctx := context.Background()
	big := bytes.Repeat([]byte("x"), 64<<10)
	tests := []struct {
		name     string
		postgres bool // needs GATEHOUSE_TEST_POSTGRES_DSN
		fault    func(t *testing.T) error
	}{
		{"a closed SQLite database", false, func(t *testing.T) error {
			s := gormstoretest.OpenSQLite(t)
			s.Close()
			_, err := s.GetUser(ctx, "u")
			return err
		}},
		{"a full disk under SQLite", false, func(t *testing.T) error {
			s := gormstoretest.OpenSQLite(t)
			if err := s.FillDisk(ctx); err != nil {
				t.Fatal(err)
			}
			var err error
			for i := 0; i < 50 && err == nil; i++ {
				_, _, err = s.PutUser(ctx, store.User{ID: "filler-" + string(rune('a'+i)), Doc: big}, 0)
			}
			if err == nil || !strings.Contains(err.Error(), "full") {
				t.Errorf("writes on a full disk: %v, want SQLite's disk-full error", err)
			}
			return err
		}},
		{"a deadline that passes while another transaction holds the SQLite writer", false, func(t *testing.T) error {
			s := gormstoretest.OpenSQLite(t)
			txCtx, err := s.BeginTx(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer s.RollbackTx(txCtx)
			short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			defer cancel()
			_, _, err = s.PutUser(short, store.User{ID: "late"}, 0)
			return err
		}},
		{"a closed PostgreSQL pool", true, func(t *testing.T) error {
			s := gormstoretest.OpenPostgres(t)
			s.Close()
			_, err := s.GetUser(ctx, "u")
			return err
		}},
		{"a deadline that passes while PostgreSQL waits on a lock", true, func(t *testing.T) error {
			dsn := gormstoretest.PostgresDSN(t)
			s := openPostgresWith(t, dsn, gormstore.PostgresOptions{})
			gormstoretest.LockTable(t, dsn, "users")
			short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, err := s.GetUser(short, "u")
			if d := time.Since(start); d > time.Second {
				t.Errorf("the read returned after %s, want about the 200ms deadline", d)
			}
			return err
		}},
		{"PostgreSQL's statement timeout for work without a deadline", true, func(t *testing.T) error {
			dsn := gormstoretest.PostgresDSN(t)
			s := openPostgresWith(t, dsn, gormstore.PostgresOptions{StatementTimeout: 300 * time.Millisecond})
			gormstoretest.LockTable(t, dsn, "users")
			_, err := s.GetUser(ctx, "u")
			return err
		}},
		{"a pool that runs out of connections before the deadline", true, func(t *testing.T) error {
			dsn := gormstoretest.PostgresDSN(t)
			s := openPostgresWith(t, dsn, gormstore.PostgresOptions{MaxOpenConns: 1})
			txCtx, err := s.BeginTx(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer s.RollbackTx(txCtx)
			short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			defer cancel()
			_, err = s.GetUser(short, "u")
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name+" is unavailable", func(t *testing.T) {
			if tt.postgres && os.Getenv(gormstoretest.PostgresEnv) == "" {
				t.Skipf("%s is not set", gormstoretest.PostgresEnv)
			}
			err := tt.fault(t)
			if !errors.Is(err, store.ErrUnavailable) || !store.Unavailable(err) {
				t.Fatalf("got %v, want store.ErrUnavailable", err)
			}
			if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrConflict) {
				t.Fatalf("got %v, which also reads as not found or a conflict", err)
			}
		})
	}

	for name, open := range openers(t) {
		t.Run("not found and conflicts on "+name+" are not unavailable", func(t *testing.T) {
			s := open(t)
			_, err := s.GetUser(ctx, "nobody")
			if !errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrUnavailable) {
				t.Errorf("missing user: %v", err)
			}
			if _, _, err := s.PutUser(ctx, store.User{ID: "a", Email: "same@example.com"}, 0); err != nil {
				t.Fatal(err)
			}
			_, _, err = s.PutUser(ctx, store.User{ID: "b", Email: "same@example.com"}, 0)
			if !errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrUnavailable) {
				t.Errorf("duplicate e-mail: %v", err)
			}
			_, _, err = s.PutUser(ctx, store.User{ID: "a"}, 7)
			if !errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrUnavailable) {
				t.Errorf("stale version: %v", err)
			}
		})
	}
}
