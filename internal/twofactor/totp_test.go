package twofactor_test

import (
	"bytes"
	"context"
	"encoding/base32"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp"

	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

func TestOTPAuthURI(t *testing.T) {
	tests := []struct {
		name, issuer, account, want string
	}{
		{"plain names appear as they are", "Gatehouse", "alice@example.com",
			"otpauth://totp/Gatehouse:alice@example.com?secret=JBSWY3DPEHPK3PXP&issuer=Gatehouse&algorithm=SHA1&digits=6&period=30"},
		{"spaces are percent-encoded in the label and the issuer", "Acme Health", "bob smith",
			"otpauth://totp/Acme%20Health:bob%20smith?secret=JBSWY3DPEHPK3PXP&issuer=Acme%20Health&algorithm=SHA1&digits=6&period=30"},
		{"a colon inside a name cannot move the issuer/account split", "A:B", "c:d",
			"otpauth://totp/A%20B:c%20d?secret=JBSWY3DPEHPK3PXP&issuer=A%3AB&algorithm=SHA1&digits=6&period=30"},
		{"query metacharacters in the issuer are escaped", "x&secret=AAAA", "eve",
			"otpauth://totp/x&secret=AAAA:eve?secret=JBSWY3DPEHPK3PXP&issuer=x%26secret%3DAAAA&algorithm=SHA1&digits=6&period=30"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := twofactor.OTPAuthURI(tt.issuer, tt.account, "JBSWY3DPEHPK3PXP")
			if got != tt.want {
				t.Fatalf("uri\n got %s\nwant %s", got, tt.want)
			}
			key, err := otp.NewKeyFromURL(got)
			if err != nil {
				t.Fatalf("parse uri: %v", err)
			}
			account := strings.ReplaceAll(tt.account, ":", " ")
			if key.Issuer() != tt.issuer || key.AccountName() != account || key.Secret() != "JBSWY3DPEHPK3PXP" {
				t.Fatalf("a reader of the uri sees issuer %q account %q secret %q", key.Issuer(), key.AccountName(), key.Secret())
			}
		})
	}
}

func TestBeginTOTP(t *testing.T) {
	f := newFixture(t, gormstoretest.Open(t))
	u := f.user(t, "alice")

	en, err := f.svc.BeginTOTP(u, "Acme Health")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("the secret is 20 random bytes in base32", func(t *testing.T) {
		raw, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(en.Secret)
		if err != nil || len(raw) != 20 {
			t.Fatalf("secret %q decodes to %d bytes (%v)", en.Secret, len(raw), err)
		}
		other, _ := f.svc.BeginTOTP(u, "Acme Health")
		if other.Secret == en.Secret {
			t.Fatal("two enrolments got the same secret")
		}
	})
	t.Run("the uri names the issuer and the user's e-mail", func(t *testing.T) {
		want := "otpauth://totp/Acme%20Health:alice@example.com?secret=" + en.Secret +
			"&issuer=Acme%20Health&algorithm=SHA1&digits=6&period=30"
		if en.URI != want {
			t.Fatalf("uri %s, want %s", en.URI, want)
		}
	})
	t.Run("an empty issuer falls back to Gatehouse", func(t *testing.T) {
		en, err := f.svc.BeginTOTP(u, "")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(en.URI, "otpauth://totp/Gatehouse:alice@example.com?") {
			t.Fatalf("uri %s", en.URI)
		}
	})
	t.Run("zbarimg reads the same uri from the QR code", func(t *testing.T) {
		if got := zbarimg(t, en.QR); got != en.URI {
			t.Fatalf("QR carries %q, want %q", got, en.URI)
		}
	})
	t.Run("the pending secret opens for its user until it expires", func(t *testing.T) {
		got, err := f.svc.OpenPending("alice", en.Pending)
		if err != nil || got != en.Secret {
			t.Fatalf("open pending: %q, %v", got, err)
		}
		if strings.Contains(en.Pending, en.Secret) {
			t.Fatal("the pending value shows the secret in the clear")
		}
		again, err := f.svc.ResumeTOTP(u, "Acme Health", en.Pending)
		if err != nil || again.Secret != en.Secret || again.URI != en.URI || !again.ExpiresAt.Equal(en.ExpiresAt) {
			t.Fatalf("resume: %+v, %v", again, err)
		}
		f.clock.Advance(twofactor.PendingTTL)
		defer f.clock.Set(t0)
		if _, err := f.svc.OpenPending("alice", en.Pending); !errors.Is(err, twofactor.ErrPendingExpired) {
			t.Fatalf("after %s: %v, want ErrPendingExpired", twofactor.PendingTTL, err)
		}
	})
	t.Run("another user's or a tampered pending secret does not open", func(t *testing.T) {
		if _, err := f.svc.OpenPending("mallory", en.Pending); !errors.Is(err, twofactor.ErrPendingExpired) {
			t.Fatalf("other user: %v", err)
		}
		tampered := []byte(en.Pending)
		tampered[10] ^= 1
		for _, p := range []string{string(tampered), "", "!!!", en.Pending[:20]} {
			if _, err := f.svc.OpenPending("alice", p); !errors.Is(err, twofactor.ErrPendingExpired) {
				t.Fatalf("pending %q: %v", p, err)
			}
		}
	})
}

