package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/gatehouse/gatehouse/internal/store"
)

// versionedAPI adapts one versioned resource type to common tests.
type versionedAPI struct {
	name string
	put  func(ctx context.Context, s store.Store, id string, doc []byte, ifVersion int64) (store.User, bool, error)
	get  func(ctx context.Context, s store.Store, id string) (store.User, error)
	list func(ctx context.Context, s store.Store, p store.Page) ([]store.User, int, error)
	del  func(ctx context.Context, s store.Store, id string) error
}

// The adapters carry every resource in a store.User, which has the common
// fields (ID, Doc, Version, CreatedAt, UpdatedAt).
var versionedAPIs = []versionedAPI{
	{
		name: "user",
		put: func(ctx context.Context, s store.Store, id string, doc []byte, v int64) (store.User, bool, error) {
			return s.PutUser(ctx, store.User{ID: id, Doc: doc}, v)
		},
		get: func(ctx context.Context, s store.Store, id string) (store.User, error) { return s.GetUser(ctx, id) },
		list: func(ctx context.Context, s store.Store, p store.Page) ([]store.User, int, error) {
			return s.ListUsers(ctx, p)
		},
		del: func(ctx context.Context, s store.Store, id string) error { return s.DeleteUser(ctx, id) },
	},
	{
		name: "client",
		put: func(ctx context.Context, s store.Store, id string, doc []byte, v int64) (store.User, bool, error) {
			c, created, err := s.PutClient(ctx, store.Client{ID: id, Doc: doc}, v)
			return clientAsUser(c), created, err
		},
		get: func(ctx context.Context, s store.Store, id string) (store.User, error) {
			c, err := s.GetClient(ctx, id)
			return clientAsUser(c), err
		},
		list: func(ctx context.Context, s store.Store, p store.Page) ([]store.User, int, error) {
			cs, n, err := s.ListClients(ctx, p)
			out := make([]store.User, len(cs))
			for i, c := range cs {
				out[i] = clientAsUser(c)
			}
			return out, n, err
		},
		del: func(ctx context.Context, s store.Store, id string) error { return s.DeleteClient(ctx, id) },
	},
	{
		name: "auth config",
		put: func(ctx context.Context, s store.Store, id string, doc []byte, v int64) (store.User, bool, error) {
			a, created, err := s.PutAuthConfig(ctx, store.AuthConfig{ID: id, Doc: doc}, v)
			return authConfigAsUser(a), created, err
		},
		get: func(ctx context.Context, s store.Store, id string) (store.User, error) {
			a, err := s.GetAuthConfig(ctx, id)
			return authConfigAsUser(a), err
		},
		list: func(ctx context.Context, s store.Store, p store.Page) ([]store.User, int, error) {
			as, n, err := s.ListAuthConfigs(ctx, p)
			out := make([]store.User, len(as))
			for i, a := range as {
				out[i] = authConfigAsUser(a)
			}
			return out, n, err
		},
		del: func(ctx context.Context, s store.Store, id string) error { return s.DeleteAuthConfig(ctx, id) },
	},
}

func clientAsUser(c store.Client) store.User {
	return store.User{ID: c.ID, Doc: c.Doc, Version: c.Version, CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt}
}

func authConfigAsUser(a store.AuthConfig) store.User {
	return store.User{ID: a.ID, Doc: a.Doc, Version: a.Version, CreatedAt: a.CreatedAt, UpdatedAt: a.UpdatedAt}
}

