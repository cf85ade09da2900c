package conformance

import (
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
)

func testTwoFactorRequirements(t *testing.T, newStore func(t testing.TB) store.Store) {
	s := newStore(t)
	ctx := ctxb()
	_, _, err := s.PutUser(ctx, store.User{ID: "grace-u1"}, 0)
	must(t, err, "put user")

	t.Run("the first time a second factor was required is kept and returned ever after", func(t *testing.T) {
		got, err := s.MarkTwoFactorRequired(ctx, "grace-u1", base)
		must(t, err, "first mark")
		sameTime(t, "first", got, base)
		got, err = s.MarkTwoFactorRequired(ctx, "grace-u1", base.Add(48*time.Hour))
		must(t, err, "second mark")
		sameTime(t, "second", got, base)
	})

	t.Run("racing first marks store one time that every caller sees", func(t *testing.T) {
		_, _, err := s.PutUser(ctx, store.User{ID: "grace-race"}, 0)
		must(t, err, "put user")
		var wg sync.WaitGroup
		got := make([]time.Time, 8)
		errs := make([]error, 8)
		for i := range got {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got[i], errs[i] = s.MarkTwoFactorRequired(ctx, "grace-race", base.Add(time.Duration(i)*time.Minute))
			}()
		}
		wg.Wait()
		for i := range got {
			must(t, errs[i], "mark")
			sameTime(t, "racing mark", got[i], got[0])
		}
	})

	t.Run("a missing user cannot be marked, and a deleted user's mark goes with it", func(t *testing.T) {
		_, err := s.MarkTwoFactorRequired(ctx, "grace-nobody", base)
		wantErr(t, err, store.ErrNotFound, "mark a missing user")
		must(t, s.DeleteUser(ctx, "grace-u1"), "delete user")
		_, _, err = s.PutUser(ctx, store.User{ID: "grace-u1"}, 0)
		must(t, err, "put the user again")
		got, err := s.MarkTwoFactorRequired(ctx, "grace-u1", base.Add(time.Hour))
		must(t, err, "mark again")
		sameTime(t, "a new user's mark", got, base.Add(time.Hour))
	})
}