func TestConfirmTOTP(t *testing.T) {
	f := newFixture(t, gormstoretest.Open(t))
	ctx := context.Background()
	u := f.user(t, "alice")
	for _, id := range []string{"current", "other"} {
		err := f.st.CreateBrowserSession(ctx, store.BrowserSession{ID: id, UserID: u.ID, ExpiresAt: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
	}
	en, err := f.svc.BeginTOTP(u, "Gatehouse")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("a wrong code enables nothing", func(t *testing.T) {
		wrong := oathtool(t, en.Secret, t0.Add(step(5)))
		for _, code := range []string{wrong, "", "abcdef", "1234567"} {
			_, err := f.svc.ConfirmTOTP(ctx, twofactor.ConfirmInput{UserID: u.ID, Secret: en.Secret, Code: code, PastSteps: 1})
			if !errors.Is(err, twofactor.ErrInvalidCode) {
				t.Fatalf("code %q: %v, want ErrInvalidCode", code, err)
			}
		}
		if st, _ := f.svc.Status(ctx, u.ID); st.Enabled {
			t.Fatal("enabled after a wrong code")
		}
	})

	code := oathtool(t, en.Secret, t0)
	codes, err := f.svc.ConfirmTOTP(ctx, twofactor.ConfirmInput{
		UserID: u.ID, Secret: en.Secret, Code: code, PastSteps: 1, CurrentSessionID: "current",
	})
	if err != nil {
		t.Fatalf("confirm: %v", err)
	}

	t.Run("it returns 10 distinct recovery codes once", func(t *testing.T) {
		format := regexp.MustCompile(`^[2-9a-hjkmnp-z]{5}-[2-9a-hjkmnp-z]{5}$`)
		seen := map[string]bool{}
		for _, c := range codes {
			if !format.MatchString(c) || seen[c] {
				t.Fatalf("recovery code %q (codes %v)", c, codes)
			}
			seen[c] = true
		}
		if len(codes) != 10 {
			t.Fatalf("%d codes", len(codes))
		}
	})
	t.Run("the status shows the factor and 10 codes left", func(t *testing.T) {
		st, err := f.svc.Status(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !st.Enabled || st.Method != "totp" || !st.EnrolledAt.Equal(t0) || st.RecoveryCodesRemaining != 10 {
			t.Fatalf("status %+v", st)
		}
	})
	t.Run("the confirmation code cannot be used again to log in", func(t *testing.T) {
		if _, err := f.verify(u.ID, code, 1); !errors.Is(err, twofactor.ErrCodeReused) {
			t.Fatalf("verify the enrolment code: %v, want ErrCodeReused", err)
		}
	})
	t.Run("the secret is sealed at rest with the user id as associated data", func(t *testing.T) {
		tf, err := f.st.GetTwoFactor(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(en.Secret)
		if bytes.Contains(tf.Secret, []byte(en.Secret)) || bytes.Contains(tf.Secret, raw) ||
			bytes.Contains(bytes.ToUpper(tf.Secret), []byte(en.Secret)) {
			t.Fatal("the stored secret contains the TOTP seed")
		}
		sealer, _ := secret.NewSealer(secret.Derive(testMaster, secret.PurposeAtRest))
		if _, err := sealer.Open(tf.Secret, []byte("mallory")); err == nil {
			t.Fatal("the sealed secret opened with another user's id")
		}
		plain, err := sealer.Open(tf.Secret, []byte(u.ID))
		if err != nil || string(plain) != en.Secret {
			t.Fatalf("open with the owner's id: %q, %v", plain, err)
		}
		otherKey, _ := secret.NewSealer(secret.Derive([]byte("another master key of 32 bytes!!"), secret.PurposeAtRest))
		if _, err := otherKey.Open(tf.Secret, []byte(u.ID)); err == nil {
			t.Fatal("the sealed secret opened with another key")
		}
	})
	t.Run("the other sessions of the user end, the enrolling one stays", func(t *testing.T) {
		if _, err := f.st.GetBrowserSession(ctx, "current"); err != nil {
			t.Fatalf("current session: %v", err)
		}
		if _, err := f.st.GetBrowserSession(ctx, "other"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("other session: %v, want ErrNotFound", err)
		}
	})
	t.Run("a second enrolment is refused while one is enabled", func(t *testing.T) {
		en2, _ := f.svc.BeginTOTP(u, "Gatehouse")
		_, err := f.svc.ConfirmTOTP(ctx, twofactor.ConfirmInput{
			UserID: u.ID, Secret: en2.Secret, Code: oathtool(t, en2.Secret, t0), PastSteps: 1,
		})
		if !errors.Is(err, twofactor.ErrAlreadyEnabled) {
			t.Fatalf("second confirm: %v", err)
		}
	})
	t.Run("the audit log records the enrolment", func(t *testing.T) {
		if n := len(f.audits(t, u.ID, "two_factor.enabled")); n != 1 {
			t.Fatalf("%d two_factor.enabled events", n)
		}
	})
}

// TestVerifyWindow checks which steps a code is accepted from: the current
// one, PastSteps before it and one after, nothing else.
func TestVerifyWindow(t *testing.T) {
	f := newFixture(t, gormstoretest.Open(t))
	now := t0.Add(step(20))
	tests := []struct {
		past    int
		offset  int // steps from now the code was generated at
		accepts bool
	}{
		{0, 0, true}, {0, 1, true}, {0, -1, false}, {0, 2, false}, {0, -2, false},
		{1, 0, true}, {1, -1, true}, {1, 1, true}, {1, -2, false}, {1, 2, false},
		{3, -3, true}, {3, -2, true}, {3, -4, false}, {3, 1, true}, {3, 2, false},
	}
	for i, tt := range tests {
		verdict := "rejects"
		if tt.accepts {
			verdict = "accepts"
		}
		t.Run(verdictName(verdict, tt.past, tt.offset), func(t *testing.T) {
			f.clock.Set(t0)
			u, sec, _ := f.enrol(t, userID("window", i))
			f.clock.Set(now)
			code := oathtool(t, sec, now.Add(step(tt.offset)))
			_, err := f.verify(u.ID, code, tt.past)
			if tt.accepts && err != nil {
				t.Fatalf("verify: %v", err)
			}
			if !tt.accepts && !errors.Is(err, twofactor.ErrInvalidCode) {
				t.Fatalf("verify: %v, want ErrInvalidCode", err)
			}
		})
	}
}

func verdictName(verdict string, past, offset int) string {
	return fmt.Sprintf("validPastTokensCount %d %s a code from step %+d", past, verdict, offset)
}

func TestStepBoundaries(t *testing.T) {
	f := newFixture(t, gormstoretest.Open(t))
	base := t0.Add(step(10)) // a step boundary
	tests := []struct {
		name    string
		at      time.Time // when the code is submitted
		codeAt  time.Time // when the code was generated
		past    int
		accepts bool
	}{
		{"a code of the current step is accepted at 29.999 s into it", base.Add(29999 * time.Millisecond), base, 0, true},
		{"that code is stale at 30 s with no past steps allowed", base.Add(30 * time.Second), base, 0, false},
		{"that code still passes at 30 s with one past step", base.Add(30 * time.Second), base, 1, true},
		{"the next step's code is accepted 1 ms before its step begins", base.Add(-time.Millisecond), base, 0, true},
		{"a code two steps ahead is refused 1 ms before the next step", base.Add(-time.Millisecond), base.Add(step(1)), 0, false},
		{"a code of the previous step is refused at 59.999 s with one past step", base.Add(59999 * time.Millisecond), base.Add(-time.Second), 1, false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.clock.Set(t0)
			u, sec, _ := f.enrol(t, userID("boundary", i))
			f.clock.Set(tt.at)
			_, err := f.verify(u.ID, oathtool(t, sec, tt.codeAt), tt.past)
			if tt.accepts != (err == nil) {
				t.Fatalf("verify: %v, want accepted=%v", err, tt.accepts)
			}
			if err != nil && !errors.Is(err, twofactor.ErrInvalidCode) {
				t.Fatalf("verify: %v, want ErrInvalidCode", err)
			}
		})
	}
}

func TestReplay(t *testing.T) {
	f := newFixture(t, gormstoretest.Open(t))
	u, sec, _ := f.enrol(t, "replay")
	f.clock.Advance(step(3))
	now := f.clock.Now()

	t.Run("a code is accepted once", func(t *testing.T) {
		code := oathtool(t, sec, now)
		res, err := f.verify(u.ID, code, 1)
		if err != nil {
			t.Fatal(err)
		}
		if res.Method != "totp" || strings.Join(res.AMR, ",") != "otp,mfa" {
			t.Fatalf("result %+v", res)
		}
		_, err = f.verify(u.ID, code, 1)
		if !errors.Is(err, twofactor.ErrCodeReused) || err.Error() != twofactor.ErrInvalidCode.Error() {
			t.Fatalf("second use: %v, want ErrCodeReused reading as an invalid code", err)
		}
		if n := len(f.audits(t, u.ID, "two_factor.code_reused")); n != 1 {
			t.Fatalf("%d two_factor.code_reused events", n)
		}
	})
	t.Run("an older step after a newer one was accepted is rejected", func(t *testing.T) {
		older := oathtool(t, sec, now.Add(-step(1)))
		if _, err := f.verify(u.ID, older, 1); !errors.Is(err, twofactor.ErrCodeReused) {
			t.Fatalf("older step: %v, want ErrCodeReused", err)
		}
	})
	t.Run("the next step's code is still accepted", func(t *testing.T) {
		f.clock.Advance(step(1))
		if _, err := f.verify(u.ID, oathtool(t, sec, f.clock.Now()), 1); err != nil {
			t.Fatalf("next step: %v", err)
		}
	})
}

func TestVerifyStatements(t *testing.T) {
	st := gormstoretest.OpenSQLite(t)
	f := newFixture(t, st)
	u, sec, _ := f.enrol(t, "counted")
	f.clock.Advance(step(2))
	if _, err := f.verify(u.ID, oathtool(t, sec, f.clock.Now().Add(step(7))), 1); !errors.Is(err, twofactor.ErrInvalidCode) {
		t.Fatalf("wrong code: %v", err)
	}
	before := st.Statements()
	if _, err := f.verify(u.ID, oathtool(t, sec, f.clock.Now()), 1); err != nil {
		t.Fatal(err)
	}
	// read the factor, reserve the attempt, accept the step (clearing the
	// failures with it), audit
	if n := st.Statements() - before; n != 4 {
		t.Errorf("a right TOTP code ran %d statements, want 4", n)
	}
	tf, err := st.GetTwoFactor(context.Background(), u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if tf.Failures != 0 || tf.Lockouts != 0 {
		t.Errorf("after the right code: %d failures, %d lockouts; want none", tf.Failures, tf.Lockouts)
	}
}

func TestParallelSubmissionsOfOneCode(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		u, sec, _ := f.enrol(t, "racer")
		f.clock.Advance(step(2))
		code := oathtool(t, sec, f.clock.Now())
		const n = 50
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
		ok := 0
		for range n {
			err := <-errs
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, twofactor.ErrInvalidCode):
				t.Errorf("a submission failed with %v, want ErrInvalidCode", err)
			}
		}
		if ok != 1 {
			t.Fatalf("%d of %d parallel submissions of one code succeeded, want exactly 1", ok, n)
		}
	})
}

