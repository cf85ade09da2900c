package twofactor_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/notify"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

type delivered struct {
	Event string `json:"event"`
	User  struct {
		ID          string `json:"id"`
		Email       string `json:"email"`
		PhoneNumber string `json:"phoneNumber"`
	} `json:"user"`
	Token       string `json:"token"`
	Channel     string `json:"channel"`
	Destination string `json:"destination"`
	ExpiresAt   string `json:"expiresAt"`
	ID          string `json:"id"`
}

// gateway is a local webhook receiver that captures codes the way an SMS
// gateway would.
type gateway struct {
	mu   sync.Mutex
	msgs []delivered
	hook notify.Webhook
}

func newGateway(t *testing.T, f *fixture) *gateway {
	t.Helper()
	g := &gateway{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := notify.VerifySignature("gw-secret", r.Header.Get(notify.SignatureHeader), body, time.Now(), time.Minute); err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var d delivered
		if err := json.Unmarshal(body, &d); err != nil {
			http.Error(w, "bad json", http.StatusBadRequest)
			return
		}
		g.mu.Lock()
		g.msgs = append(g.msgs, d)
		g.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	g.hook = notify.Webhook{Endpoint: srv.URL, TimeoutMS: 2000, Secret: "gw-secret"}
	f.svc.Notifier = &notify.Notifier{AllowPrivate: true, Logger: f.svc.Logger, Audit: f.svc.Audit, Backoff: 10 * time.Millisecond}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = f.svc.Notifier.Close(ctx)
	})
	return g
}

func (g *gateway) last(t *testing.T) delivered {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.msgs) == 0 {
		t.Fatal("the gateway received nothing")
	}
	return g.msgs[len(g.msgs)-1]
}

// smsUser creates a user with a verified phone and SMS codes enabled.
func (f *fixture) smsUser(t *testing.T, id string, hook notify.Webhook) store.User {
	t.Helper()
	u, _, err := f.st.PutUser(context.Background(), store.User{
		ID: id, Email: id + "@example.com", PhoneNumber: "+15551234567", PhoneVerified: true,
	}, 0)
	if err != nil {
		t.Fatal(err)
	}
	codes, err := f.svc.EnableCodeMethod(context.Background(), twofactor.EnableCodeInput{UserID: u.ID, Method: "sms", Webhook: hook})
	if err != nil || len(codes) != 10 {
		t.Fatalf("enable sms: %d codes, %v", len(codes), err)
	}
	return u
}

