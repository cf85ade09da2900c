package twofactor_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/twofactor"
)

// TestALastAttemptThatNeverFinishedLocksOnlyForALockoutPeriod simulates a
// process that reserved the last allowed attempt and died before it could
// lock or clear: the factor is left at the limit with no lock. It must free
// itself after the lock that attempt would have set, not stay shut until an
// admin reset.
func TestALastAttemptThatNeverFinishedLocksOnlyForALockoutPeriod(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		// crash reserves every attempt at the clock's time, as Verify does
		// before checking a code, and then does nothing more.
		crash := func(t *testing.T, userID string) {
			t.Helper()
			for i := range twofactor.MaxAttempts {
				a, err := f.st.ReserveFactorAttempt(ctx, userID, f.clock.Now(), twofactor.MaxAttempts, twofactor.LockoutBase)
				if err != nil || !a.Allowed {
					t.Fatalf("reservation %d: %+v, %v", i+1, a, err)
				}
			}
		}
		refused := func(t *testing.T, userID, code string) {
			t.Helper()
			if _, err := f.verify(userID, code, 1); !errors.Is(err, twofactor.ErrLocked) {
				t.Fatalf("code at +%s after the crash: %v, want ErrLocked", f.clock.Now().Sub(t0), err)
			}
		}

		t.Run("the right code is refused until five minutes after the crash, then works", func(t *testing.T) {
			f.clock.Set(t0)
			u, sec, _ := f.enrol(t, "crashed")
			f.clock.Advance(step(1))
			crashedAt := f.clock.Now()
			crash(t, u.ID)

			for _, after := range []time.Duration{0, time.Second, 30 * time.Second, time.Minute, twofactor.LockoutBase - time.Second} {
				f.clock.Set(crashedAt.Add(after))
				refused(t, u.ID, oathtool(t, sec, f.clock.Now()))
			}
			// The refusals were not attempts: they did not move the end.
			f.clock.Set(crashedAt.Add(twofactor.LockoutBase))
			res, err := f.verify(u.ID, oathtool(t, sec, f.clock.Now()), 1)
			if err != nil || res.Method != twofactor.MethodTOTP {
				t.Fatalf("the right code when the lock ends: %+v, %v", res, err)
			}
			tf, err := f.st.GetTwoFactor(ctx, u.ID)
			if err != nil {
				t.Fatal(err)
			}
			if tf.Failures != 0 || tf.Lockouts != 0 || !tf.LockedUntil.IsZero() {
				t.Errorf("after the success: failures %d, lockouts %d, locked until %v; want all cleared", tf.Failures, tf.Lockouts, tf.LockedUntil)
			}
		})

		t.Run("a wrong code after the stale lock starts a new series of five", func(t *testing.T) {
			f.clock.Set(t0)
			u, sec, _ := f.enrol(t, "crashed-wrong")
			f.clock.Advance(step(1))
			crash(t, u.ID)
			f.clock.Advance(twofactor.LockoutBase)
			wrong := oathtool(t, sec, f.clock.Now().Add(step(7)))
			for i := range twofactor.MaxAttempts {
				_, err := f.verify(u.ID, wrong, 1)
				if !errors.Is(err, twofactor.ErrInvalidCode) || errors.Is(err, twofactor.ErrLocked) {
					t.Fatalf("wrong code %d of the new series: %v, want a plain refusal", i+1, err)
				}
			}
			// The fifth wrong code locked for real, and the stale lock
			// counted as the first lockout: this one lasts ten minutes.
			tf, err := f.st.GetTwoFactor(ctx, u.ID)
			if err != nil {
				t.Fatal(err)
			}
			if want := f.clock.Now().Add(2 * twofactor.LockoutBase); !tf.LockedUntil.Equal(want) || tf.Lockouts != 2 {
				t.Errorf("locked until %v with %d lockouts, want %v and 2", tf.LockedUntil, tf.Lockouts, want)
			}
			refused(t, u.ID, oathtool(t, sec, f.clock.Now()))
		})

		t.Run("after an earlier lockout the stale lock lasts as long as the next real one would", func(t *testing.T) {
			f.clock.Set(t0)
			u, sec, _ := f.enrol(t, "crashed-twice")
			f.clock.Advance(step(1))
			wrong := oathtool(t, sec, f.clock.Now().Add(step(7)))
			for range twofactor.MaxAttempts {
				_, _ = f.verify(u.ID, wrong, 1)
			}
			f.clock.Advance(twofactor.LockoutBase) // the first lock is over
			crashedAt := f.clock.Now()
			crash(t, u.ID)

			f.clock.Set(crashedAt.Add(2*twofactor.LockoutBase - time.Second))
			refused(t, u.ID, oathtool(t, sec, f.clock.Now()))
			f.clock.Set(crashedAt.Add(2 * twofactor.LockoutBase))
			if _, err := f.verify(u.ID, oathtool(t, sec, f.clock.Now()), 1); err != nil {
				t.Fatalf("the right code when the doubled lock ends: %v", err)
			}
		})
	})
}