func TestMalformedCodes(t *testing.T) {
	f := newFixture(t, gormstoretest.Open(t))
	inputs := []struct{ name, code string }{
		{"the empty string", ""},
		{"one digit", "1"},
		{"five digits", "12345"},
		{"seven digits", "1234567"},
		{"letters", "abcdef"},
		{"Arabic-Indic digits", "١٢٣٤٥٦"},
		{"fullwidth digits", "１２３４５６"},
		{"a NUL byte", "123\x00456"},
		{"a trailing NUL", "123456\x00"},
		{"one megabyte", strings.Repeat("1", 1<<20)},
		{"a recovery-shaped code that was never issued", "abcde-fghjk"},
		{"SQL", "' OR 1=1 --"},
	}
	for i, in := range inputs {
		t.Run(in.name+" is an invalid code and counts as a failure", func(t *testing.T) {
			u, _, _ := f.enrol(t, userID("bad", i))
			_, err := f.verify(u.ID, in.code, 1)
			if !errors.Is(err, twofactor.ErrInvalidCode) || err.Error() != "invalid code" {
				t.Fatalf("verify: %v, want the plain invalid code error", err)
			}
			tf, err := f.st.GetTwoFactor(context.Background(), u.ID)
			if err != nil {
				t.Fatal(err)
			}
			if tf.Failures != 1 {
				t.Fatalf("failures %d, want 1", tf.Failures)
			}
		})
	}
	t.Run("spaces and dashes inside a valid code are ignored", func(t *testing.T) {
		for i, format := range []func(string) string{
			func(c string) string { return c[:3] + " " + c[3:] },
			func(c string) string { return " " + c[:3] + "-" + c[3:] + " " },
			func(c string) string { return strings.Join(strings.Split(c, ""), " ") },
		} {
			f.clock.Set(t0)
			u, sec, _ := f.enrol(t, userID("spaced", i))
			f.clock.Advance(step(1))
			code := format(oathtool(t, sec, f.clock.Now()))
			if _, err := f.verify(u.ID, code, 1); err != nil {
				t.Fatalf("code %q: %v", code, err)
			}
		}
	})
}