func testResources(t *testing.T, newStore func(t testing.TB) store.Store) {
	for _, api := range versionedAPIs {
		t.Run(api.name+"s", func(t *testing.T) {
			s := newStore(t)
			ctx := ctxb()

			t.Run("a new record is created at version 1 with UTC timestamps", func(t *testing.T) {
				got, created, err := api.put(ctx, s, "new-1", []byte(`{"a":1}`), 0)
				must(t, err, "put")
				if !created || got.Version != 1 || got.ID != "new-1" {
					t.Fatalf("put = (%+v, created %v), want version 1, created", got, created)
				}
				if got.CreatedAt.IsZero() || !got.CreatedAt.Equal(got.UpdatedAt) {
					t.Errorf("created %v, updated %v: want both set and equal", got.CreatedAt, got.UpdatedAt)
				}
				wantUTC(t, "put", got.CreatedAt, got.UpdatedAt)
				read, err := api.get(ctx, s, "new-1")
				must(t, err, "get")
				if !bytes.Equal(read.Doc, []byte(`{"a":1}`)) || read.Version != 1 {
					t.Errorf("get = %+v, want the stored document at version 1", read)
				}
				sameTime(t, "created", read.CreatedAt, got.CreatedAt)
				sameTime(t, "updated", read.UpdatedAt, got.UpdatedAt)
			})

			t.Run("putting without a version replaces the record and bumps the version", func(t *testing.T) {
				first, _, err := api.put(ctx, s, "replace-1", []byte(`{"v":1}`), 0)
				must(t, err, "first put")
				second, created, err := api.put(ctx, s, "replace-1", []byte(`{"v":2}`), 0)
				must(t, err, "second put")
				if created || second.Version != 2 {
					t.Fatalf("second put: created %v, version %d; want replaced at version 2", created, second.Version)
				}
				sameTime(t, "created at is kept", second.CreatedAt, first.CreatedAt)
				if second.UpdatedAt.Before(first.UpdatedAt) {
					t.Errorf("updated at went back: %v then %v", first.UpdatedAt, second.UpdatedAt)
				}
				read, err := api.get(ctx, s, "replace-1")
				must(t, err, "get")
				if string(read.Doc) != `{"v":2}` || read.Version != 2 {
					t.Errorf("get = %q at version %d, want the second document at version 2", read.Doc, read.Version)
				}
			})

			t.Run("a put with the stored version succeeds and a stale one is a conflict", func(t *testing.T) {
				_, _, err := api.put(ctx, s, "cas-1", []byte(`{"v":1}`), 0)
				must(t, err, "create")
				got, created, err := api.put(ctx, s, "cas-1", []byte(`{"v":2}`), 1)
				must(t, err, "put with version 1")
				if created || got.Version != 2 {
					t.Fatalf("put with version 1: created %v version %d, want updated to 2", created, got.Version)
				}
				_, _, err = api.put(ctx, s, "cas-1", []byte(`{"v":3}`), 1)
				wantErr(t, err, store.ErrConflict, "put with stale version 1")
				read, err := api.get(ctx, s, "cas-1")
				must(t, err, "get")
				if string(read.Doc) != `{"v":2}` || read.Version != 2 {
					t.Errorf("after a stale put the record is %q at version %d, want it unchanged", read.Doc, read.Version)
				}
			})

			t.Run("a put with a version on a missing record is a conflict and creates nothing", func(t *testing.T) {
				_, _, err := api.put(ctx, s, "missing-cas", []byte(`{}`), 3)
				wantErr(t, err, store.ErrConflict, "put with version on missing")
				_, err = api.get(ctx, s, "missing-cas")
				wantErr(t, err, store.ErrNotFound, "get after refused put")
			})

			t.Run("getting and deleting a missing record is not found", func(t *testing.T) {
				_, err := api.get(ctx, s, "does-not-exist")
				wantErr(t, err, store.ErrNotFound, "get")
				wantErr(t, api.del(ctx, s, "does-not-exist"), store.ErrNotFound, "delete")
			})

			t.Run("a deleted record is gone and can be created again", func(t *testing.T) {
				_, _, err := api.put(ctx, s, "del-1", []byte(`{}`), 0)
				must(t, err, "create")
				must(t, api.del(ctx, s, "del-1"), "delete")
				_, err = api.get(ctx, s, "del-1")
				wantErr(t, err, store.ErrNotFound, "get after delete")
				again, created, err := api.put(ctx, s, "del-1", []byte(`{}`), 0)
				must(t, err, "create again")
				if !created || again.Version != 1 {
					t.Errorf("re-create: created %v version %d, want created at version 1", created, again.Version)
				}
			})

			t.Run("of many concurrent puts with the same version exactly one wins", func(t *testing.T) {
				_, _, err := api.put(ctx, s, "race-cas", []byte(`{}`), 0)
				must(t, err, "create")
				errs := race(20, func(i int) error {
					_, _, err := api.put(ctx, s, "race-cas", fmt.Appendf(nil, `{"writer":%d}`, i), 1)
					return err
				})
				wins, losses := tally(t, errs, store.ErrConflict)
				if wins != 1 || losses != 19 {
					t.Fatalf("%d wins and %d conflicts, want 1 and 19", wins, losses)
				}
				read, err := api.get(ctx, s, "race-cas")
				must(t, err, "get")
				if read.Version != 2 {
					t.Errorf("version %d after one winning update, want 2", read.Version)
				}
			})

			t.Run("of many concurrent creates of one id exactly one reports created", func(t *testing.T) {
				var createdCount [20]bool
				errs := race(20, func(i int) error {
					_, created, err := api.put(ctx, s, "race-create", fmt.Appendf(nil, `{"writer":%d}`, i), 0)
					createdCount[i] = created
					return err
				})
				for i, err := range errs {
					must(t, err, fmt.Sprintf("put %d", i))
				}
				n := 0
				for _, c := range createdCount {
					if c {
						n++
					}
				}
				if n != 1 {
					t.Fatalf("%d puts reported created, want 1", n)
				}
				read, err := api.get(ctx, s, "race-create")
				must(t, err, "get")
				if read.Version != 20 {
					t.Errorf("version %d after 20 puts, want 20", read.Version)
				}
			})
		})
	}

	for _, api := range versionedAPIs {
		t.Run(api.name+" listings page through records in id order with the total", func(t *testing.T) {
			s := newStore(t)
			ctx := ctxb()
			ids := []string{"e", "b", "d", "a", "c"}
			for _, id := range ids {
				_, _, err := api.put(ctx, s, id, []byte(`{}`), 0)
				must(t, err, "create "+id)
			}
			cases := []struct {
				name  string
				page  store.Page
				want  []string
				total int
			}{
				{"the first page", store.Page{Count: 2, Page: 1}, []string{"a", "b"}, 5},
				{"the second page", store.Page{Count: 2, Page: 2}, []string{"c", "d"}, 5},
				{"the last, partial page", store.Page{Count: 2, Page: 3}, []string{"e"}, 5},
				{"a page past the end", store.Page{Count: 2, Page: 4}, nil, 5},
				{"page zero as the first page", store.Page{Count: 3, Page: 0}, []string{"a", "b", "c"}, 5},
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					got, total, err := api.list(ctx, s, c.page)
					must(t, err, "list")
					var gotIDs []string
					for _, r := range got {
						gotIDs = append(gotIDs, r.ID)
						wantUTC(t, "listed "+r.ID, r.CreatedAt, r.UpdatedAt)
					}
					if !sameStrings(gotIDs, c.want) || total != c.total {
						t.Errorf("list %+v = %v (total %d), want %v (total %d)", c.page, gotIDs, total, c.want, c.total)
					}
				})
			}
		})
	}

	t.Run("finding an auth config prefers the named one, else takes the only one", func(t *testing.T) {
		s := newStore(t)
		ctx := ctxb()
		find := func(t *testing.T, id string) string {
			t.Helper()
			a, err := s.FindAuthConfig(ctx, id)
			if errors.Is(err, store.ErrNotFound) {
				return "(none)"
			}
			must(t, err, "find "+id)
			return a.ID
		}
		put := func(t *testing.T, id string) {
			t.Helper()
			_, _, err := s.PutAuthConfig(ctx, store.AuthConfig{ID: id, Doc: []byte(`{"id":"` + id + `"}`)}, 0)
			must(t, err, "put "+id)
		}
		steps := []struct {
			name string
			put  string
			want string
		}{
			{"an empty table finds nothing", "", "(none)"},
			{"a sole other one is found", "zeta", "zeta"},
			{"two others without the named one find nothing", "alpha", "(none)"},
			{"the named one wins over the others", "default", "default"},
		}
		for _, st := range steps {
			t.Run(st.name, func(t *testing.T) {
				if st.put != "" {
					put(t, st.put)
				}
				if got := find(t, "default"); got != st.want {
					t.Errorf("FindAuthConfig(default) = %s, want %s", got, st.want)
				}
			})
		}
		a, err := s.FindAuthConfig(ctx, "default")
		must(t, err, "find default")
		if string(a.Doc) != `{"id":"default"}` || a.Version != 1 {
			t.Errorf("found %+v, want the whole record", a)
		}
		wantUTC(t, "found", a.CreatedAt, a.UpdatedAt)
		must(t, s.DeleteAuthConfig(ctx, "alpha"), "delete alpha")
		must(t, s.DeleteAuthConfig(ctx, "default"), "delete default")
		if got := find(t, "default"); got != "zeta" {
			t.Errorf("after deleting the others FindAuthConfig(default) = %s, want zeta", got)
		}
	})

	t.Run("an empty store lists nothing with a zero total", func(t *testing.T) {
		s := newStore(t)
		for _, api := range versionedAPIs {
			got, total, err := api.list(ctxb(), s, store.Page{Count: 10, Page: 1})
			must(t, err, "list "+api.name)
			if len(got) != 0 || total != 0 {
				t.Errorf("%s list = %d records, total %d; want none", api.name, len(got), total)
			}
		}
	})
}
