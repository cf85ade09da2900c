package gormstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

func TestSQLiteWriters(t *testing.T) {
	t.Run("64 goroutines writing in transactions all succeed", func(t *testing.T) {
		s := gormstoretest.OpenSQLite(t)
		// One instant for every hit: with time.Now() a run across the top of
		// the hour counted in two windows and read "a write was lost".
		now := time.Now()
		const workers, rounds = 64, 10
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			maxWait time.Duration
			errs    = make(chan error, workers)
		)
		for w := range workers {
			wg.Go(func() {
				ctx := context.Background()
				for r := range rounds {
					start := time.Now()
					err := s.InTx(ctx, func(ctx context.Context) error {
						if _, _, err := s.PutUser(ctx, store.User{ID: fmt.Sprintf("u%d", w)}, 0); err != nil {
							return err
						}
						_, err := s.HitCounter(ctx, "shared", time.Hour, now)
						return err
					})
					if err == nil {
						// A write outside any transaction queues the same way.
						_, err = s.HitCounter(ctx, "shared", time.Hour, now)
					}
					if err != nil {
						errs <- fmt.Errorf("worker %d round %d: %w", w, r, err)
						return
					}
					mu.Lock()
					maxWait = max(maxWait, time.Since(start))
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		n, err := s.GetCounter(context.Background(), "shared", time.Hour, now)
		if err != nil {
			t.Fatal(err)
		}
		if want := 2 * workers * rounds; n != want {
			t.Errorf("counter = %d, want %d: a write was lost", n, want)
		}
		t.Logf("slowest round (one transaction and one plain write): %s", maxWait)
	})

	t.Run("a writer waiting behind a transaction gives up when its context ends", func(t *testing.T) {
		s := gormstoretest.OpenSQLite(t)
		txCtx, err := s.BeginTx(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = s.RollbackTx(txCtx) }()
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if _, err := s.HitCounter(ctx, "k", time.Hour, time.Now()); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("HitCounter = %v, want context.DeadlineExceeded", err)
		}
		if err := s.ResetCounter(ctx, "k"); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("ResetCounter = %v, want context.DeadlineExceeded", err)
		}
	})

	t.Run("writes inside a transaction and its savepoints do not wait for themselves", func(t *testing.T) {
		s := gormstoretest.OpenSQLite(t)
		ctx := context.Background()
		now := time.Now() // one window for the write and the read
		err := s.InTx(ctx, func(ctx context.Context) error {
			if err := s.ResetCounter(ctx, "k"); err != nil {
				return err
			}
			return s.InTx(ctx, func(ctx context.Context) error {
				_, err := s.HitCounter(ctx, "k", time.Hour, now)
				return err
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		if n, err := s.GetCounter(ctx, "k", time.Hour, now); err != nil || n != 1 {
			t.Errorf("GetCounter = %d, %v; want 1", n, err)
		}
	})

	t.Run("a transaction whose context is cancelled lets the other writers on", func(t *testing.T) {
		s := gormstoretest.OpenSQLite(t)
		now := time.Now() // one window for the writes and the read
		ctx, cancel := context.WithCancel(context.Background())
		txCtx, err := s.BeginTx(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.HitCounter(txCtx, "k", time.Hour, now); err != nil {
			t.Fatal(err)
		}
		cancel()
		wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer wcancel()
		if _, err := s.HitCounter(wctx, "other", time.Hour, now); err != nil {
			t.Errorf("write after the cancelled transaction: %v", err)
		}
		_ = s.RollbackTx(txCtx)
		if n, err := s.GetCounter(context.Background(), "k", time.Hour, now); err != nil || n != 0 {
			t.Errorf("GetCounter = %d, %v; want 0 (the cancelled transaction is undone)", n, err)
		}
	})
}
