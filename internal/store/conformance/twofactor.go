package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
)

// staleLock is the lock a reservation left at the limit stands for.
const staleLock = 5 * time.Minute

func testTwoFactor(t *testing.T, newStore func(t testing.TB) store.Store) {
	s := newStore(t)
	ctx := ctxb()
	now := base

	enrol := func(t *testing.T, uid string) {
		t.Helper()
		seedUser(t, s, uid)
		must(t, s.PutTwoFactor(ctx, store.TwoFactor{UserID: uid, Method: "totp", Enabled: true, Secret: []byte("sealed-seed"), LastStep: 100, EnrolledAt: now}), "enrol")
	}

	t.Run("a missing factor is not found everywhere", func(t *testing.T) {
		_, err := s.GetTwoFactor(ctx, "nobody")
		wantErr(t, err, store.ErrNotFound, "get")
		wantErr(t, s.AdvanceTOTPStep(ctx, "nobody", 5), store.ErrNotFound, "advance")
		_, err = s.ReserveFactorAttempt(ctx, "nobody", now, 5, staleLock)
		wantErr(t, err, store.ErrNotFound, "reserve")
		wantErr(t, s.ClearFactorFailures(ctx, "nobody"), store.ErrNotFound, "clear")
		wantErr(t, s.LockFactor(ctx, "nobody", now), store.ErrNotFound, "lock")
		wantErr(t, s.DeleteTwoFactor(ctx, "nobody"), store.ErrNotFound, "delete")
	})

	t.Run("enabling writes over a disabled factor and never over an enabled one", func(t *testing.T) {
		seedUser(t, s, "en")
		must(t, s.PutTwoFactor(ctx, store.TwoFactor{UserID: "en", Method: "none", Enabled: false}), "marker")
		must(t, s.EnableTwoFactor(ctx, store.TwoFactor{UserID: "en", Method: "totp", Enabled: true, Secret: []byte("first"), LastStep: 3}), "enable over the marker")
		wantErr(t, s.EnableTwoFactor(ctx, store.TwoFactor{UserID: "en", Method: "sms", Enabled: true, Destination: "+15550002222"}), store.ErrConflict, "enable again")
		got, err := s.GetTwoFactor(ctx, "en")
		must(t, err, "get")
		if got.Method != "totp" || !bytes.Equal(got.Secret, []byte("first")) || got.LastStep != 3 {
			t.Errorf("after a refused enable = %+v, want the first factor", got)
		}
		seedUser(t, s, "en-new")
		must(t, s.EnableTwoFactor(ctx, store.TwoFactor{UserID: "en-new", Method: "totp", Enabled: true, Secret: []byte("s")}), "enable without a record")
		wantErr(t, s.EnableTwoFactor(ctx, store.TwoFactor{UserID: "nobody", Method: "totp", Enabled: true}), store.ErrNotFound, "enable for a missing user")
	})

	t.Run("of enables racing each other exactly one is written", func(t *testing.T) {
		for round := range 3 {
			uid := fmt.Sprintf("en-race-%d", round)
			seedUser(t, s, uid)
			const n = 8
			errs := make([]error, n)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range n {
				wg.Go(func() {
					<-start
					errs[i] = s.EnableTwoFactor(ctx, store.TwoFactor{UserID: uid, Method: "totp", Enabled: true, Secret: []byte{byte(i)}})
				})
			}
			close(start)
			wg.Wait()
			winner := -1
			for i, err := range errs {
				switch {
				case err == nil && winner >= 0:
					t.Fatalf("round %d: enables %d and %d both succeeded", round, winner, i)
				case err == nil:
					winner = i
				case !errors.Is(err, store.ErrConflict):
					t.Fatalf("round %d: enable %d: %v, want ErrConflict", round, i, err)
				}
			}
			got, err := s.GetTwoFactor(ctx, uid)
			must(t, err, "get")
			if winner < 0 || !bytes.Equal(got.Secret, []byte{byte(winner)}) {
				t.Fatalf("round %d: stored secret %v, winner %d", round, got.Secret, winner)
			}
		}
	})

	t.Run("a factor round-trips and a put replaces it", func(t *testing.T) {
		seedUser(t, s, "rt")
		in := store.TwoFactor{UserID: "rt", Method: "sms", Enabled: false, Destination: "+15550001111", EnrolledAt: now, Failures: 2, Lockouts: 1, LockedUntil: now.Add(time.Minute)}
		must(t, s.PutTwoFactor(ctx, in), "put")
		got, err := s.GetTwoFactor(ctx, "rt")
		must(t, err, "get")
		if got.Method != "sms" || got.Enabled || got.Destination != in.Destination || got.Failures != 2 || got.Lockouts != 1 || len(got.Secret) != 0 {
			t.Errorf("get = %+v", got)
		}
		sameTime(t, "enrolled", got.EnrolledAt, now)
		sameTime(t, "locked until", got.LockedUntil, now.Add(time.Minute))
		wantUTC(t, "updated", got.UpdatedAt)

		must(t, s.PutTwoFactor(ctx, store.TwoFactor{UserID: "rt", Method: "totp", Enabled: true, Secret: []byte("seed"), LastStep: 7, EnrolledAt: now.Add(time.Hour)}), "replace")
		got, err = s.GetTwoFactor(ctx, "rt")
		must(t, err, "get replaced")
		if got.Method != "totp" || !got.Enabled || !bytes.Equal(got.Secret, []byte("seed")) || got.LastStep != 7 ||
			got.Destination != "" || got.Failures != 0 || got.Lockouts != 0 || !got.LockedUntil.IsZero() {
			t.Errorf("replaced = %+v", got)
		}
	})

	t.Run("ensure gives a user without a factor a disabled record to count on and leaves a real one alone", func(t *testing.T) {
		seedUser(t, s, "ensure-none")
		must(t, s.EnsureTwoFactor(ctx, "ensure-none"), "ensure")
		must(t, s.EnsureTwoFactor(ctx, "ensure-none"), "ensure again")
		got, err := s.GetTwoFactor(ctx, "ensure-none")
		must(t, err, "get")
		if got.Enabled || got.Method != store.MethodNone || len(got.Secret) != 0 || got.Failures != 0 {
			t.Errorf("ensured = %+v", got)
		}
		att, err := s.ReserveFactorAttempt(ctx, "ensure-none", now, 5, staleLock)
		must(t, err, "reserve")
		if !att.Allowed || att.Failures != 1 {
			t.Errorf("reserve = %+v", att)
		}
		enrol(t, "ensure-real")
		must(t, s.EnsureTwoFactor(ctx, "ensure-real"), "ensure real")
		got, err = s.GetTwoFactor(ctx, "ensure-real")
		must(t, err, "get real")
		if !got.Enabled || got.Method != "totp" || !bytes.Equal(got.Secret, []byte("sealed-seed")) {
			t.Errorf("ensure changed a real factor: %+v", got)
		}
	})

	t.Run("the totp step only moves forward", func(t *testing.T) {
		enrol(t, "steps")
		cases := []struct {
			step int64
			want error
		}{
			{101, nil},
			{101, store.ErrConflict}, // the same step again: a replay
			{100, store.ErrConflict}, // an older step
			{105, nil},
			{103, store.ErrConflict},
		}
		for _, c := range cases {
			err := s.AdvanceTOTPStep(ctx, "steps", c.step)
			if c.want == nil {
				must(t, err, fmt.Sprint("advance to ", c.step))
			} else {
				wantErr(t, err, c.want, fmt.Sprint("advance to ", c.step))
			}
		}
		got, err := s.GetTwoFactor(ctx, "steps")
		must(t, err, "get")
		if got.LastStep != 105 {
			t.Errorf("last step %d, want 105", got.LastStep)
		}
	})

	t.Run("of 50 concurrent uses of one step exactly one is accepted", func(t *testing.T) {
		enrol(t, "replay")
		errs := race(50, func(int) error { return s.AdvanceTOTPStep(ctx, "replay", 200) })
		wins, losses := tally(t, errs, store.ErrConflict)
		if wins != 1 || losses != 49 {
			t.Fatalf("%d accepted and %d refused, want 1 and 49", wins, losses)
		}
	})

	t.Run("accepting a totp step advances it and clears the failures; a replay keeps them", func(t *testing.T) {
		enrol(t, "accept")
		for range 2 {
			a, err := s.ReserveFactorAttempt(ctx, "accept", now, 5, staleLock)
			must(t, err, "reserve")
			if !a.Allowed {
				t.Fatalf("reservation refused: %+v", a)
			}
		}
		must(t, s.LockFactor(ctx, "accept", now.Add(-time.Minute)), "an old lockout")
		_, err := s.ReserveFactorAttempt(ctx, "accept", now, 5, staleLock)
		must(t, err, "reserve after the lock")
		must(t, s.AcceptTOTPStep(ctx, "accept", 101), "accept")
		got, err := s.GetTwoFactor(ctx, "accept")
		must(t, err, "get")
		if got.LastStep != 101 || got.Failures != 0 || got.Lockouts != 0 {
			t.Errorf("after accepting: step %d, failures %d, lockouts %d; want 101, 0, 0", got.LastStep, got.Failures, got.Lockouts)
		}

		_, err = s.ReserveFactorAttempt(ctx, "accept", now, 5, staleLock)
		must(t, err, "reserve again")
		wantErr(t, s.AcceptTOTPStep(ctx, "accept", 101), store.ErrConflict, "the same step again")
		got, err = s.GetTwoFactor(ctx, "accept")
		must(t, err, "get")
		if got.LastStep != 101 || got.Failures != 1 {
			t.Errorf("after a replay: step %d, failures %d; want 101 and the reservation kept", got.LastStep, got.Failures)
		}
		wantErr(t, s.AcceptTOTPStep(ctx, "nobody", 5), store.ErrNotFound, "a missing factor")
		errs := race(50, func(int) error { return s.AcceptTOTPStep(ctx, "accept", 300) })
		if wins, losses := tally(t, errs, store.ErrConflict); wins != 1 || losses != 49 {
			t.Fatalf("%d accepted and %d refused, want 1 and 49", wins, losses)
		}
	})

	t.Run("attempts are allowed up to the limit and counted", func(t *testing.T) {
		enrol(t, "attempts")
		for i := 1; i <= 3; i++ {
			a, err := s.ReserveFactorAttempt(ctx, "attempts", now, 3, staleLock)
			must(t, err, "reserve")
			if !a.Allowed || a.Failures != i {
				t.Fatalf("attempt %d = %+v, want allowed with %d failures", i, a, i)
			}
		}
		a, err := s.ReserveFactorAttempt(ctx, "attempts", now, 3, staleLock)
		must(t, err, "reserve over the limit")
		if a.Allowed || a.Failures != 3 {
			t.Errorf("attempt over the limit = %+v, want refused at 3 failures", a)
		}
		sameTime(t, "refused until", a.LockedUntil, now.Add(staleLock))
	})

	t.Run("of 100 concurrent reservations with limit 5 exactly 5 are allowed", func(t *testing.T) {
		enrol(t, "burst")
		allowed := make([]bool, 100)
		errs := race(100, func(i int) error {
			a, err := s.ReserveFactorAttempt(ctx, "burst", now, 5, staleLock)
			allowed[i] = a.Allowed
			return err
		})
		n := 0
		for i, err := range errs {
			must(t, err, fmt.Sprint("reserve ", i))
			if allowed[i] {
				n++
			}
		}
		if n != 5 {
			t.Fatalf("%d attempts allowed, want 5", n)
		}
		got, err := s.GetTwoFactor(ctx, "burst")
		must(t, err, "get")
		if got.Failures != 5 {
			t.Errorf("failures %d, want 5", got.Failures)
		}
	})

	t.Run("a reservation left at the limit stands as a lock from the latest reservation, then a new series starts", func(t *testing.T) {
		// The process holding the last attempt died: no lock, no clear.
		enrol(t, "stale")
		for i := range 5 {
			at := now.Add(time.Duration(i) * time.Minute) // the 5th at now+4m
			a, err := s.ReserveFactorAttempt(ctx, "stale", at, 5, staleLock)
			must(t, err, "reserve")
			if !a.Allowed {
				t.Fatalf("attempt %d refused", i+1)
			}
		}
		last := now.Add(4 * time.Minute)
		for _, at := range []time.Time{last, last.Add(time.Minute), last.Add(staleLock - time.Microsecond)} {
			a, err := s.ReserveFactorAttempt(ctx, "stale", at, 5, staleLock)
			must(t, err, "reserve during the stale lock")
			if a.Allowed || a.Failures != 5 {
				t.Fatalf("attempt at %v = %+v, want refused at 5 failures", at.Sub(last), a)
			}
			sameTime(t, "refused until", a.LockedUntil, last.Add(staleLock))
		}

		a, err := s.ReserveFactorAttempt(ctx, "stale", last.Add(staleLock), 5, staleLock)
		must(t, err, "reserve when the stale lock ends")
		if !a.Allowed || a.Failures != 1 {
			t.Fatalf("attempt at the end of the stale lock = %+v, want allowed as the first of a new series", a)
		}
		got, err := s.GetTwoFactor(ctx, "stale")
		must(t, err, "get")
		if got.Lockouts != 1 || got.Failures != 1 || !got.LockedUntil.IsZero() {
			t.Errorf("after the stale lock = %+v, want one lockout counted, one failure, no lock", got)
		}
		for i := 2; i <= 5; i++ {
			a, err := s.ReserveFactorAttempt(ctx, "stale", last.Add(staleLock), 5, staleLock)
			must(t, err, "reserve")
			if !a.Allowed || a.Failures != i {
				t.Fatalf("attempt %d of the new series = %+v", i, a)
			}
		}
		a, err = s.ReserveFactorAttempt(ctx, "stale", last.Add(staleLock), 5, staleLock)
		must(t, err, "reserve over the limit of the new series")
		if a.Allowed {
			t.Fatal("a sixth attempt of the new series was allowed")
		}
	})

	t.Run("of 100 concurrent reservations on an expired stale reservation exactly 5 are allowed", func(t *testing.T) {
		enrol(t, "stale-burst")
		for range 5 {
			_, err := s.ReserveFactorAttempt(ctx, "stale-burst", now, 5, staleLock)
			must(t, err, "reserve")
		}
		at := now.Add(staleLock + time.Minute)
		allowed := make([]bool, 100)
		errs := race(100, func(i int) error {
			a, err := s.ReserveFactorAttempt(ctx, "stale-burst", at, 5, staleLock)
			allowed[i] = a.Allowed
			return err
		})
		n := 0
		for i, err := range errs {
			must(t, err, fmt.Sprint("reserve ", i))
			if allowed[i] {
				n++
			}
		}
		if n != 5 {
			t.Fatalf("%d attempts allowed, want 5", n)
		}
		got, err := s.GetTwoFactor(ctx, "stale-burst")
		must(t, err, "get")
		if got.Failures != 5 || got.Lockouts != 1 {
			t.Errorf("failures %d and lockouts %d, want 5 and 1 (the stale lock counted once)", got.Failures, got.Lockouts)
		}
	})

	t.Run("a lock written by the last attempt outlasts the stale-reservation rule", func(t *testing.T) {
		enrol(t, "real-lock")
		for range 5 {
			_, err := s.ReserveFactorAttempt(ctx, "real-lock", now, 5, staleLock)
			must(t, err, "reserve")
		}
		until := now.Add(2 * staleLock)
		must(t, s.LockFactor(ctx, "real-lock", until), "lock")
		a, err := s.ReserveFactorAttempt(ctx, "real-lock", now.Add(staleLock), 5, staleLock)
		must(t, err, "reserve after the stale period, inside the lock")
		if a.Allowed {
			t.Fatal("an attempt was allowed during the lock")
		}
		sameTime(t, "refused until", a.LockedUntil, until)
	})

	t.Run("a factor stored at the limit before reservations were timed is judged by its last update", func(t *testing.T) {
		// The shape such rows have in databases written by earlier releases:
		// Failures at the limit, no lock, no reservation time. The update
		// time is the store's clock, so this case uses the real one.
		seedUser(t, s, "legacy")
		before := time.Now()
		must(t, s.PutTwoFactor(ctx, store.TwoFactor{UserID: "legacy", Method: "totp", Enabled: true, Secret: []byte("s"), Failures: 5}), "put")
		after := time.Now()
		a, err := s.ReserveFactorAttempt(ctx, "legacy", after, 5, staleLock)
		must(t, err, "reserve now")
		if a.Allowed {
			t.Fatal("an attempt was allowed right after the row was left at the limit")
		}
		if a.LockedUntil.Before(before.Add(staleLock).Truncate(time.Microsecond)) || a.LockedUntil.After(after.Add(staleLock)) {
			t.Errorf("refused until %v, want the update time plus %s (%v to %v)", a.LockedUntil, staleLock, before.Add(staleLock), after.Add(staleLock))
		}
		a, err = s.ReserveFactorAttempt(ctx, "legacy", after.Add(staleLock), 5, staleLock)
		must(t, err, "reserve after the stale lock")
		if !a.Allowed || a.Failures != 1 {
			t.Errorf("attempt after the stale lock = %+v, want allowed as the first failure", a)
		}
	})

	t.Run("a reservation without a positive stale lock is refused", func(t *testing.T) {
		enrol(t, "no-stale")
		for _, d := range []time.Duration{0, -time.Minute} {
			a, err := s.ReserveFactorAttempt(ctx, "no-stale", now, 5, d)
			if err == nil || errors.Is(err, store.ErrNotFound) || a.Allowed {
				t.Errorf("stale lock %s: %+v, %v; want an error", d, a, err)
			}
		}
		got, err := s.GetTwoFactor(ctx, "no-stale")
		must(t, err, "get")
		if got.Failures != 0 {
			t.Errorf("a refused call counted %d failures", got.Failures)
		}
	})

	t.Run("a lock refuses attempts until it ends and counts the lockout", func(t *testing.T) {
		enrol(t, "locked")
		for range 2 {
			_, err := s.ReserveFactorAttempt(ctx, "locked", now, 5, staleLock)
			must(t, err, "reserve")
		}
		until := now.Add(10 * time.Minute)
		must(t, s.LockFactor(ctx, "locked", until), "lock")
		got, err := s.GetTwoFactor(ctx, "locked")
		must(t, err, "get")
		if got.Failures != 0 || got.Lockouts != 1 {
			t.Errorf("after lock = %+v, want failures reset and one lockout", got)
		}
		sameTime(t, "locked until", got.LockedUntil, until)

		a, err := s.ReserveFactorAttempt(ctx, "locked", now.Add(time.Minute), 5, staleLock)
		must(t, err, "reserve while locked")
		if a.Allowed {
			t.Fatal("an attempt was allowed during the lock")
		}
		sameTime(t, "reported lock", a.LockedUntil, until)

		a, err = s.ReserveFactorAttempt(ctx, "locked", until, 5, staleLock)
		must(t, err, "reserve when the lock ends")
		if !a.Allowed || a.Failures != 1 {
			t.Errorf("attempt at the end of the lock = %+v, want allowed as the first failure", a)
		}

		must(t, s.LockFactor(ctx, "locked", until.Add(time.Hour)), "second lock")
		got, err = s.GetTwoFactor(ctx, "locked")
		must(t, err, "get")
		if got.Lockouts != 2 {
			t.Errorf("lockouts %d after a second lock, want 2", got.Lockouts)
		}
	})

	t.Run("clearing after a success resets failures and lockouts", func(t *testing.T) {
		enrol(t, "cleared")
		for range 3 {
			_, err := s.ReserveFactorAttempt(ctx, "cleared", now, 5, staleLock)
			must(t, err, "reserve")
		}
		must(t, s.LockFactor(ctx, "cleared", now.Add(-time.Second)), "a lock already over")
		_, err := s.ReserveFactorAttempt(ctx, "cleared", now, 5, staleLock)
		must(t, err, "reserve")
		must(t, s.ClearFactorFailures(ctx, "cleared"), "clear")
		got, err := s.GetTwoFactor(ctx, "cleared")
		must(t, err, "get")
		if got.Failures != 0 || got.Lockouts != 0 {
			t.Errorf("after clear = %+v", got)
		}
		for i := 1; i <= 5; i++ {
			a, err := s.ReserveFactorAttempt(ctx, "cleared", now, 5, staleLock)
			must(t, err, "reserve after clear")
			if !a.Allowed {
				t.Fatalf("attempt %d after clear refused", i)
			}
		}
	})

	t.Run("releasing an attempt gives one reservation back, never below zero, and leaves a lock alone", func(t *testing.T) {
		enrol(t, "released")
		for range 3 {
			_, err := s.ReserveFactorAttempt(ctx, "released", now, 5, staleLock)
			must(t, err, "reserve")
		}
		must(t, s.ReleaseFactorAttempt(ctx, "released"), "release")
		got, err := s.GetTwoFactor(ctx, "released")
		must(t, err, "get")
		if got.Failures != 2 {
			t.Errorf("failures %d after three reservations and a release, want 2", got.Failures)
		}
		errs := race(10, func(int) error { return s.ReleaseFactorAttempt(ctx, "released") })
		if wins, _ := tally(t, errs, store.ErrConflict); wins != 10 {
			t.Fatalf("%d of 10 releases succeeded", wins)
		}
		got, err = s.GetTwoFactor(ctx, "released")
		must(t, err, "get")
		if got.Failures != 0 {
			t.Errorf("failures %d after more releases than reservations, want 0", got.Failures)
		}
		until := now.Add(time.Minute)
		must(t, s.LockFactor(ctx, "released", until), "lock")
		must(t, s.ReleaseFactorAttempt(ctx, "released"), "release during a lock")
		got, err = s.GetTwoFactor(ctx, "released")
		must(t, err, "get")
		sameTime(t, "locked until", got.LockedUntil, until)
		if got.Lockouts != 1 {
			t.Errorf("lockouts %d, want 1", got.Lockouts)
		}
		wantErr(t, s.ReleaseFactorAttempt(ctx, "nobody"), store.ErrNotFound, "a missing factor")
	})

	t.Run("deleting a factor removes the recovery codes too", func(t *testing.T) {
		enrol(t, "drop")
		must(t, s.ReplaceRecoveryCodes(ctx, "drop", []string{"h1", "h2"}), "codes")
		must(t, s.DeleteTwoFactor(ctx, "drop"), "delete")
		_, err := s.GetTwoFactor(ctx, "drop")
		wantErr(t, err, store.ErrNotFound, "get")
		n, err := s.CountRecoveryCodes(ctx, "drop")
		must(t, err, "count")
		if n != 0 {
			t.Errorf("%d recovery codes left", n)
		}
	})
}