func TestSMSLoginCodes(t *testing.T) {
	f := newFixture(t, gormstoretest.Open(t))
	g := newGateway(t, f)
	ctx := context.Background()
	u := f.smsUser(t, "sam", g.hook)
	send := func(binding string) (twofactor.Sent, error) {
		return f.svc.SendLoginCode(ctx, twofactor.LoginCodeInput{User: u, BindingID: binding, PastSteps: 1, Webhook: g.hook})
	}
	verify := func(binding, code string) error {
		_, err := f.svc.Verify(ctx, twofactor.VerifyInput{UserID: u.ID, Code: code, BindingID: binding, AllowRecovery: true})
		return err
	}

	t.Run("the code reaches the gateway with the documented payload", func(t *testing.T) {
		sent, err := send("login-1")
		if err != nil || !sent.Delivered {
			t.Fatalf("send: %+v, %v", sent, err)
		}
		d := g.last(t)
		if d.Event != "two_factor.code" || d.Channel != "sms" || d.Destination != "+15551234567" ||
			d.User.ID != "sam" || d.User.PhoneNumber != "+15551234567" || d.ID != sent.ID || len(d.Token) != 6 ||
			d.ExpiresAt != f.clock.Now().Add(10*time.Minute).Format(time.RFC3339) {
			t.Fatalf("payload %+v", d)
		}
	})
	t.Run("it logs in once, and only for the login it was sent for", func(t *testing.T) {
		code := g.last(t).Token
		if err := verify("login-2", code); !errors.Is(err, twofactor.ErrInvalidCode) {
			t.Fatalf("another login's binding: %v", err)
		}
		res, err := f.svc.Verify(ctx, twofactor.VerifyInput{UserID: u.ID, Code: code, BindingID: "login-1"})
		if err != nil || res.Method != "sms" || strings.Join(res.AMR, ",") != "otp,mfa" {
			t.Fatalf("verify: %+v, %v", res, err)
		}
		if err := verify("login-1", code); !errors.Is(err, twofactor.ErrInvalidCode) {
			t.Fatalf("second use: %v", err)
		}
	})
	t.Run("a code expires after ten minutes", func(t *testing.T) {
		if _, err := send("login-3"); err != nil {
			t.Fatal(err)
		}
		code := g.last(t).Token
		f.clock.Advance(10 * time.Minute)
		if err := verify("login-3", code); !errors.Is(err, twofactor.ErrInvalidCode) {
			t.Fatalf("expired code: %v", err)
		}
	})
	t.Run("no more than five codes an hour go to one destination", func(t *testing.T) {
		f.clock.Advance(2 * time.Hour)
		for i := range 5 {
			if _, err := send(userID("burst", i)); err != nil {
				t.Fatalf("send %d: %v", i+1, err)
			}
		}
		if _, err := send("burst-6"); !errors.Is(err, twofactor.ErrTooManySends) {
			t.Fatalf("sixth send: %v, want ErrTooManySends", err)
		}
		f.clock.Advance(time.Hour + time.Second)
		if _, err := send("later"); err != nil {
			t.Fatalf("an hour later: %v", err)
		}
	})
	t.Run("the code never appears in logs or audit details", func(t *testing.T) {
		code := g.last(t).Token
		if strings.Contains(f.logs.String(), `"`+code+`"`) || strings.Contains(f.logs.String(), "="+code) {
			t.Fatalf("code %s logged:\n%s", code, f.logs.String())
		}
		for _, ev := range f.audits(t, u.ID, "") {
			for k, v := range ev.Detail {
				if v == code {
					t.Fatalf("audit %s detail %s carries the code", ev.Type, k)
				}
			}
		}
	})
	t.Run("without a webhook nothing is sent", func(t *testing.T) {
		if _, err := f.svc.SendLoginCode(ctx, twofactor.LoginCodeInput{User: u, BindingID: "x"}); !errors.Is(err, twofactor.ErrNoWebhook) {
			t.Fatalf("send: %v", err)
		}
	})
}