func TestLockout(t *testing.T) {
	f := newFixture(t, gormstoretest.Open(t))
	u, sec, _ := f.enrol(t, "locked")
	f.clock.Advance(step(1))
	wrong := func() string {
		c := oathtool(t, sec, f.clock.Now().Add(step(7)))
		return c
	}
	right := func() string { return oathtool(t, sec, f.clock.Now()) }
	failFive := func(t *testing.T) {
		t.Helper()
		for i := range 5 {
			if _, err := f.verify(u.ID, wrong(), 1); !errors.Is(err, twofactor.ErrInvalidCode) || errors.Is(err, twofactor.ErrLocked) {
				t.Fatalf("wrong code %d: %v", i+1, err)
			}
		}
	}
	refused := func(t *testing.T) {
		t.Helper()
		_, err := f.verify(u.ID, right(), 1)
		if !errors.Is(err, twofactor.ErrLocked) || err.Error() != twofactor.ErrInvalidCode.Error() {
			t.Fatalf("correct code during the lock: %v, want ErrLocked reading as an invalid code", err)
		}
	}

	t.Run("five wrong codes lock the factor and a correct code is then refused alike", func(t *testing.T) {
		failFive(t)
		refused(t)
		f.clock.Advance(4*time.Minute + 59*time.Second)
		refused(t)
	})
	t.Run("after five minutes a correct code works", func(t *testing.T) {
		f.clock.Set(t0.Add(step(1)).Add(5 * time.Minute))
		if _, err := f.verify(u.ID, right(), 1); err != nil {
			t.Fatalf("after the lock: %v", err)
		}
	})
	t.Run("lockouts double without a success in between, up to an hour", func(t *testing.T) {
		for _, want := range []time.Duration{5 * time.Minute, 10 * time.Minute, 20 * time.Minute, 40 * time.Minute, time.Hour, time.Hour} {
			start := f.clock.Now()
			failFive(t)
			tf, err := f.st.GetTwoFactor(context.Background(), u.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got := tf.LockedUntil.Sub(start); got != want {
				t.Fatalf("locked for %s, want %s", got, want)
			}
			f.clock.Set(start.Add(want - time.Second))
			refused(t)
			f.clock.Set(start.Add(want))
		}
		if _, err := f.verify(u.ID, right(), 1); err != nil {
			t.Fatalf("after the last lock: %v", err)
		}
		start := f.clock.Now()
		failFive(t)
		tf, _ := f.st.GetTwoFactor(context.Background(), u.ID)
		if got := tf.LockedUntil.Sub(start); got != 5*time.Minute {
			t.Fatalf("after a success the next lock lasts %s, want 5m", got)
		}
	})
	t.Run("the audit log records every lockout", func(t *testing.T) {
		if n := len(f.audits(t, u.ID, "two_factor.lockout")); n < 7 {
			t.Fatalf("%d lockout events, want at least 7", n)
		}
	})
}

// TestConfirmationsRacingEachOther: two tabs (or two devices) confirm an
// enrolment of the same user at once, each with its own secret. Before, both
// read "no factor yet" and both wrote theirs: the last write won silently,
// and the first tab's authenticator app held a secret that no longer worked.
func TestConfirmationsRacingEachOther(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		const racers = 8
		for round := range 3 {
			u := f.user(t, fmt.Sprintf("racer-%d", round))
			secrets := make([]string, racers)
			codes := make([]string, racers)
			for i := range secrets {
				en, err := f.svc.BeginTOTP(u, "Gatehouse")
				if err != nil {
					t.Fatal(err)
				}
				secrets[i], codes[i] = en.Secret, rfc6238(en.Secret, f.clock.Now())
			}
			errs := make([]error, racers)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range racers {
				wg.Go(func() {
					<-start
					_, errs[i] = f.svc.ConfirmTOTP(ctx, twofactor.ConfirmInput{UserID: u.ID, Secret: secrets[i], Code: codes[i], PastSteps: 1})
				})
			}
			close(start)
			wg.Wait()
			winner := -1
			for i, err := range errs {
				switch {
				case err == nil && winner >= 0:
					t.Fatalf("round %d: confirmations %d and %d both succeeded", round, winner, i)
				case err == nil:
					winner = i
				case !errors.Is(err, twofactor.ErrAlreadyEnabled):
					t.Fatalf("round %d: confirmation %d: %v, want ErrAlreadyEnabled", round, i, err)
				}
			}
			if winner < 0 {
				t.Fatalf("round %d: no confirmation succeeded: %v", round, errs)
			}
			// The stored secret is the winner's: its codes work, a loser's do not.
			f.clock.Advance(30 * time.Second)
			loser := (winner + 1) % racers
			if _, err := f.verify(u.ID, rfc6238(secrets[loser], f.clock.Now()), 0); err == nil {
				t.Fatalf("round %d: a losing confirmation's secret opens the account", round)
			}
			if _, err := f.verify(u.ID, rfc6238(secrets[winner], f.clock.Now()), 0); err != nil {
				t.Fatalf("round %d: the winning confirmation's secret: %v", round, err)
			}
			if n := len(f.audits(t, u.ID, "two_factor.enabled")); n != 1 {
				t.Fatalf("round %d: %d two_factor.enabled events, want 1", round, n)
			}
		}
	})
}
