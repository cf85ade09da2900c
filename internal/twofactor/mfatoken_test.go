package twofactor_test

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

func TestMFAToken(t *testing.T) {
	forEachBackend(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		f.user(t, "mia")
		issue := func(t *testing.T, client string) (string, twofactor.MFAToken) {
			t.Helper()
			tok, mt, err := f.svc.IssueMFAToken(ctx, "mia", client)
			if err != nil {
				t.Fatalf("issue: %v", err)
			}
			return tok, mt
		}

		t.Run("it opens for its client and names the user, client and five-minute lifetime", func(t *testing.T) {
			tok, mt := issue(t, "mobile")
			got, err := f.svc.OpenMFAToken(ctx, tok, "mobile")
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			if got.ID != mt.ID || got.UserID != "mia" || got.ClientID != "mobile" ||
				!got.IssuedAt.Equal(f.clock.Now()) || got.ExpiresAt.Sub(got.IssuedAt) != 5*time.Minute {
				t.Fatalf("opened %+v, issued %+v", got, mt)
			}
		})
		t.Run("it is opaque: neither the user nor the client can be read from it", func(t *testing.T) {
			tok, _ := issue(t, "mobile")
			raw, err := base64.RawURLEncoding.DecodeString(tok)
			if err != nil {
				t.Fatalf("not base64url: %v", err)
			}
			if strings.Contains(string(raw), "mia") || strings.Contains(string(raw), "mobile") {
				t.Fatal("the token carries the user or client in the clear")
			}
		})
		t.Run("unknown, malformed, tampered or another client's tokens are refused", func(t *testing.T) {
			tok, _ := issue(t, "mobile")
			raw, _ := base64.RawURLEncoding.DecodeString(tok)
			raw[len(raw)-1] ^= 1
			for name, tc := range map[string]struct{ token, client string }{
				"empty":            {"", "mobile"},
				"not base64":       {"!!!", "mobile"},
				"too long":         {strings.Repeat("a", 5000), "mobile"},
				"tampered":         {base64.RawURLEncoding.EncodeToString(raw), "mobile"},
				"another client's": {tok, "web"},
			} {
				if _, err := f.svc.OpenMFAToken(ctx, tc.token, tc.client); !errors.Is(err, twofactor.ErrInvalidMFAToken) {
					t.Errorf("%s: %v", name, err)
				}
			}
		})
		t.Run("it expires after five minutes", func(t *testing.T) {
			tok, _ := issue(t, "mobile")
			f.clock.Advance(5*time.Minute - time.Second)
			if _, err := f.svc.OpenMFAToken(ctx, tok, "mobile"); err != nil {
				t.Fatalf("just before expiry: %v", err)
			}
			f.clock.Advance(time.Second)
			if _, err := f.svc.OpenMFAToken(ctx, tok, "mobile"); !errors.Is(err, twofactor.ErrInvalidMFAToken) {
				t.Fatalf("at expiry: %v", err)
			}
		})
		t.Run("it completes once; afterwards it neither opens nor completes", func(t *testing.T) {
			tok, mt := issue(t, "mobile")
			if err := f.svc.CompleteMFAToken(ctx, mt); err != nil {
				t.Fatalf("complete: %v", err)
			}
			if err := f.svc.CompleteMFAToken(ctx, mt); !errors.Is(err, twofactor.ErrInvalidMFAToken) {
				t.Fatalf("second completion: %v", err)
			}
			if _, err := f.svc.OpenMFAToken(ctx, tok, "mobile"); !errors.Is(err, twofactor.ErrInvalidMFAToken) {
				t.Fatalf("open after completion: %v", err)
			}
		})
		t.Run("past the cap of open tokens per user the oldest are dropped and the newest work", func(t *testing.T) {
			f.user(t, "flood")
			var issued []twofactor.MFAToken
			for i := 0; i < twofactor.MaxOpenMFATokens+2; i++ {
				f.clock.Advance(time.Millisecond)
				_, mt, err := f.svc.IssueMFAToken(ctx, "flood", "mobile")
				if err != nil {
					t.Fatalf("issue %d: %v", i, err)
				}
				issued = append(issued, mt)
			}
			for i, mt := range issued[:2] {
				if err := f.svc.CompleteMFAToken(ctx, mt); !errors.Is(err, twofactor.ErrInvalidMFAToken) {
					t.Fatalf("dropped token %d completed: %v", i, err)
				}
			}
			if err := f.svc.CompleteMFAToken(ctx, issued[2]); err != nil {
				t.Fatalf("the oldest kept token: %v", err)
			}
			if err := f.svc.CompleteMFAToken(ctx, issued[len(issued)-1]); err != nil {
				t.Fatalf("the newest token: %v", err)
			}
		})
		t.Run("a completion across a counter-window boundary is still seen", func(t *testing.T) {
			// Issue just before the top of the hour, complete just after.
			f.clock.Set(t0.Truncate(time.Hour).Add(2*time.Hour - time.Minute))
			tok, mt := issue(t, "mobile")
			f.clock.Advance(2 * time.Minute)
			if err := f.svc.CompleteMFAToken(ctx, mt); err != nil {
				t.Fatalf("complete: %v", err)
			}
			if _, err := f.svc.OpenMFAToken(ctx, tok, "mobile"); !errors.Is(err, twofactor.ErrInvalidMFAToken) {
				t.Fatalf("open after completion: %v", err)
			}
		})
		t.Run("of twenty concurrent completions exactly one wins", func(t *testing.T) {
			_, mt := issue(t, "mobile")
			var wins, losses atomic.Int32
			var wg sync.WaitGroup
			for range 20 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					switch err := f.svc.CompleteMFAToken(ctx, mt); {
					case err == nil:
						wins.Add(1)
					case errors.Is(err, twofactor.ErrInvalidMFAToken):
						losses.Add(1)
					default:
						t.Errorf("complete: %v", err)
					}
				}()
			}
			wg.Wait()
			if wins.Load() != 1 || losses.Load() != 19 {
				t.Fatalf("%d wins, %d losses", wins.Load(), losses.Load())
			}
		})
		t.Run("an opened token altered to name another user or client spends nothing", func(t *testing.T) {
			_, mt := issue(t, "mobile")
			forged := mt
			forged.ClientID = "web"
			if err := f.svc.CompleteMFAToken(ctx, forged); !errors.Is(err, twofactor.ErrInvalidMFAToken) {
				t.Fatalf("forged client: %v", err)
			}
			forged = mt
			forged.UserID = "someone-else"
			if err := f.svc.CompleteMFAToken(ctx, forged); !errors.Is(err, twofactor.ErrInvalidMFAToken) {
				t.Fatalf("forged user: %v", err)
			}
			if err := f.svc.CompleteMFAToken(ctx, mt); err != nil {
				t.Fatalf("the real token no longer completes: %v", err)
			}
		})
	})
}