func testRecoveryCodes(t *testing.T, newStore func(t testing.TB) store.Store) {
	s := newStore(t)
	ctx := ctxb()
	now := base
	seedUser(t, s, "rc")
	seedUser(t, s, "rc-other")
	count := func(t *testing.T, uid string) int {
		t.Helper()
		n, err := s.CountRecoveryCodes(ctx, uid)
		must(t, err, "count")
		return n
	}

	t.Run("a user without codes has none", func(t *testing.T) {
		if n := count(t, "rc"); n != 0 {
			t.Errorf("count %d", n)
		}
		wantErr(t, s.UseRecoveryCode(ctx, "rc", "h1", now), store.ErrNotFound, "use")
	})

	t.Run("a code works once and only for its user", func(t *testing.T) {
		must(t, s.ReplaceRecoveryCodes(ctx, "rc", []string{"h1", "h2", "h3"}), "issue")
		must(t, s.ReplaceRecoveryCodes(ctx, "rc-other", []string{"o1"}), "issue other")
		wantErr(t, s.UseRecoveryCode(ctx, "rc-other", "h1", now), store.ErrNotFound, "another user's code")
		must(t, s.UseRecoveryCode(ctx, "rc", "h1", now), "first use")
		wantErr(t, s.UseRecoveryCode(ctx, "rc", "h1", now), store.ErrNotFound, "second use")
		wantErr(t, s.UseRecoveryCode(ctx, "rc", "unknown", now), store.ErrNotFound, "unknown code")
		if n := count(t, "rc"); n != 2 {
			t.Errorf("%d unused codes, want 2", n)
		}
	})

	t.Run("replacing the codes voids the old set", func(t *testing.T) {
		must(t, s.ReplaceRecoveryCodes(ctx, "rc", []string{"n1", "n2"}), "replace")
		wantErr(t, s.UseRecoveryCode(ctx, "rc", "h2", now), store.ErrNotFound, "old code")
		must(t, s.UseRecoveryCode(ctx, "rc", "n1", now), "new code")
		if n := count(t, "rc"); n != 1 {
			t.Errorf("%d unused codes, want 1", n)
		}
		if n := count(t, "rc-other"); n != 1 {
			t.Errorf("the other user's codes changed: %d", n)
		}
	})

	t.Run("of 20 concurrent uses of one code exactly one wins", func(t *testing.T) {
		must(t, s.ReplaceRecoveryCodes(ctx, "rc", []string{"race"}), "issue")
		errs := race(20, func(int) error { return s.UseRecoveryCode(ctx, "rc", "race", now) })
		wins, losses := tally(t, errs, store.ErrNotFound)
		if wins != 1 || losses != 19 {
			t.Fatalf("%d wins and %d refusals, want 1 and 19", wins, losses)
		}
	})
}

