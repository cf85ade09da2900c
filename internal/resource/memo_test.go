package resource

import (
	"context"
	"errors"
	"testing"

	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

func TestRequestMemo(t *testing.T) {
	st := gormstoretest.OpenSQLite(t)
	ctx := context.Background()
	putClient := func(t *testing.T, c Client) {
		t.Helper()
		rec, err := ToStoreClient(c, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := st.PutClient(ctx, rec, 0); err != nil {
			t.Fatal(err)
		}
	}
	putAuthConfig := func(t *testing.T, id, issuer string) {
		t.Helper()
		rec, err := ToStoreAuthConfig(AuthConfig{ID: id, TwoFactor: &AuthConfigTwoFactor{IssuerName: issuer}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := st.PutAuthConfig(ctx, rec, 0); err != nil {
			t.Fatal(err)
		}
	}
	statements := func(fn func()) int64 {
		before := st.Statements()
		fn()
		return st.Statements() - before
	}
	putClient(t, Client{ID: "app", Name: "First"})
	putAuthConfig(t, "default", "first")

	t.Run("one request reads a client and resolves its AuthConfig once", func(t *testing.T) {
		req := WithRequestMemo(ctx)
		n := statements(func() {
			for range 3 {
				sc, err := FetchClient(req, st, "app")
				if err != nil || sc.Client.Name != "First" || sc.Record.ID != "app" {
					t.Fatalf("FetchClient = %+v, %v", sc, err)
				}
				a, err := ResolveAuthConfig(req, st, sc.Client)
				if err != nil || a.Issuer() != "first" {
					t.Fatalf("ResolveAuthConfig = %+v, %v", a, err)
				}
			}
		})
		if n != 2 {
			t.Errorf("%d statements, want 2", n)
		}
	})

	t.Run("a missing client is remembered as missing", func(t *testing.T) {
		req := WithRequestMemo(ctx)
		n := statements(func() {
			for range 2 {
				if _, err := FetchClient(req, st, "ghost"); !errors.Is(err, store.ErrNotFound) {
					t.Fatalf("err = %v, want ErrNotFound", err)
				}
			}
		})
		if n != 1 {
			t.Errorf("%d statements, want 1", n)
		}
	})

	t.Run("without a memo every call reads", func(t *testing.T) {
		n := statements(func() {
			for range 2 {
				if _, err := FetchClient(ctx, st, "app"); err != nil {
					t.Fatal(err)
				}
			}
		})
		if n != 2 {
			t.Errorf("%d statements, want 2", n)
		}
	})

	t.Run("the next request sees a change", func(t *testing.T) {
		first := WithRequestMemo(ctx)
		if _, err := FetchClient(first, st, "app"); err != nil {
			t.Fatal(err)
		}
		if _, err := ResolveAuthConfig(first, st, Client{ID: "app"}); err != nil {
			t.Fatal(err)
		}
		putClient(t, Client{ID: "app", Name: "Second"})
		putAuthConfig(t, "default", "second")
		next := WithRequestMemo(ctx)
		sc, err := FetchClient(next, st, "app")
		if err != nil || sc.Client.Name != "Second" {
			t.Errorf("next request's client = %+v, %v", sc.Client, err)
		}
		a, err := ResolveAuthConfig(next, st, sc.Client)
		if err != nil || a.Issuer() != "second" {
			t.Errorf("next request's AuthConfig issuer = %q, %v", a.Issuer(), err)
		}
	})

	t.Run("a caller changing its copy leaves the memo alone", func(t *testing.T) {
		req := WithRequestMemo(ctx)
		a, err := ResolveAuthConfig(req, st, Client{ID: "app"})
		if err != nil {
			t.Fatal(err)
		}
		a.TwoFactor.IssuerName = "changed"
		again, err := ResolveAuthConfig(req, st, Client{ID: "app"})
		if err != nil || again.Issuer() != "second" {
			t.Errorf("issuer after a caller's change = %q, %v", again.Issuer(), err)
		}
	})

	t.Run("installing a memo twice keeps the first", func(t *testing.T) {
		req := WithRequestMemo(ctx)
		if WithRequestMemo(req) != req {
			t.Error("a second WithRequestMemo replaced the request's memo")
		}
	})
}
