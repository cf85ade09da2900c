package conformance

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
)

func testTransactions(t *testing.T, newStore func(t testing.TB) store.Store) {
	s := newStore(t)
	ctx := ctxb()
	errBoom := errors.New("boom")
	exp := time.Now().Add(time.Hour)

	t.Run("a committed transaction keeps all its writes", func(t *testing.T) {
		err := s.InTx(ctx, func(ctx context.Context) error {
			if _, _, err := s.PutUser(ctx, store.User{ID: "tx-ok"}, 0); err != nil {
				return err
			}
			return s.CreateBrowserSession(ctx, store.BrowserSession{ID: "tx-ok-sess", UserID: "tx-ok", ExpiresAt: exp})
		})
		must(t, err, "in tx")
		_, err = s.GetUser(ctx, "tx-ok")
		must(t, err, "user")
		_, err = s.GetBrowserSession(ctx, "tx-ok-sess")
		must(t, err, "session")
	})

	t.Run("an error inside InTx rolls every write back and is returned", func(t *testing.T) {
		err := s.InTx(ctx, func(ctx context.Context) error {
			if _, _, err := s.PutUser(ctx, store.User{ID: "tx-fail"}, 0); err != nil {
				return err
			}
			if err := s.CreateOAuthRequest(ctx, oauthRequest(store.KindAccessToken, "tx-fail-sig", "r", "tx-fail", exp)); err != nil {
				return err
			}
			// Reads inside the transaction see its own writes.
			if _, err := s.GetUser(ctx, "tx-fail"); err != nil {
				return err
			}
			return errBoom
		})
		wantErr(t, err, errBoom, "in tx")
		_, err = s.GetUser(ctx, "tx-fail")
		wantErr(t, err, store.ErrNotFound, "user after rollback")
		_, err = s.GetOAuthRequest(ctx, store.KindAccessToken, "tx-fail-sig")
		wantErr(t, err, store.ErrNotFound, "request after rollback")
	})

	t.Run("a panic inside InTx rolls back and propagates", func(t *testing.T) {
		func() {
			defer func() {
				if recover() == nil {
					t.Error("the panic did not propagate")
				}
			}()
			_ = s.InTx(ctx, func(ctx context.Context) error {
				if _, _, err := s.PutUser(ctx, store.User{ID: "tx-panic"}, 0); err != nil {
					return err
				}
				panic("boom")
			})
		}()
		_, err := s.GetUser(ctx, "tx-panic")
		wantErr(t, err, store.ErrNotFound, "user after panic")
	})

	t.Run("BeginTx and RollbackTx undo the work, and a second rollback is a no-op", func(t *testing.T) {
		txCtx, err := s.BeginTx(ctx)
		must(t, err, "begin")
		_, _, err = s.PutUser(txCtx, store.User{ID: "tx-manual"}, 0)
		must(t, err, "put")
		must(t, s.RollbackTx(txCtx), "rollback")
		must(t, s.RollbackTx(txCtx), "second rollback")
		_, err = s.GetUser(ctx, "tx-manual")
		wantErr(t, err, store.ErrNotFound, "user after rollback")
	})

	t.Run("BeginTx and CommitTx keep the work, and rollback after commit is a no-op", func(t *testing.T) {
		txCtx, err := s.BeginTx(ctx)
		must(t, err, "begin")
		must(t, s.CreateOAuthRequest(txCtx, oauthRequest(store.KindAuthorizeCode, "tx-commit", "r", "x", exp)), "create")
		must(t, s.DeactivateOAuthRequest(txCtx, store.KindAuthorizeCode, "tx-commit"), "deactivate in the same tx")
		must(t, s.CommitTx(txCtx), "commit")
		must(t, s.RollbackTx(txCtx), "rollback after commit")
		got, err := s.GetOAuthRequest(ctx, store.KindAuthorizeCode, "tx-commit")
		must(t, err, "get")
		if got.Active {
			t.Error("the deactivation inside the committed tx was lost")
		}
	})

	t.Run("work outside the transaction does not see uncommitted writes", func(t *testing.T) {
		txCtx, err := s.BeginTx(ctx)
		must(t, err, "begin")
		defer func() { _ = s.RollbackTx(txCtx) }()
		_, _, err = s.PutAuthConfig(txCtx, store.AuthConfig{ID: "tx-hidden"}, 0)
		must(t, err, "put")
		_, err = s.GetAuthConfig(txCtx, "tx-hidden")
		must(t, err, "read inside")
		_, err = s.GetAuthConfig(ctx, "tx-hidden")
		wantErr(t, err, store.ErrNotFound, "read outside before commit")
		must(t, s.CommitTx(txCtx), "commit")
		_, err = s.GetAuthConfig(ctx, "tx-hidden")
		must(t, err, "read after commit")
	})

	t.Run("a nested InTx joins the outer transaction", func(t *testing.T) {
		err := s.InTx(ctx, func(ctx context.Context) error {
			if _, _, err := s.PutUser(ctx, store.User{ID: "tx-outer"}, 0); err != nil {
				return err
			}
			if err := s.InTx(ctx, func(ctx context.Context) error {
				// The inner transaction sees the outer one's write.
				if _, err := s.GetUser(ctx, "tx-outer"); err != nil {
					return err
				}
				_, _, err := s.PutUser(ctx, store.User{ID: "tx-inner"}, 0)
				return err
			}); err != nil {
				return err
			}
			return errBoom
		})
		wantErr(t, err, errBoom, "outer")
		for _, id := range []string{"tx-outer", "tx-inner"} {
			_, err := s.GetUser(ctx, id)
			wantErr(t, err, store.ErrNotFound, id+" after the outer rollback")
		}
	})

	t.Run("a failed nested InTx undoes only its own work", func(t *testing.T) {
		err := s.InTx(ctx, func(ctx context.Context) error {
			if _, _, err := s.PutUser(ctx, store.User{ID: "tx-keep", Email: "keep@example.org"}, 0); err != nil {
				return err
			}
			inner := s.InTx(ctx, func(ctx context.Context) error {
				if _, _, err := s.PutUser(ctx, store.User{ID: "tx-drop"}, 0); err != nil {
					return err
				}
				// A duplicate e-mail fails a statement inside the inner transaction.
				_, _, err := s.PutUser(ctx, store.User{ID: "tx-dup", Email: "keep@example.org"}, 0)
				return err
			})
			if !errors.Is(inner, store.ErrConflict) {
				return inner
			}
			// The outer transaction goes on after the inner failure.
			_, _, err := s.PutUser(ctx, store.User{ID: "tx-after"}, 0)
			return err
		})
		must(t, err, "outer")
		for id, want := range map[string]error{"tx-keep": nil, "tx-after": nil, "tx-drop": store.ErrNotFound, "tx-dup": store.ErrNotFound} {
			_, err := s.GetUser(ctx, id)
			if want == nil {
				must(t, err, id)
			} else {
				wantErr(t, err, want, id)
			}
		}
	})

	t.Run("an outer transaction survives a failed statement whose error a nested one ignored", func(t *testing.T) {
		err := s.InTx(ctx, func(ctx context.Context) error {
			if _, _, err := s.PutUser(ctx, store.User{ID: "tx-survive-a", Email: "survive@example.org"}, 0); err != nil {
				return err
			}
			// The inner function swallows the failure; on some databases
			// the inner commit then fails instead, which is fine here.
			_ = s.InTx(ctx, func(ctx context.Context) error {
				_, _, _ = s.PutUser(ctx, store.User{ID: "tx-survive-dup", Email: "survive@example.org"}, 0)
				return nil
			})
			_, _, err := s.PutUser(ctx, store.User{ID: "tx-survive-b"}, 0)
			return err
		})
		must(t, err, "outer")
		for _, id := range []string{"tx-survive-a", "tx-survive-b"} {
			_, err := s.GetUser(ctx, id)
			must(t, err, id)
		}
	})

	t.Run("committing without a transaction is an error", func(t *testing.T) {
		if err := s.CommitTx(ctx); err == nil {
			t.Error("commit without a transaction succeeded")
		}
	})

	t.Run("concurrent transactions on one record serialise", func(t *testing.T) {
		_, _, err := s.PutClient(ctx, store.Client{ID: "tx-counter", Doc: []byte("0")}, 0)
		must(t, err, "create")
		errs := race(10, func(int) error {
			for {
				err := s.InTx(ctx, func(ctx context.Context) error {
					c, err := s.GetClient(ctx, "tx-counter")
					if err != nil {
						return err
					}
					c.Doc = append(c.Doc, '+')
					_, _, err = s.PutClient(ctx, c, c.Version)
					return err
				})
				if !errors.Is(err, store.ErrConflict) {
					return err
				}
			}
		})
		for _, err := range errs {
			must(t, err, "increment")
		}
		c, err := s.GetClient(ctx, "tx-counter")
		must(t, err, "get")
		if c.Version != 11 || len(c.Doc) != 11 {
			t.Errorf("after 10 read-modify-write transactions: version %d, doc %q; want version 11 and ten increments", c.Version, c.Doc)
		}
	})
}
