package twofactor_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

func TestParallelWrongCodes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		u, sec, _ := f.enrol(t, "brute")
		f.clock.Advance(step(1))
		wrong := oathtool(t, sec, f.clock.Now().Add(step(9)))
		const n = 100
		errs := make(chan error, n)
		start := make(chan struct{})
		for range n {
			go func() {
				<-start
				_, err := f.verify(u.ID, wrong, 1)
				errs <- err
			}()
		}
		close(start)
		for range n {
			if err := <-errs; !errors.Is(err, twofactor.ErrInvalidCode) {
				t.Errorf("a wrong code ended with %v, want ErrInvalidCode", err)
			}
		}
		evaluated, refused := 0, 0
		for _, ev := range f.audits(t, u.ID, "two_factor.failure") {
			if ev.Detail["reason"] == "locked" {
				refused++
			} else {
				evaluated++
			}
		}
		if evaluated > twofactor.MaxAttempts || evaluated+refused != n {
			t.Fatalf("%d codes evaluated and %d refused unchecked, want at most %d evaluated of %d",
				evaluated, refused, twofactor.MaxAttempts, n)
		}
		if locks := len(f.audits(t, u.ID, "two_factor.lockout")); locks != 1 {
			t.Fatalf("%d lockouts, want 1", locks)
		}
		if _, err := f.verify(u.ID, oathtool(t, sec, f.clock.Now()), 1); !errors.Is(err, twofactor.ErrLocked) {
			t.Fatalf("the right code after the burst: %v, want ErrLocked", err)
		}
	})
}

func TestRecoveryCodes(t *testing.T) {
	f := newFixture(t, gormstoretest.Open(t))
	ctx := context.Background()

	t.Run("each code works once, typed in any case with spaces", func(t *testing.T) {
		u, _, codes := f.enrol(t, "rec1")
		typed := " " + strings.ToUpper(codes[3][:5]) + " " + codes[3][6:] + " "
		res, err := f.verify(u.ID, typed, 1)
		if err != nil {
			t.Fatalf("recovery code: %v", err)
		}
		if res.Method != "recovery" || res.RecoveryCodesRemaining != 9 || strings.Join(res.AMR, ",") != "otp,mfa" {
			t.Fatalf("result %+v", res)
		}
		if _, err := f.verify(u.ID, codes[3], 1); !errors.Is(err, twofactor.ErrInvalidCode) {
			t.Fatalf("second use: %v, want ErrInvalidCode", err)
		}
		if n := len(f.audits(t, u.ID, "two_factor.recovery_code_used")); n != 1 {
			t.Fatalf("%d recovery_code_used events", n)
		}
		if st, _ := f.svc.Status(ctx, u.ID); st.RecoveryCodesRemaining != 9 {
			t.Fatalf("status %+v", st)
		}
	})
	t.Run("a recovery code is refused where only a code is allowed", func(t *testing.T) {
		u, _, codes := f.enrol(t, "rec2")
		_, err := f.svc.Verify(ctx, twofactor.VerifyInput{UserID: u.ID, Code: codes[0], PastSteps: 1})
		if !errors.Is(err, twofactor.ErrInvalidCode) {
			t.Fatalf("verify: %v", err)
		}
	})
	t.Run("another user's recovery code does not work", func(t *testing.T) {
		_, _, codes := f.enrol(t, "rec3")
		v, _, _ := f.enrol(t, "rec4")
		if _, err := f.verify(v.ID, codes[0], 1); !errors.Is(err, twofactor.ErrInvalidCode) {
			t.Fatalf("foreign code: %v", err)
		}
	})
	t.Run("recovery codes share the lockout counter with TOTP codes", func(t *testing.T) {
		u, sec, codes := f.enrol(t, "rec5")
		f.clock.Advance(step(1))
		for range 4 {
			if _, err := f.verify(u.ID, oathtool(t, sec, f.clock.Now().Add(step(5))), 1); !errors.Is(err, twofactor.ErrInvalidCode) {
				t.Fatal(err)
			}
		}
		if _, err := f.verify(u.ID, "zzzzz-zzzzz", 1); !errors.Is(err, twofactor.ErrInvalidCode) {
			t.Fatal(err)
		}
		if _, err := f.verify(u.ID, codes[1], 1); !errors.Is(err, twofactor.ErrLocked) {
			t.Fatalf("a valid recovery code during the lock: %v, want ErrLocked", err)
		}
		if st, _ := f.svc.Status(ctx, u.ID); st.RecoveryCodesRemaining != 10 || st.LockedUntil.IsZero() {
			t.Fatalf("status %+v: the refused code must stay unused and the factor locked", st)
		}
	})
}

