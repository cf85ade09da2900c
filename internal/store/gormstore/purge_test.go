package gormstore_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
)

func TestPurgesDeleteInBoundedBatches(t *testing.T) {
	for name, open := range openers(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s := open(t)
			s.PurgeBatch = 7
			now := time.Now().UTC().Truncate(time.Second)

			var tokens []store.OAuthRequest
			for i := range 26 {
				expires := now.Add(-time.Minute)
				if i >= 23 {
					expires = now.Add(time.Hour)
				}
				tokens = append(tokens, store.OAuthRequest{
					Kind: store.KindAccessToken, Signature: fmt.Sprintf("sig-%d", i), RequestID: fmt.Sprintf("req-%d", i),
					ClientID: "app", RequestedAt: now.Add(-2 * time.Hour), ExpiresAt: expires, Active: true,
				})
			}
			if err := s.CreateOAuthRequests(ctx, tokens); err != nil {
				t.Fatal(err)
			}
			for i := range 15 {
				expires := now.Add(-time.Second)
				if i == 14 {
					expires = now.Add(time.Hour)
				}
				sess := store.BrowserSession{ID: fmt.Sprintf("sess-%d", i), CreatedAt: now.Add(-time.Hour), UpdatedAt: now.Add(-time.Hour), ExpiresAt: expires}
				if err := s.CreateBrowserSession(ctx, sess); err != nil {
					t.Fatal(err)
				}
			}
			old := now.Add(-3 * time.Hour)
			for i := range 9 {
				if _, err := s.HitCounter(ctx, fmt.Sprintf("ip:%d", i), time.Minute, old); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := s.HitCounter(ctx, "ip:fresh", time.Minute, now); err != nil {
				t.Fatal(err)
			}

			t.Run("a backlog larger than a batch goes in several statements, all of it", func(t *testing.T) {
				before := s.Statements()
				n, err := s.DeleteExpiredOAuthRequests(ctx, now)
				if err != nil || n != 23 {
					t.Fatalf("purged %d tokens (%v), want 23", n, err)
				}
				// 7+7+7+2: four DELETEs at least (PostgreSQL adds a
				// transaction around each).
				if got := s.Statements() - before; got < 4 {
					t.Errorf("%d statements for 23 rows in batches of 7, want at least 4", got)
				}
				for i, tok := range tokens {
					_, err := s.GetOAuthRequest(ctx, tok.Kind, tok.Signature)
					if gone := errors.Is(err, store.ErrNotFound); gone != (i < 23) {
						t.Errorf("token %d: err %v after the purge", i, err)
					}
				}
			})
			t.Run("an exact multiple of the batch ends too", func(t *testing.T) {
				n, err := s.DeleteExpiredBrowserSessions(ctx, now)
				if err != nil || n != 14 {
					t.Fatalf("purged %d sessions (%v), want 14", n, err)
				}
				if _, err := s.GetBrowserSession(ctx, "sess-14"); err != nil {
					t.Errorf("the live session: %v", err)
				}
			})
			t.Run("stale counters go and the current one stays", func(t *testing.T) {
				n, err := s.DeleteStaleCounters(ctx, now.Add(-time.Hour))
				if err != nil || n != 9 {
					t.Fatalf("purged %d counters (%v), want 9", n, err)
				}
				if got, err := s.HitCounter(ctx, "ip:fresh", time.Minute, now); err != nil || got != 2 {
					t.Errorf("the current counter reads %d (%v) after the purge, want 2", got, err)
				}
			})
			t.Run("a purge whose context has ended stops and says so", func(t *testing.T) {
				cancelled, cancel := context.WithCancel(ctx)
				cancel()
				if _, err := s.DeleteExpiredOneTimeCodes(cancelled, now); !errors.Is(err, context.Canceled) {
					t.Errorf("err %v, want context.Canceled", err)
				}
			})
		})
	}
}