func TestEnableCodeMethod(t *testing.T) {
	f := newFixture(t, gormstoretest.Open(t))
	g := newGateway(t, f)
	ctx := context.Background()
	u, _, err := f.st.PutUser(ctx, store.User{ID: "una", Email: "una@example.com", PhoneNumber: "+15550000001"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		in     twofactor.EnableCodeInput
		want   error
		verify bool
	}{
		{"sms to an unverified phone is refused", twofactor.EnableCodeInput{UserID: u.ID, Method: "sms", Webhook: g.hook}, twofactor.ErrUnverified, false},
		{"e-mail to an unverified address is refused", twofactor.EnableCodeInput{UserID: u.ID, Method: "email", Webhook: g.hook}, twofactor.ErrUnverified, false},
		{"no webhook is refused", twofactor.EnableCodeInput{UserID: u.ID, Method: "sms"}, twofactor.ErrNoWebhook, false},
		{"an unknown method is refused", twofactor.EnableCodeInput{UserID: u.ID, Method: "pigeon", Webhook: g.hook}, twofactor.ErrBadMethod, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.verify {
				u.PhoneVerified = true
				if _, _, err := f.st.PutUser(ctx, u, 0); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := f.svc.EnableCodeMethod(ctx, tt.in); !errors.Is(err, tt.want) {
				t.Fatalf("enable: %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("sms to a verified phone is enabled", func(t *testing.T) {
		if _, err := f.svc.EnableCodeMethod(ctx, twofactor.EnableCodeInput{UserID: u.ID, Method: "sms", Webhook: g.hook}); err != nil {
			t.Fatalf("enable: %v", err)
		}
		st, _ := f.svc.Status(ctx, u.ID)
		if !st.Enabled || st.Method != "sms" || st.Destination != "+15550000001" || st.RecoveryCodesRemaining != 10 {
			t.Fatalf("status %+v", st)
		}
	})
}

func TestVerificationCodes(t *testing.T) {
	f := newFixture(t, gormstoretest.Open(t))
	g := newGateway(t, f)
	ctx := context.Background()
	u := f.user(t, "vera")
	send := func(binding, dest string) {
		t.Helper()
		_, err := f.svc.SendCode(ctx, twofactor.SendInput{
			User: u, Purpose: twofactor.PurposeVerify, Channel: "sms", Destination: dest, BindingID: binding, Webhook: g.hook,
		})
		if err != nil {
			t.Fatalf("send: %v", err)
		}
	}

	t.Run("the right code proves the destination once", func(t *testing.T) {
		send("verify-1", "+15550000002")
		code := g.last(t).Token
		otc, err := f.svc.VerifyCode(ctx, twofactor.VerifyCodeInput{UserID: u.ID, BindingID: "verify-1", Code: code})
		if err != nil || otc.Destination != "+15550000002" || otc.Channel != "sms" {
			t.Fatalf("verify: %+v, %v", otc, err)
		}
		if _, err := f.svc.VerifyCode(ctx, twofactor.VerifyCodeInput{UserID: u.ID, BindingID: "verify-1", Code: code}); !errors.Is(err, twofactor.ErrInvalidCode) {
			t.Fatalf("reuse: %v", err)
		}
	})
	t.Run("another user cannot spend it", func(t *testing.T) {
		send("verify-2", "+15550000002")
		code := g.last(t).Token
		other := f.user(t, "otto")
		if _, err := f.svc.VerifyCode(ctx, twofactor.VerifyCodeInput{UserID: other.ID, BindingID: "verify-2", Code: code}); !errors.Is(err, twofactor.ErrInvalidCode) {
			t.Fatalf("foreign code: %v", err)
		}
	})
	t.Run("a verification code is no login code", func(t *testing.T) {
		v := f.smsUser(t, "lena", g.hook)
		_, err := f.svc.SendCode(ctx, twofactor.SendInput{
			User: v, Purpose: twofactor.PurposeVerify, Channel: "sms", Destination: "+15551234567", BindingID: "mixed", Webhook: g.hook,
		})
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.svc.Verify(ctx, twofactor.VerifyInput{UserID: v.ID, Code: g.last(t).Token, BindingID: "mixed"})
		if !errors.Is(err, twofactor.ErrInvalidCode) {
			t.Fatalf("verify code used to log in: %v", err)
		}
	})
	t.Run("after five wrong tries even the right code is refused", func(t *testing.T) {
		send("verify-3", "+15550000003")
		code := g.last(t).Token
		wrong := "000000"
		if code == wrong {
			wrong = "111111"
		}
		for range 5 {
			if _, err := f.svc.VerifyCode(ctx, twofactor.VerifyCodeInput{UserID: u.ID, BindingID: "verify-3", Code: wrong}); !errors.Is(err, twofactor.ErrInvalidCode) {
				t.Fatal(err)
			}
		}
		if _, err := f.svc.VerifyCode(ctx, twofactor.VerifyCodeInput{UserID: u.ID, BindingID: "verify-3", Code: code}); !errors.Is(err, twofactor.ErrLocked) {
			t.Fatalf("right code after five wrong ones: %v, want ErrLocked", err)
		}
	})
}

// A caller that writes what a code proves in its own transaction (the
// admin API's PUT /User) counts the try before the transaction, spends the
// code inside it and audits after it.
func TestVerificationCodeSpentInACallersTransaction(t *testing.T) {
	for _, be := range gormstoretest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			f := newFixture(t, be.Open(t))
			g := newGateway(t, f)
			ctx := context.Background()
			u := f.user(t, "wanda")
			send := func(binding string) string {
				t.Helper()
				_, err := f.svc.SendCode(ctx, twofactor.SendInput{
					User: u, Purpose: twofactor.PurposeVerify, Channel: "sms", Destination: "+15550000009", BindingID: binding, Webhook: g.hook,
				})
				if err != nil {
					t.Fatalf("send: %v", err)
				}
				return g.last(t).Token
			}
			in := func(binding, code string) twofactor.VerifyCodeInput {
				return twofactor.VerifyCodeInput{UserID: u.ID, BindingID: binding, Code: code}
			}
			refused := errors.New("the caller's write failed")

			t.Run("a transaction that rolls back after the spend leaves the code usable and the try counted", func(t *testing.T) {
				code := send("tx-1")
				try, err := f.svc.BeginVerifyCode(ctx, in("tx-1", code))
				if err != nil {
					t.Fatal(err)
				}
				err = f.st.InTx(ctx, func(ctx context.Context) error {
					if _, err := try.Spend(ctx); err != nil {
						return err
					}
					return refused
				})
				if !errors.Is(err, refused) {
					t.Fatalf("transaction: %v", err)
				}
				try.Finish(ctx, false)
				if n := len(f.audits(t, u.ID, audit.TwoFactorSuccess)); n != 0 {
					t.Fatalf("%d success events for a write that failed", n)
				}
				if _, err := f.svc.VerifyCode(ctx, in("tx-1", code)); err != nil {
					t.Fatalf("the code after the rollback: %v", err)
				}
				if n, _ := f.st.GetCounter(ctx, "2fa:verify-attempt:tx-1", twofactor.CodeTTL, f.clock.Now()); n != 2 {
					t.Fatalf("%d tries counted, want 2", n)
				}
			})
			t.Run("a wrong code inside the transaction is refused and audited after it", func(t *testing.T) {
				code := send("tx-2")
				wrong := "000000"
				if code == wrong {
					wrong = "111111"
				}
				before := len(f.audits(t, u.ID, audit.TwoFactorFailure))
				try, err := f.svc.BeginVerifyCode(ctx, in("tx-2", wrong))
				if err != nil {
					t.Fatal(err)
				}
				err = f.st.InTx(ctx, func(ctx context.Context) error {
					_, err := try.Spend(ctx)
					return err
				})
				if !errors.Is(err, twofactor.ErrInvalidCode) {
					t.Fatalf("wrong code: %v", err)
				}
				try.Finish(ctx, false)
				if n := len(f.audits(t, u.ID, audit.TwoFactorFailure)) - before; n != 1 {
					t.Fatalf("%d new failure events, want 1", n)
				}
			})
			t.Run("tries counted before transactions that rolled back still lock the code", func(t *testing.T) {
				code := send("tx-3")
				for range twofactor.MaxAttempts {
					try, err := f.svc.BeginVerifyCode(ctx, in("tx-3", code))
					if err != nil {
						t.Fatal(err)
					}
					_ = f.st.InTx(ctx, func(ctx context.Context) error {
						if _, err := try.Spend(ctx); err != nil {
							return err
						}
						return refused
					})
				}
				if _, err := f.svc.BeginVerifyCode(ctx, in("tx-3", code)); !errors.Is(err, twofactor.ErrLocked) {
					t.Fatalf("the sixth try: %v, want ErrLocked", err)
				}
			})
			t.Run("a malformed code is refused before any transaction", func(t *testing.T) {
				if _, err := f.svc.BeginVerifyCode(ctx, in("tx-4", "12ab")); !errors.Is(err, twofactor.ErrInvalidCode) {
					t.Fatalf("malformed: %v", err)
				}
			})
		})
	}
}

func TestTOTPWebhook(t *testing.T) {
	f := newFixture(t, gormstoretest.Open(t))
	g := newGateway(t, f)
	ctx := context.Background()
	u, sec, _ := f.enrol(t, "tina")
	f.clock.Advance(step(1))

	sent, err := f.svc.SendLoginCode(ctx, twofactor.LoginCodeInput{User: u, PastSteps: 1, Webhook: g.hook})
	if err != nil || !sent.Delivered {
		t.Fatalf("send: %+v, %v", sent, err)
	}
	d := g.last(t)
	t.Run("the webhook carries the current TOTP code, as oathtool computes it", func(t *testing.T) {
		if d.Channel != "totp" || d.Token != oathtool(t, sec, f.clock.Now()) || d.User.Email != "tina@example.com" {
			t.Fatalf("payload %+v", d)
		}
		// Valid for this step and one past step: until the end of the next one.
		if want := f.clock.Now().Add(step(2)).Format(time.RFC3339); d.ExpiresAt != want {
			t.Fatalf("expiresAt %s, want %s", d.ExpiresAt, want)
		}
	})
	t.Run("the delivered code logs in once", func(t *testing.T) {
		if _, err := f.verify(u.ID, d.Token, 1); err != nil {
			t.Fatalf("verify: %v", err)
		}
		if _, err := f.verify(u.ID, d.Token, 1); !errors.Is(err, twofactor.ErrCodeReused) {
			t.Fatalf("again: %v", err)
		}
	})
	t.Run("a failing gateway does not fail the send", func(t *testing.T) {
		dead := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "down", http.StatusServiceUnavailable)
		}))
		defer dead.Close()
		sent, err := f.svc.SendLoginCode(ctx, twofactor.LoginCodeInput{User: u, PastSteps: 1, Webhook: notify.Webhook{Endpoint: dead.URL}})
		if err != nil || sent.Delivered {
			t.Fatalf("send: %+v, %v", sent, err)
		}
	})
}