func TestVerifyMFAToken(t *testing.T) {
	f := newFixture(t, gormstoretest.Open(t))
	g := newGateway(t, f)
	ctx := context.Background()
	u := f.smsUser(t, "sid", g.hook)
	issue := func(t *testing.T) twofactor.MFAToken {
		t.Helper()
		_, mt, err := f.svc.IssueMFAToken(ctx, u.ID, "mobile")
		if err != nil {
			t.Fatal(err)
		}
		return mt
	}
	send := func(t *testing.T, binding string) string {
		t.Helper()
		if _, err := f.svc.SendLoginCode(ctx, twofactor.LoginCodeInput{User: u, BindingID: binding, Webhook: g.hook}); err != nil {
			t.Fatalf("send: %v", err)
		}
		return g.last(t).Token
	}
	verify := func(mt twofactor.MFAToken, code string) (twofactor.Result, error) {
		return f.svc.VerifyMFAToken(ctx, mt, twofactor.VerifyInput{Code: code, AllowRecovery: true})
	}

	t.Run("a code sent for the token itself is accepted once", func(t *testing.T) {
		mt := issue(t)
		code := send(t, mt.ID)
		res, err := verify(mt, code)
		if err != nil || res.Method != "sms" || strings.Join(res.AMR, ",") != "otp,mfa" {
			t.Fatalf("verify: %+v, %v", res, err)
		}
		if _, err := verify(mt, code); !errors.Is(err, twofactor.ErrInvalidCode) {
			t.Fatalf("second use: %v", err)
		}
	})
	t.Run("a code the password grant sent for this user and client is accepted", func(t *testing.T) {
		mt := issue(t)
		code := send(t, twofactor.PasswordGrantBinding("mobile", u.ID))
		if _, err := verify(mt, code); err != nil {
			t.Fatalf("verify: %v", err)
		}
	})
	t.Run("a code sent for another sign-in, or for another client's password grant, is refused", func(t *testing.T) {
		other := issue(t)
		code := send(t, other.ID)
		if _, err := verify(issue(t), code); !errors.Is(err, twofactor.ErrInvalidCode) {
			t.Fatalf("another token's code: %v", err)
		}
		code = send(t, twofactor.PasswordGrantBinding("web", u.ID))
		if _, err := verify(issue(t), code); !errors.Is(err, twofactor.ErrInvalidCode) {
			t.Fatalf("another client's password-grant code: %v", err)
		}
	})
	t.Run("wrong codes count toward the user's one lockout", func(t *testing.T) {
		u = f.smsUser(t, "sue", g.hook)
		mt := issue(t)
		for range twofactor.MaxAttempts - 1 {
			if _, err := verify(mt, "000000"); !errors.Is(err, twofactor.ErrInvalidCode) {
				t.Fatalf("wrong code: %v", err)
			}
		}
		// The fifth wrong code arrives through the hosted pages' Verify.
		if _, err := f.svc.Verify(ctx, twofactor.VerifyInput{UserID: u.ID, Code: "000000", BindingID: "page-login"}); !errors.Is(err, twofactor.ErrInvalidCode) {
			t.Fatalf("fifth wrong code: %v", err)
		}
		code := send(t, mt.ID)
		if _, err := verify(mt, code); !errors.Is(err, twofactor.ErrLocked) {
			t.Fatalf("right code during the lockout: %v", err)
		}
	})
}