func TestDisable(t *testing.T) {
	f := newFixture(t, gormstoretest.Open(t))
	ctx := context.Background()
	u, sec, _ := f.enrol(t, "dis")
	for _, id := range []string{"mine", "elsewhere"} {
		if err := f.st.CreateBrowserSession(ctx, store.BrowserSession{ID: id, UserID: u.ID, ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	f.clock.Advance(step(1))

	t.Run("a wrong code leaves the factor on", func(t *testing.T) {
		err := f.svc.Disable(ctx, twofactor.VerifyInput{UserID: u.ID, Code: "000000x", PastSteps: 1}, "mine")
		if !errors.Is(err, twofactor.ErrInvalidCode) {
			t.Fatalf("disable: %v", err)
		}
		if st, _ := f.svc.Status(ctx, u.ID); !st.Enabled {
			t.Fatal("disabled by a wrong code")
		}
	})
	t.Run("a current code turns it off and ends the other sessions", func(t *testing.T) {
		err := f.svc.Disable(ctx, twofactor.VerifyInput{UserID: u.ID, Code: oathtool(t, sec, f.clock.Now()), PastSteps: 1}, "mine")
		if err != nil {
			t.Fatalf("disable: %v", err)
		}
		if st, _ := f.svc.Status(ctx, u.ID); st != (twofactor.Status{}) {
			t.Fatalf("status after disable %+v", st)
		}
		if n, _ := f.st.CountRecoveryCodes(ctx, u.ID); n != 0 {
			t.Fatalf("%d recovery codes left", n)
		}
		if _, err := f.st.GetBrowserSession(ctx, "mine"); err != nil {
			t.Fatalf("current session: %v", err)
		}
		if _, err := f.st.GetBrowserSession(ctx, "elsewhere"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("other session: %v", err)
		}
		if n := len(f.audits(t, u.ID, "two_factor.disabled")); n != 1 {
			t.Fatalf("%d disabled events", n)
		}
	})
	t.Run("verifying afterwards says the factor is off", func(t *testing.T) {
		if _, err := f.verify(u.ID, "123456", 1); !errors.Is(err, twofactor.ErrNotEnabled) {
			t.Fatalf("verify: %v", err)
		}
	})
	t.Run("a recovery code can disable too", func(t *testing.T) {
		v, _, codes := f.enrol(t, "dis2")
		if err := f.svc.Disable(ctx, twofactor.VerifyInput{UserID: v.ID, Code: codes[9]}, ""); err != nil {
			t.Fatalf("disable: %v", err)
		}
	})
}

func TestReset(t *testing.T) {
	f := newFixture(t, gormstoretest.Open(t))
	ctx := context.Background()
	u, _, _ := f.enrol(t, "reset")
	if err := f.st.CreateBrowserSession(ctx, store.BrowserSession{ID: "s1", UserID: u.ID, ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Reset(ctx, u.ID, twofactor.Meta{RequestID: "req-1"}); err != nil {
		t.Fatalf("reset: %v", err)
	}
	if st, _ := f.svc.Status(ctx, u.ID); st.Enabled {
		t.Fatal("still enabled")
	}
	if _, err := f.st.GetBrowserSession(ctx, "s1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("session after reset: %v", err)
	}
	evs := f.audits(t, u.ID, "two_factor.reset")
	if len(evs) != 1 || evs[0].RequestID != "req-1" {
		t.Fatalf("reset events %+v", evs)
	}
	if err := f.svc.Reset(ctx, u.ID, twofactor.Meta{}); err != nil {
		t.Fatalf("resetting a user without a factor: %v", err)
	}
}

func TestRegenerateRecoveryCodes(t *testing.T) {
	f := newFixture(t, gormstoretest.Open(t))
	ctx := context.Background()
	u, sec, old := f.enrol(t, "regen")
	f.clock.Advance(step(1))
	if _, err := f.svc.RegenerateRecoveryCodes(ctx, twofactor.VerifyInput{UserID: u.ID, Code: "nope", PastSteps: 1}); !errors.Is(err, twofactor.ErrInvalidCode) {
		t.Fatalf("regenerate with a wrong code: %v", err)
	}
	fresh, err := f.svc.RegenerateRecoveryCodes(ctx, twofactor.VerifyInput{UserID: u.ID, Code: oathtool(t, sec, f.clock.Now()), PastSteps: 1})
	if err != nil || len(fresh) != 10 {
		t.Fatalf("regenerate: %d codes, %v", len(fresh), err)
	}
	if _, err := f.verify(u.ID, old[0], 1); !errors.Is(err, twofactor.ErrInvalidCode) {
		t.Fatalf("an old code after regeneration: %v", err)
	}
	if _, err := f.verify(u.ID, fresh[0], 1); err != nil {
		t.Fatalf("a new code: %v", err)
	}
}

func TestLockoutOutlivesTheProcess(t *testing.T) {
	st := gormstoretest.Open(t)
	f := newFixture(t, st)
	u, sec, _ := f.enrol(t, "restart")
	f.clock.Advance(step(1))
	for range 5 {
		_, _ = f.verify(u.ID, "000000x", 1)
	}
	// A second server process (or a restarted login) shares only the store.
	g := newFixture(t, st)
	g.clock.Set(f.clock.Now())
	if _, err := g.verify(u.ID, oathtool(t, sec, g.clock.Now()), 1); !errors.Is(err, twofactor.ErrLocked) {
		t.Fatalf("the right code through a fresh service during the lock: %v, want ErrLocked", err)
	}
}

func TestStorageErrorOnTheLastAttemptStillLocks(t *testing.T) {
	f := newFixture(t, gormstoretest.Open(t))
	ctx := context.Background()
	u, _, _ := f.enrol(t, "broken")
	f.clock.Advance(step(1))
	for range 4 {
		_, _ = f.verify(u.ID, "000000x", 1)
	}
	// A secret that no longer opens (say, a changed master key) makes the
	// fifth check fail with an error rather than a verdict.
	tf, err := f.st.GetTwoFactor(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	tf.Secret = []byte("not a sealed value at all, far too long to be empty")
	if err := f.st.PutTwoFactor(ctx, tf); err != nil {
		t.Fatal(err)
	}
	if _, err := f.verify(u.ID, "123456", 1); err == nil || errors.Is(err, twofactor.ErrInvalidCode) {
		t.Fatalf("verify with a broken secret: %v, want an internal error", err)
	}
	tf, _ = f.st.GetTwoFactor(ctx, u.ID)
	if tf.Failures != 0 || !tf.LockedUntil.Equal(f.clock.Now().Add(5*time.Minute)) {
		t.Fatalf("failures %d, locked until %s: want a normal 5-minute lock", tf.Failures, tf.LockedUntil)
	}
}

func TestFactorChangesEndOtherTokens(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		token := func(sig, family, subject string) {
			t.Helper()
			err := f.st.CreateOAuthRequest(ctx, store.OAuthRequest{Kind: store.KindRefreshToken, Signature: sig, RequestID: family,
				ClientID: "app", Subject: subject, RequestedAt: f.clock.Now(), ExpiresAt: time.Now().Add(time.Hour), Active: true})
			if err != nil {
				t.Fatal(err)
			}
		}
		active := func(sig string) bool {
			t.Helper()
			r, err := f.st.GetOAuthRequest(ctx, store.KindRefreshToken, sig)
			return err == nil && r.Active
		}
		u := f.user(t, "tok")
		token("phished", "fam-attacker", u.ID)
		token("mine", "fam-mine", u.ID)
		token("other-user", "fam-other", "someone-else")

		t.Run("enabling TOTP deactivates the user's tokens except the enrolling family", func(t *testing.T) {
			en, err := f.svc.BeginTOTP(u, "Gatehouse")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.svc.ConfirmTOTP(ctx, twofactor.ConfirmInput{UserID: u.ID, Secret: en.Secret,
				Code: oathtool(t, en.Secret, f.clock.Now()), PastSteps: 1, CurrentTokenFamily: "fam-mine"}); err != nil {
				t.Fatal(err)
			}
			if active("phished") || !active("mine") || !active("other-user") {
				t.Fatalf("after enabling: phished %v, mine %v, other user %v", active("phished"), active("mine"), active("other-user"))
			}
			token("phished-again", "fam-attacker-2", u.ID)
			f.clock.Advance(step(1))
			t.Run("and disabling does the same", func(t *testing.T) {
				err := f.svc.Disable(ctx, twofactor.VerifyInput{UserID: u.ID, Code: oathtool(t, en.Secret, f.clock.Now()), PastSteps: 1}, "", "fam-mine")
				if err != nil {
					t.Fatal(err)
				}
				if active("phished-again") || !active("mine") {
					t.Fatalf("after disabling: phished %v, mine %v", active("phished-again"), active("mine"))
				}
			})
		})
		t.Run("an admin reset deactivates every token of the user", func(t *testing.T) {
			v, _, _ := f.enrol(t, "tok2")
			token("t2", "fam-t2", v.ID)
			if err := f.svc.Reset(ctx, v.ID, twofactor.Meta{}); err != nil {
				t.Fatal(err)
			}
			if active("t2") {
				t.Fatal("a token survives the reset")
			}
		})
	})
}
