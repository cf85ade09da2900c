package gormstore_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/gormstore"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

// openPostgresWith opens a migrated store in a fresh schema with opts.
func openPostgresWith(t *testing.T, dsn string, opts gormstore.PostgresOptions) *gormstore.Store {
	t.Helper()
	s, err := gormstore.OpenPostgresWith(dsn, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

// eventually polls cond for up to 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10 s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPostgresPool reproduces the fault report's finding 2d (two processes
// with a hard-coded pool of 25 kept every slot of a small server): the
// pool's bounds come from the options, and unused connections go back.
func TestPostgresPool(t *testing.T) {
	if os.Getenv(gormstoretest.PostgresEnv) == "" {
		t.Skipf("%s is not set", gormstoretest.PostgresEnv)
	}
	ctx := context.Background()

	t.Run("the defaults leave room: 10 open, 5 idle and a 10 s statement timeout", func(t *testing.T) {
		s := openPostgresWith(t, gormstoretest.PostgresDSN(t), gormstore.PostgresOptions{})
		if got := s.PoolStats().MaxOpenConnections; got != 10 {
			t.Errorf("max open connections %d, want 10", got)
		}
		if got, err := s.QueryString(ctx, "SHOW statement_timeout"); err != nil || got != "10s" {
			t.Errorf("statement_timeout %q (%v), want 10s", got, err)
		}
	})

	t.Run("a small pool opens no more than its bound, queues the rest and keeps one idle", func(t *testing.T) {
		dsn := gormstoretest.PostgresDSN(t)
		s := openPostgresWith(t, dsn, gormstore.PostgresOptions{MaxOpenConns: 3, MaxIdleConns: 1})
		release := gormstoretest.LockTable(t, dsn, "users")
		const n = 6
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				defer cancel()
				_, err := s.GetUser(ctx, "nobody")
				errs <- err
			}()
		}
		eventually(t, "three connections in use and callers waiting", func() bool {
			st := s.PoolStats()
			return st.InUse == 3 && st.WaitCount > 0
		})
		if st := s.PoolStats(); st.OpenConnections != 3 {
			t.Errorf("%d connections open under the lock, want 3", st.OpenConnections)
		}
		release()
		wg.Wait()
		close(errs)
		for err := range errs {
			if !errors.Is(err, store.ErrNotFound) {
				t.Errorf("a caller got %v, want not found after the lock was released", err)
			}
		}
		if st := s.PoolStats(); st.OpenConnections > 1 || st.Idle > 1 {
			t.Errorf("after the burst: %d open, %d idle; want at most 1 kept", st.OpenConnections, st.Idle)
		}
	})

	t.Run("connections unused for the idle time are closed", func(t *testing.T) {
		s := openPostgresWith(t, gormstoretest.PostgresDSN(t), gormstore.PostgresOptions{MaxIdleConns: 5, ConnMaxIdleTime: time.Second})
		if _, err := s.GetUser(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
			t.Fatal(err)
		}
		eventually(t, "no connection left open", func() bool { return s.PoolStats().OpenConnections == 0 })
	})

	t.Run("the statement timeout comes from the options and one in the DSN wins", func(t *testing.T) {
		dsn := gormstoretest.PostgresDSN(t)
		s := openPostgresWith(t, dsn, gormstore.PostgresOptions{StatementTimeout: 1500 * time.Millisecond})
		if got, err := s.QueryString(ctx, "SHOW statement_timeout"); err != nil || got != "1500ms" {
			t.Errorf("statement_timeout %q (%v), want 1500ms", got, err)
		}
		sep := "&"
		if !strings.Contains(dsn, "?") {
			sep = "?"
		}
		own := openPostgresWith(t, dsn+sep+"statement_timeout=2500", gormstore.PostgresOptions{StatementTimeout: time.Second})
		if got, err := own.QueryString(ctx, "SHOW statement_timeout"); err != nil || got != "2500ms" {
			t.Errorf("statement_timeout %q (%v), want the DSN's 2500ms", got, err)
		}
		t.Run("purges run without it: a purge that waits longer on a lock still completes", func(t *testing.T) {
			release := gormstoretest.LockTable(t, dsn, "oauth_requests, browser_sessions, one_time_codes, counters")
			time.AfterFunc(2*time.Second, release)
			if _, err := s.DeleteExpiredOAuthRequests(ctx, time.Now()); err != nil {
				t.Errorf("purge tokens: %v", err)
			}
			for name, purge := range map[string]func() (int64, error){
				"sessions": func() (int64, error) { return s.DeleteExpiredBrowserSessions(ctx, time.Now()) },
				"codes":    func() (int64, error) { return s.DeleteExpiredOneTimeCodes(ctx, time.Now()) },
				"counters": func() (int64, error) { return s.DeleteStaleCounters(ctx, time.Now()) },
			} {
				if _, err := purge(); err != nil {
					t.Errorf("purge %s: %v", name, err)
				}
			}
			if _, err := s.GetUser(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("a read after the purges: %v; the pool's statement timeout must be back", err)
			}
			if got, err := s.QueryString(ctx, "SHOW statement_timeout"); err != nil || got != "1500ms" {
				t.Errorf("statement_timeout %q (%v) after the purges, want 1500ms again", got, err)
			}
		})
		off := openPostgresWith(t, dsn, gormstore.PostgresOptions{StatementTimeout: -1})
		if got, err := off.QueryString(ctx, "SHOW statement_timeout"); err != nil || got != "0" {
			t.Errorf("statement_timeout %q (%v), want 0 (off)", got, err)
		}
	})
}