func testOneTimeCodes(t *testing.T, newStore func(t testing.TB) store.Store) {
	s := newStore(t)
	ctx := ctxb()
	now := base
	code := func(id, uid, binding, hash, dest string, created time.Time, ttl time.Duration) store.OneTimeCode {
		return store.OneTimeCode{ID: id, UserID: uid, Purpose: "login", Channel: "sms", Destination: dest,
			BindingID: binding, CodeHash: hash, CreatedAt: created, ExpiresAt: created.Add(ttl)}
	}

	t.Run("a code is consumed once and comes back whole", func(t *testing.T) {
		in := code("otc-1", "ann", "bind-1", "hash-1", "+15550001", now, 5*time.Minute)
		must(t, s.CreateOneTimeCode(ctx, in), "create")
		got, err := s.ConsumeOneTimeCode(ctx, "bind-1", "hash-1", now.Add(time.Minute))
		must(t, err, "consume")
		if got.ID != "otc-1" || got.UserID != "ann" || got.Purpose != "login" || got.Channel != "sms" ||
			got.Destination != "+15550001" || got.BindingID != "bind-1" || got.CodeHash != "hash-1" {
			t.Errorf("consumed = %+v", got)
		}
		sameTime(t, "created", got.CreatedAt, now)
		sameTime(t, "expires", got.ExpiresAt, now.Add(5*time.Minute))
		sameTime(t, "used", got.UsedAt, now.Add(time.Minute))
		_, err = s.ConsumeOneTimeCode(ctx, "bind-1", "hash-1", now.Add(time.Minute))
		wantErr(t, err, store.ErrNotFound, "second consume")
	})

	t.Run("a code is refused after it expires, for another binding, or with another hash", func(t *testing.T) {
		must(t, s.CreateOneTimeCode(ctx, code("otc-2", "ann", "bind-2", "hash-2", "+15550001", now, 5*time.Minute)), "create")
		cases := []struct {
			name, binding, hash string
			at                  time.Time
		}{
			{"at its expiry", "bind-2", "hash-2", now.Add(5 * time.Minute)},
			{"after its expiry", "bind-2", "hash-2", now.Add(time.Hour)},
			{"for another binding", "bind-x", "hash-2", now},
			{"with another hash", "bind-2", "hash-x", now},
		}
		for _, c := range cases {
			_, err := s.ConsumeOneTimeCode(ctx, c.binding, c.hash, c.at)
			wantErr(t, err, store.ErrNotFound, c.name)
		}
		_, err := s.ConsumeOneTimeCode(ctx, "bind-2", "hash-2", now.Add(time.Minute))
		must(t, err, "the refusals did not use the code up")
	})

	t.Run("of 20 concurrent consumes exactly one wins", func(t *testing.T) {
		must(t, s.CreateOneTimeCode(ctx, code("otc-3", "ann", "bind-3", "hash-3", "+15550001", now, 5*time.Minute)), "create")
		errs := race(20, func(int) error {
			_, err := s.ConsumeOneTimeCode(ctx, "bind-3", "hash-3", now)
			return err
		})
		wins, losses := tally(t, errs, store.ErrNotFound)
		if wins != 1 || losses != 19 {
			t.Fatalf("%d wins and %d refusals, want 1 and 19", wins, losses)
		}
	})

	t.Run("two equal codes on one binding are consumed one at a time", func(t *testing.T) {
		must(t, s.CreateOneTimeCode(ctx, code("otc-4a", "ann", "bind-4", "same", "+15550001", now, 5*time.Minute)), "first")
		must(t, s.CreateOneTimeCode(ctx, code("otc-4b", "ann", "bind-4", "same", "+15550001", now.Add(time.Second), 5*time.Minute)), "second")
		for i := range 2 {
			_, err := s.ConsumeOneTimeCode(ctx, "bind-4", "same", now.Add(time.Minute))
			must(t, err, fmt.Sprint("consume ", i))
		}
		_, err := s.ConsumeOneTimeCode(ctx, "bind-4", "same", now.Add(time.Minute))
		wantErr(t, err, store.ErrNotFound, "third consume")
	})

	t.Run("a code consumed in a transaction that rolls back is still there, and a counter hit before it still counts", func(t *testing.T) {
		// The admin API counts the try at a verification code, then spends
		// the code and writes the user in one transaction.
		must(t, s.CreateOneTimeCode(ctx, code("otc-5", "ann", "bind-5", "hash-5", "+15550001", now, 5*time.Minute)), "create")
		_, err := s.HitCounter(ctx, "try:bind-5", 5*time.Minute, now)
		must(t, err, "count the try")
		refused := errors.New("the write is refused after the code")
		err = s.InTx(ctx, func(ctx context.Context) error {
			if _, err := s.ConsumeOneTimeCode(ctx, "bind-5", "hash-5", now); err != nil {
				return err
			}
			return refused
		})
		wantErr(t, err, refused, "the transaction")
		n, err := s.GetCounter(ctx, "try:bind-5", 5*time.Minute, now)
		must(t, err, "read the count")
		if n != 1 {
			t.Fatalf("the try counts %d, want 1", n)
		}
		_, err = s.ConsumeOneTimeCode(ctx, "bind-5", "hash-5", now)
		must(t, err, "the rolled-back consume left the code usable")
	})

	t.Run("purging removes codes that expired before the cut-off, used or not, and keeps the rest", func(t *testing.T) {
		s := newStore(t)
		cut := now.In(zone)
		mfa := code("p-mfa", "dan", "p-bind-mfa", "h", "client:app", now.Add(-time.Hour), 5*time.Minute)
		mfa.Purpose, mfa.Channel = "mfa_token", ""
		for i, c := range []store.OneTimeCode{
			code("p-old", "dan", "p-bind-old", "h", "+1000", now.Add(-time.Hour), 10*time.Minute),
			code("p-used", "dan", "p-bind-used", "h", "+1000", now.Add(-time.Hour), 10*time.Minute),
			mfa,
			code("p-edge", "dan", "p-bind-edge", "h", "+1000", now.Add(-10*time.Minute), 10*time.Minute), // expires at the cut-off
			code("p-live", "dan", "p-bind-live", "h", "+1000", now.Add(-time.Minute), 10*time.Minute),
		} {
			must(t, s.CreateOneTimeCode(ctx, c), fmt.Sprint("create ", i))
		}
		_, err := s.ConsumeOneTimeCode(ctx, "p-bind-used", "h", now.Add(-55*time.Minute))
		must(t, err, "use one")

		n, err := s.DeleteExpiredOneTimeCodes(ctx, cut)
		must(t, err, "purge")
		if n != 3 {
			t.Errorf("purged %d codes, want 3", n)
		}
		left, err := s.CountOneTimeCodes(ctx, "dan", "", now.Add(-24*time.Hour))
		must(t, err, "count")
		if left != 2 {
			t.Errorf("%d codes left, want 2 (the one expiring at the cut-off and the live one)", left)
		}
		_, err = s.ConsumeOneTimeCode(ctx, "p-bind-live", "h", now)
		must(t, err, "the live code still works")
		n, err = s.DeleteExpiredOneTimeCodes(ctx, cut)
		must(t, err, "purge again")
		if n != 0 {
			t.Errorf("a second purge removed %d", n)
		}
	})

	t.Run("trimming keeps the newest codes of one user and purpose and nobody else's", func(t *testing.T) {
		s := newStore(t)
		for i := 0; i < 5; i++ {
			c := code(fmt.Sprintf("t-%d", i), "tess", fmt.Sprintf("t-bind-%d", i), "h", "client:app", now.Add(time.Duration(i)*time.Minute), time.Hour)
			c.Purpose = "mfa_token"
			must(t, s.CreateOneTimeCode(ctx, c), "create mfa "+c.ID)
		}
		must(t, s.CreateOneTimeCode(ctx, code("t-login", "tess", "t-bind-login", "h", "+1000", now, time.Hour)), "create login code")
		other := code("u-0", "uma", "u-bind-0", "h", "client:app", now, time.Hour)
		other.Purpose = "mfa_token"
		must(t, s.CreateOneTimeCode(ctx, other), "create other user's")

		n, err := s.TrimOneTimeCodes(ctx, "tess", "mfa_token", 2)
		must(t, err, "trim")
		if n != 3 {
			t.Errorf("trimmed %d, want 3", n)
		}
		for _, b := range []struct {
			binding string
			kept    bool
		}{{"t-bind-0", false}, {"t-bind-2", false}, {"t-bind-3", true}, {"t-bind-4", true}, {"t-bind-login", true}, {"u-bind-0", true}} {
			_, err := s.ConsumeOneTimeCode(ctx, b.binding, "h", now.Add(5*time.Minute))
			if kept := err == nil; kept != b.kept {
				t.Errorf("%s kept = %v, want %v (%v)", b.binding, kept, b.kept, err)
			}
		}
	})

	t.Run("codes sent since a time are counted by user and destination", func(t *testing.T) {
		s := newStore(t)
		for i, c := range []store.OneTimeCode{
			code("c1", "bob", "b1", "h", "+1000", now.Add(-2*time.Hour), time.Hour),
			code("c2", "bob", "b2", "h", "+1000", now.Add(-30*time.Minute), time.Hour),
			code("c3", "bob", "b3", "h", "+1000", now.Add(-time.Minute), time.Hour),
			code("c4", "bob", "b4", "h", "bob@example.org", now.Add(-time.Minute), time.Hour),
			code("c5", "cat", "b5", "h", "+1000", now.Add(-time.Minute), time.Hour),
		} {
			must(t, s.CreateOneTimeCode(ctx, c), fmt.Sprint("create ", i))
		}
		cases := []struct {
			name, user, dest string
			since            time.Time
			want             int
		}{
			{"one user to one destination in the last hour", "bob", "+1000", now.Add(-time.Hour), 2},
			{"one user to one destination in the last day", "bob", "+1000", now.Add(-24 * time.Hour), 3},
			{"another destination", "bob", "bob@example.org", now.Add(-time.Hour), 1},
			{"another user", "cat", "+1000", now.Add(-time.Hour), 1},
			{"nothing sent since now", "bob", "+1000", now, 0},
		}
		for _, c := range cases {
			n, err := s.CountOneTimeCodes(ctx, c.user, c.dest, c.since)
			must(t, err, c.name)
			if n != c.want {
				t.Errorf("%s: %d, want %d", c.name, n, c.want)
			}
		}
		must(t, s.CreateOneTimeCode(ctx, store.OneTimeCode{ID: "c6", UserID: "bob", Purpose: "reset", Channel: "email",
			Destination: "bob@example.org", BindingID: "b6", CodeHash: "h", CreatedAt: now.Add(-time.Minute), ExpiresAt: now.Add(time.Hour)}), "create c6")
		for _, c := range []struct {
			name     string
			purposes []string
			want     int
		}{
			{"every purpose when none is named", nil, 2},
			{"only the purposes named", []string{"login", "verify"}, 1},
			{"only resets", []string{"reset"}, 1},
			{"a purpose never sent", []string{"verify"}, 0},
		} {
			n, err := s.CountOneTimeCodes(ctx, "bob", "bob@example.org", now.Add(-time.Hour), c.purposes...)
			must(t, err, c.name)
			if n != c.want {
				t.Errorf("%s: %d, want %d", c.name, n, c.want)
			}
		}
	})
}
