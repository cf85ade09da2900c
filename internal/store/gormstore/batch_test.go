package gormstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/gormstore"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

// holdWriterLock opens a transaction, which holds the SQLite writer lock
// until the returned function rolls it back.
func holdWriterLock(t *testing.T, s *gormstore.Store) (release func()) {
	t.Helper()
	txCtx, err := s.BeginTx(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			if err := s.RollbackTx(txCtx); err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(release)
	return release
}

// waitQueued waits until n rows wait for a group commit.
func waitQueued(t *testing.T, s *gormstore.Store, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.QueuedOAuthInserts() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d rows queued, want %d", s.QueuedOAuthInserts(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// createAll runs CreateOAuthRequest for each signature in its own goroutine
// and returns the goroutines' errors by signature index, and a wait for them.
func createAll(s *gormstore.Store, sigs []string) (errs []error, wait func()) {
	errs = make([]error, len(sigs))
	var wg sync.WaitGroup
	for i, sig := range sigs {
		wg.Go(func() { errs[i] = s.CreateOAuthRequest(context.Background(), benchToken(sig)) })
	}
	return errs, wg.Wait
}

func TestGroupCommitOfTokenInserts(t *testing.T) {
	ctx := context.Background()

	t.Run("200 concurrent callers are all stored, in fewer batches than rows", func(t *testing.T) {
		s := gormstoretest.OpenSQLite(t)
		const rows = 200
		sigs := make([]string, rows)
		for i := range sigs {
			sigs[i] = fmt.Sprintf("many-%d", i)
		}
		// All callers queue behind a held lock, so batches must form.
		release := holdWriterLock(t, s)
		errs, wait := createAll(s, sigs)
		waitQueued(t, s, rows)
		release()
		wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("%s: %v", sigs[i], err)
			}
		}
		for _, sig := range sigs {
			got, err := s.GetOAuthRequest(ctx, store.KindAccessToken, sig)
			if err != nil || got.RequestID != "req-"+sig {
				t.Errorf("read back %s: %+v, %v", sig, got, err)
			}
		}
		if n := s.OAuthInsertBatches(); n >= rows || n == 0 {
			t.Errorf("%d batches for %d rows, want fewer batches than rows", n, rows)
		} else {
			t.Logf("%d rows in %d batches", rows, n)
		}
	})

	t.Run("a duplicate signature fails only its own caller", func(t *testing.T) {
		s := gormstoretest.OpenSQLite(t)
		if err := s.CreateOAuthRequest(ctx, benchToken("stored")); err != nil {
			t.Fatal(err)
		}
		// "stored" is in the database already; "twin" comes twice in
		// the same batch; the rest are new.
		sigs := []string{"stored", "twin", "twin"}
		for i := range 20 {
			sigs = append(sigs, fmt.Sprintf("fresh-%d", i))
		}
		release := holdWriterLock(t, s)
		errs, wait := createAll(s, sigs)
		waitQueued(t, s, len(sigs))
		release()
		wait()

		if err := errs[0]; !errors.Is(err, store.ErrConflict) || !strings.Contains(err.Error(), "signature already stored") {
			t.Errorf("the stored signature: %v, want ErrConflict", err)
		}
		if e1, e2 := errs[1], errs[2]; (e1 == nil) == (e2 == nil) || !errors.Is(errors.Join(e1, e2), store.ErrConflict) {
			t.Errorf("the twins: %v and %v, want one stored and one ErrConflict", e1, e2)
		}
		for i, sig := range sigs[3:] {
			if err := errs[i+3]; err != nil {
				t.Errorf("%s: %v", sig, err)
			}
			if _, err := s.GetOAuthRequest(ctx, store.KindAccessToken, sig); err != nil {
				t.Errorf("read back %s: %v", sig, err)
			}
		}
	})

	t.Run("callers whose context ends while queued give up and store nothing", func(t *testing.T) {
		s := gormstoretest.OpenSQLite(t)
		release := holdWriterLock(t, s)

		// The first caller leads and waits for the writer lock; the
		// second waits behind it; the third stays to the end.
		leaderCtx, cancelLeader := context.WithCancel(ctx)
		defer cancelLeader()
		waiterCtx, cancelWaiter := context.WithCancel(ctx)
		defer cancelWaiter()
		results := make(chan error, 3)
		type ended struct {
			err     error
			elapsed time.Duration
		}
		gaveUp := make(chan ended, 2)
		start := time.Now()
		go func() {
			err := s.CreateOAuthRequest(leaderCtx, benchToken("leader"))
			gaveUp <- ended{err, time.Since(start)}
		}()
		waitQueued(t, s, 1)
		go func() {
			err := s.CreateOAuthRequest(waiterCtx, benchToken("waiter"))
			gaveUp <- ended{err, time.Since(start)}
		}()
		waitQueued(t, s, 2)
		go func() { results <- s.CreateOAuthRequest(ctx, benchToken("patient")) }()
		waitQueued(t, s, 3)
		cancelLeader()
		cancelWaiter()

		for range 2 {
			e := <-gaveUp
			if !errors.Is(e.err, context.Canceled) {
				t.Errorf("a cancelled caller returned %v, want its context's error", e.err)
			}
			if e.elapsed > 2*time.Second {
				t.Errorf("a cancelled caller returned after %s", e.elapsed)
			}
		}
		waitQueued(t, s, 1)
		release()
		if err := <-results; err != nil {
			t.Errorf("the caller that stayed: %v", err)
		}
		for sig, want := range map[string]error{"leader": store.ErrNotFound, "waiter": store.ErrNotFound, "patient": nil} {
			if _, err := s.GetOAuthRequest(ctx, store.KindAccessToken, sig); !errors.Is(err, want) {
				t.Errorf("read back %s: %v, want %v", sig, err, want)
			}
		}
	})

	t.Run("a lone caller costs one INSERT, as before", func(t *testing.T) {
		s := gormstoretest.OpenSQLite(t)
		before := s.Statements()
		if err := s.CreateOAuthRequest(ctx, benchToken("alone")); err != nil {
			t.Fatal(err)
		}
		if n := s.Statements() - before; n != 1 {
			t.Errorf("%d statements, want 1", n)
		}
		if n := s.OAuthInsertBatches(); n != 1 {
			t.Errorf("%d batches, want 1", n)
		}
	})

	for name, open := range openers(t) {
		t.Run(name+": inside a transaction the row is the transaction's", func(t *testing.T) {
			s := open(t)
			txCtx, err := s.BeginTx(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.CreateOAuthRequest(txCtx, benchToken("in-tx")); err != nil {
				t.Fatal(err)
			}
			if _, err := s.GetOAuthRequest(txCtx, store.KindAccessToken, "in-tx"); err != nil {
				t.Errorf("read back in the transaction: %v", err)
			}
			if err := s.RollbackTx(txCtx); err != nil {
				t.Fatal(err)
			}
			if _, err := s.GetOAuthRequest(ctx, store.KindAccessToken, "in-tx"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("read back after rollback: %v, want ErrNotFound", err)
			}
			if n := s.OAuthInsertBatches(); n != 0 {
				t.Errorf("%d batches, want none: a transaction's writes are not grouped", n)
			}
		})
	}

	if _, ok := openers(t)["postgres"]; ok {
		t.Run("postgres: concurrent callers each run their own INSERT", func(t *testing.T) {
			s := gormstoretest.OpenPostgres(t)
			sigs := make([]string, 50)
			for i := range sigs {
				sigs[i] = fmt.Sprintf("pg-%d", i)
			}
			sigs = append(sigs, "pg-0")
			errs, wait := createAll(s, sigs)
			wait()
			var failed []error
			for _, err := range errs {
				if err != nil {
					failed = append(failed, err)
				}
			}
			if len(failed) != 1 || !errors.Is(failed[0], store.ErrConflict) {
				t.Errorf("errors %v, want one ErrConflict", failed)
			}
			if n := s.OAuthInsertBatches(); n != 0 {
				t.Errorf("%d batches on PostgreSQL, want none", n)
			}
		})
	}
}
