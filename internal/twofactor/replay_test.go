package twofactor_test

import (
	"context"
	"errors"
	"testing"

	"github.com/gatehouse/gatehouse/internal/twofactor"
)

// TestReplaysDoNotCountTowardsTheLockout reproduces the fault report's
// finding 5e: eight sign-ins sending one valid code at once used to lock the
// owner out, because the seven refused replays counted as wrong codes.
func TestReplaysDoNotCountTowardsTheLockout(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		// notLocked checks the counters after the replays and that the
		// owner's next code is accepted.
		notLocked := func(t *testing.T, userID, secret string) {
			t.Helper()
			tf, err := f.st.GetTwoFactor(ctx, userID)
			if err != nil {
				t.Fatal(err)
			}
			if tf.Failures != 0 || !tf.LockedUntil.IsZero() {
				t.Errorf("after the replays: failures %d, locked until %v; want 0 and no lock", tf.Failures, tf.LockedUntil)
			}
			if n := len(f.audits(t, userID, "two_factor.lockout")); n != 0 {
				t.Errorf("%d lockout events, want none", n)
			}
			f.clock.Advance(step(1))
			if _, err := f.verify(userID, oathtool(t, secret, f.clock.Now()), 1); err != nil {
				t.Fatalf("the owner's next code: %v, want accepted", err)
			}
		}

		t.Run("eight concurrent sign-ins with one valid code give one success, seven refusals and no lockout", func(t *testing.T) {
			f.clock.Set(t0)
			u, sec, _ := f.enrol(t, "eight")
			f.clock.Advance(step(2))
			code := oathtool(t, sec, f.clock.Now())
			const n = 8
			errs := make(chan error, n)
			start := make(chan struct{})
			for range n {
				go func() {
					<-start
					_, err := f.verify(u.ID, code, 1)
					errs <- err
				}()
			}
			close(start)
			ok, refused := 0, 0
			for range n {
				switch err := <-errs; {
				case err == nil:
					ok++
				case errors.Is(err, twofactor.ErrInvalidCode):
					refused++
				default:
					t.Errorf("a submission failed with %v, want a refusal", err)
				}
			}
			if ok != 1 || refused != n-1 {
				t.Fatalf("%d accepted and %d refused, want 1 and %d", ok, refused, n-1)
			}
			notLocked(t, u.ID, sec)
		})

		t.Run("a replay after four wrong codes is refused without locking the factor", func(t *testing.T) {
			f.clock.Set(t0)
			u, sec, _ := f.enrol(t, "four-wrong")
			f.clock.Advance(step(1))
			used := oathtool(t, sec, f.clock.Now())
			if _, err := f.verify(u.ID, used, 1); err != nil {
				t.Fatal(err)
			}
			for i := range twofactor.MaxAttempts - 1 {
				if _, err := f.verify(u.ID, oathtool(t, sec, f.clock.Now().Add(step(7))), 1); !errors.Is(err, twofactor.ErrInvalidCode) {
					t.Fatalf("wrong code %d: %v", i+1, err)
				}
			}
			for i := range 3 {
				_, err := f.verify(u.ID, used, 1)
				if !errors.Is(err, twofactor.ErrCodeReused) || errors.Is(err, twofactor.ErrLocked) {
					t.Fatalf("replay %d: %v, want ErrCodeReused and no lock", i+1, err)
				}
			}
			tf, err := f.st.GetTwoFactor(ctx, u.ID)
			if err != nil {
				t.Fatal(err)
			}
			if tf.Failures != twofactor.MaxAttempts-1 {
				t.Errorf("failures %d after four wrong codes and three replays, want %d", tf.Failures, twofactor.MaxAttempts-1)
			}
			if n := len(f.audits(t, u.ID, "two_factor.code_reused")); n != 3 {
				t.Errorf("%d code_reused events, want 3", n)
			}
			f.clock.Advance(step(1))
			if _, err := f.verify(u.ID, oathtool(t, sec, f.clock.Now()), 1); err != nil {
				t.Fatalf("the owner's next code: %v, want accepted", err)
			}
		})

		t.Run("a factor of the deployment's own that reports replays is never locked by them", func(t *testing.T) {
			f.clock.Set(t0)
			u, sec, _ := f.enrol(t, "own-factor")
			for i := range 2 * twofactor.MaxAttempts {
				_, err := f.svc.Guard(ctx, u.ID, "face", twofactor.Meta{}, func(context.Context) (twofactor.Result, error) {
					return twofactor.Result{}, twofactor.ErrCodeReused
				})
				if !errors.Is(err, twofactor.ErrCodeReused) {
					t.Fatalf("replay %d through Guard: %v, want ErrCodeReused", i+1, err)
				}
			}
			notLocked(t, u.ID, sec)
		})
	})
}
