package account_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/account"
	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

var cheapArgon2 = secret.Argon2Params{MemoryKiB: 64, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}

type fixture struct {
	st   store.Store
	auth *account.Authenticator
	now  time.Time
}

func newFixture(t *testing.T, st store.Store, throttle account.Throttle) *fixture {
	t.Helper()
	f := &fixture{st: st, now: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
	hasher := secret.NewPasswordHasher(cheapArgon2, 0)
	clock := func() time.Time { return f.now }
	f.auth = &account.Authenticator{
		Store:    st,
		Hasher:   hasher,
		Audit:    &audit.Recorder{Store: st, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: clock},
		Throttle: throttle,
		Now:      clock,
	}
	return f
}

func (f *fixture) user(t *testing.T, id, email, password string, inactive bool) {
	t.Helper()
	hash := ""
	if password != "" {
		var err error
		hash, err = f.auth.Hasher.Hash(context.Background(), password)
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := f.st.PutUser(context.Background(), store.User{ID: id, Email: email, PasswordHash: hash, Inactive: inactive, Doc: []byte(`{}`)}, 0); err != nil {
		t.Fatalf("put user %s: %v", id, err)
	}
}

// check tries a password. The clock ticks a second per attempt so audit
// events list in order; every window in these tests starts on the hour.
func (f *fixture) check(login, password, addr string) (store.User, error) {
	f.now = f.now.Add(time.Second)
	return f.auth.CheckPassword(context.Background(), account.Attempt{Login: login, Password: password, RemoteAddr: addr})
}

// lastAudit returns the newest audit event.
func (f *fixture) lastAudit(t *testing.T) store.AuditEvent {
	t.Helper()
	events, _, err := f.st.ListAudit(context.Background(), store.AuditFilter{}, store.Page{Count: 1, Page: 1})
	if err != nil || len(events) == 0 {
		t.Fatalf("ListAudit: %v (%d events)", err, len(events))
	}
	return events[0]
}

func TestCheckPassword(t *testing.T) {
	for _, b := range gormstoretest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			f := newFixture(t, b.Open(t), account.DefaultThrottle)
			f.user(t, "alice", "alice@example.com", "correct horse", false)
			f.user(t, "olga", "olga@example.com", "correct horse", true)
			f.user(t, "nopass", "", "", false)

			tests := []struct {
				name, login, password string
				wantUser              string
				wantEvent, reason     string
				disabled              bool // ErrAccountDisabled, not the plain ErrInvalidCredentials
			}{
				{"the right password signs in by id", "alice", "correct horse", "alice", audit.LoginSuccess, "", false},
				{"the right password signs in by email, in any case", "Alice@Example.COM", "correct horse", "alice", audit.LoginSuccess, "", false},
				{"a wrong password is refused", "alice", "wrong horse", "", audit.LoginFailure, "wrong_password", false},
				{"an unknown user is refused", "nobody", "correct horse", "", audit.LoginFailure, "unknown_user", false},
				{"an inactive user with the right password is told the account is disabled", "olga", "correct horse", "", audit.LoginFailure, "inactive", true},
				{"an inactive user with a wrong password is refused like anyone", "olga", "wrong horse", "", audit.LoginFailure, "inactive", false},
				{"a user without a password cannot sign in with an empty one", "nopass", "", "", audit.LoginFailure, "wrong_password", false},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					u, err := f.check(tt.login, tt.password, "192.0.2.1")
					if tt.wantUser != "" {
						if err != nil || u.ID != tt.wantUser {
							t.Fatalf("CheckPassword = %q, %v; want %q", u.ID, err, tt.wantUser)
						}
					} else {
						if !errors.Is(err, account.ErrInvalidCredentials) || u.ID != "" {
							t.Fatalf("CheckPassword = %q, %v; want ErrInvalidCredentials", u.ID, err)
						}
						if errors.Is(err, account.ErrAccountDisabled) != tt.disabled {
							t.Fatalf("CheckPassword = %v; disabled %v, want %v", err, !tt.disabled, tt.disabled)
						}
						if !tt.disabled && err.Error() != account.ErrInvalidCredentials.Error() {
							t.Fatalf("error text %q gives the reason away", err)
						}
					}
					e := f.lastAudit(t)
					if e.Type != tt.wantEvent || e.Detail["reason"] != tt.reason || e.RemoteAddr != "192.0.2.1" {
						t.Fatalf("audit event = %+v, want %s reason %q", e, tt.wantEvent, tt.reason)
					}
					if _, leaked := e.Detail["password"]; leaked {
						t.Fatal("audit event carries the password")
					}
				})
			}
		})
	}
}

func TestThrottling(t *testing.T) {
	throttle := account.Throttle{PerAccount: 3, PerAddress: 5, Window: 15 * time.Minute}
	throttled := func(t *testing.T, err error) {
		t.Helper()
		var te *account.ThrottledError
		if !errors.As(err, &te) || !errors.Is(err, account.ErrThrottled) {
			t.Fatalf("err = %v, want a ThrottledError", err)
		}
		if te.RetryAfter() < 1 || te.RetryAfter() > int(throttle.Window/time.Second) {
			t.Fatalf("RetryAfter = %d s, want within the window", te.RetryAfter())
		}
	}

	t.Run("an account is throttled from the guessing address, says so, and frees up when the window passes", func(t *testing.T) {
		f := newFixture(t, gormstoretest.Open(t), throttle)
		f.user(t, "alice", "", "correct horse", false)
		for i := range throttle.PerAccount {
			if _, err := f.check("alice", "wrong", "198.51.100.1"); !errors.Is(err, account.ErrInvalidCredentials) || errors.Is(err, account.ErrThrottled) {
				t.Fatalf("failure %d: %v", i, err)
			}
		}
		_, err := f.check("alice", "correct horse", "198.51.100.1")
		throttled(t, err)
		if e := f.lastAudit(t); e.Type != audit.LoginThrottled {
			t.Fatalf("audit event %q, want %q", e.Type, audit.LoginThrottled)
		}
		f.now = f.now.Add(throttle.Window)
		if u, err := f.check("alice", "correct horse", "198.51.100.1"); err != nil || u.ID != "alice" {
			t.Fatalf("after the window: %q, %v", u.ID, err)
		}
	})

	t.Run("failures from other addresses do not lock the owner out", func(t *testing.T) {
		f := newFixture(t, gormstoretest.Open(t), throttle)
		f.user(t, "alice", "", "correct horse", false)
		for i := range 4 * throttle.PerAccount {
			_, _ = f.check("alice", "wrong", fmt.Sprintf("198.51.100.%d", i/throttle.PerAccount+1))
		}
		if u, err := f.check("alice", "correct horse", "203.0.113.9"); err != nil || u.ID != "alice" {
			t.Fatalf("the owner from her own address: %q, %v", u.ID, err)
		}
	})

	t.Run("an address is throttled after failures on many accounts", func(t *testing.T) {
		f := newFixture(t, gormstoretest.Open(t), throttle)
		f.user(t, "alice", "", "correct horse", false)
		for i := range throttle.PerAddress {
			if _, err := f.check(fmt.Sprintf("guess%d", i), "wrong", "192.0.2.66"); !errors.Is(err, account.ErrInvalidCredentials) {
				t.Fatalf("failure %d: %v", i, err)
			}
		}
		_, err := f.check("alice", "correct horse", "192.0.2.66")
		throttled(t, err)
		if u, err := f.check("alice", "correct horse", "192.0.2.67"); err != nil || u.ID != "alice" {
			t.Fatalf("right password from another address: %q, %v", u.ID, err)
		}
	})

	t.Run("failures for an unknown name count, so guessing names is throttled too", func(t *testing.T) {
		f := newFixture(t, gormstoretest.Open(t), throttle)
		for range throttle.PerAccount {
			_, _ = f.check("ghost", "wrong", "198.51.100.1")
		}
		_, err := f.check("ghost", "wrong", "198.51.100.1")
		throttled(t, err)
	})

	t.Run("a success forgives the owner's earlier failures from that address", func(t *testing.T) {
		f := newFixture(t, gormstoretest.Open(t), throttle)
		f.user(t, "alice", "", "correct horse", false)
		for round := range 4 {
			// Two rounds of failures would throttle the account from one
			// address without the reset; the address limit (5) is not reached.
			addr := fmt.Sprint("198.51.100.", round/2+1)
			for i := 0; i < throttle.PerAccount-1; i++ {
				_, _ = f.check("alice", "wrong", addr)
			}
			if u, err := f.check("alice", "correct horse", addr); err != nil || u.ID != "alice" {
				t.Fatalf("round %d: %q, %v", round, u.ID, err)
			}
		}
	})

	t.Run("a success costs one reservation of both counters and one release, and resets only a count there is", func(t *testing.T) {
		st := gormstoretest.OpenSQLite(t)
		f := newFixture(t, st, throttle)
		f.user(t, "alice", "", "correct horse", false)
		statements := func(fn func()) int64 {
			before := st.Statements()
			fn()
			return st.Statements() - before
		}
		success := func() {
			if u, err := f.check("alice", "correct horse", "203.0.113.1"); err != nil || u.ID != "alice" {
				t.Fatalf("sign-in: %q, %v", u.ID, err)
			}
		}
		// find the user, reserve on both counters (one statement), release
		// both, audit
		if n := statements(success); n != 4 {
			t.Errorf("a success without failures ran %d statements, want 4", n)
		}
		_, _ = f.check("alice", "wrong", "203.0.113.1")
		// and reset the account's count
		if n := statements(success); n != 5 {
			t.Errorf("a success after a failure ran %d statements, want 5", n)
		}
		n, err := st.GetCounters(context.Background(), []string{"pwfail:user:alice|203.0.113.1", "pwfail:ip:203.0.113.1"}, throttle.Window, f.now)
		if err != nil || n[0] != 0 || n[1] != 1 {
			t.Errorf("counters after the success = %v, %v; want [0 1] (the failure still counts for the address)", n, err)
		}
	})

	t.Run("a throttled attempt does not extend the lock", func(t *testing.T) {
		f := newFixture(t, gormstoretest.Open(t), throttle)
		f.user(t, "alice", "", "correct horse", false)
		for range throttle.PerAccount + 5 {
			_, _ = f.check("alice", "wrong", "198.51.100.1")
		}
		n, err := f.st.GetCounter(context.Background(), "pwfail:user:alice|198.51.100.1", throttle.Window, f.now)
		if err != nil || n != throttle.PerAccount {
			t.Fatalf("counter = %d, %v; want it to stop at %d", n, err, throttle.PerAccount)
		}
	})
}

func TestThrottleHoldsUnderAConcurrentBurst(t *testing.T) {
	throttle := account.Throttle{PerAccount: 10, PerAddress: 50, Window: 15 * time.Minute}
	for _, b := range gormstoretest.Backends(t) {
		t.Run(b.Name+": 60 concurrent wrong passwords are checked at most 10 times, and the right one after them is refused", func(t *testing.T) {
			f := newFixture(t, b.Open(t), throttle)
			f.user(t, "victim", "", "right password", false)
			var wg sync.WaitGroup
			start := make(chan struct{})
			var wrong, refused atomic.Int32
			for i := range 60 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					_, err := f.auth.CheckPassword(context.Background(), account.Attempt{Login: "victim", Password: fmt.Sprint("wrong", i), RemoteAddr: "198.51.100.7"})
					switch {
					case errors.Is(err, account.ErrThrottled):
						refused.Add(1)
					case errors.Is(err, account.ErrInvalidCredentials):
						wrong.Add(1)
					default:
						t.Errorf("attempt %d: %v", i, err)
					}
				}()
			}
			close(start)
			wg.Wait()
			if wrong.Load() != 10 || refused.Load() != 50 {
				t.Fatalf("checked %d, throttled %d; want 10 and 50", wrong.Load(), refused.Load())
			}
			if _, err := f.auth.CheckPassword(context.Background(), account.Attempt{Login: "victim", Password: "right password", RemoteAddr: "198.51.100.7"}); !errors.Is(err, account.ErrThrottled) {
				t.Fatalf("right password after the burst: %v, want throttled", err)
			}
		})
	}
}

// TestAnOfficeBehindOneAddressSignsInAtOnce: a hundred colleagues behind one
// NAT sign in at nine o'clock, all with the right password. Before, every
// attempt reserved its place on the per-address limit (50) on arrival and
// then queued for a hashing slot, so the attempts waiting in line counted as
// failures and correct passwords were refused with "too many failed
// sign-ins". Now an attempt is reserved only once it holds a slot: at most
// as many are counted at once as hash at once.
func TestAnOfficeBehindOneAddressSignsInAtOnce(t *testing.T) {
	for _, b := range gormstoretest.Backends(t) {
		t.Run(b.Name+": 100 right passwords from one address all pass, and wrong ones are still limited", func(t *testing.T) {
			f := newFixture(t, b.Open(t), account.DefaultThrottle)
			f.auth.Hasher = secret.NewPasswordHasher(cheapArgon2, 2)
			const staff = 100
			for i := range staff {
				f.user(t, fmt.Sprint("staff", i), "", fmt.Sprint("password of ", i), false)
			}
			var wg sync.WaitGroup
			start := make(chan struct{})
			errs := make([]error, staff)
			for i := range staff {
				wg.Go(func() {
					<-start
					_, errs[i] = f.auth.CheckPassword(context.Background(), account.Attempt{Login: fmt.Sprint("staff", i), Password: fmt.Sprint("password of ", i), RemoteAddr: "203.0.113.9"})
				})
			}
			close(start)
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Errorf("staff%d: %v", i, err)
				}
			}
			// The per-address limit still counts the wrong ones: 50 are checked,
			// the rest of a burst of 80 is refused unchecked.
			var wrong, refused atomic.Int32
			for i := range 80 {
				wg.Go(func() {
					_, err := f.auth.CheckPassword(context.Background(), account.Attempt{Login: fmt.Sprint("staff", i%staff), Password: "guess", RemoteAddr: "203.0.113.9"})
					switch {
					case errors.Is(err, account.ErrThrottled):
						refused.Add(1)
					case errors.Is(err, account.ErrInvalidCredentials):
						wrong.Add(1)
					default:
						t.Errorf("guess %d: %v", i, err)
					}
				})
			}
			wg.Wait()
			if wrong.Load() != 50 || refused.Load() != 30 {
				t.Fatalf("checked %d, throttled %d; want 50 and 30", wrong.Load(), refused.Load())
			}
		})
	}
}

// slowReserve is a store whose reservations return only after the
// request's deadline has passed, as on a server so loaded that a login's
// hash ends after its deadline.
type slowReserve struct{ store.Store }

func (s slowReserve) ReserveCounters(ctx context.Context, limits []store.CounterLimit, window time.Duration, now time.Time) ([]store.CounterReservation, error) {
	res, err := s.Store.ReserveCounters(context.WithoutCancel(ctx), limits, window, now)
	<-ctx.Done()
	return res, err
}

// TestARightPasswordCheckedPastItsDeadlineGivesItsReservationBack: under
// an overload (gatehouse-bench at c=1024) right passwords were verified
// after their request's deadline, the release of their reservation failed
// with the deadline, and each stayed counted as a failure: after 50 of
// them every sign-in from that address, right or wrong, was paused for 15
// minutes. A release now outlives the request's deadline.
func TestARightPasswordCheckedPastItsDeadlineGivesItsReservationBack(t *testing.T) {
	for _, b := range gormstoretest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			st := b.Open(t)
			f := newFixture(t, slowReserve{st}, account.DefaultThrottle)
			f.user(t, "alice", "", "right password", false)
			for range account.DefaultThrottle.PerAddress + 5 {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
				_, _ = f.auth.CheckPassword(ctx, account.Attempt{Login: "alice", Password: "right password", RemoteAddr: "203.0.113.5"})
				cancel()
			}
			f.auth.Store = st
			if _, err := f.check("alice", "right password", "203.0.113.5"); err != nil {
				t.Fatalf("the right password after the late checks: %v, want accepted", err)
			}
		})
	}
}

// TestTheOwnerIsToldWhenSignInIsPaused: the wrong password that fills an
// account's limit from one address tells the owner (once per window); an
// unknown or inactive account, and the attempts refused after the pause,
// tell nobody.
func TestTheOwnerIsToldWhenSignInIsPaused(t *testing.T) {
	type notice struct {
		user, addr string
		failures   int
		until      time.Time
	}
	f := newFixture(t, gormstoretest.Open(t), account.DefaultThrottle)
	var mu sync.Mutex
	var got []notice
	f.auth.Paused = func(_ context.Context, u store.User, at account.Attempt, failures int, until time.Time) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, notice{u.ID, at.RemoteAddr, failures, until})
	}
	f.user(t, "alice", "alice@example.com", "right password", false)
	f.user(t, "gone", "gone@example.com", "right password", true)
	limit := account.DefaultThrottle.PerAccount
	for _, login := range []string{"alice", "gone", "nobody"} {
		for range limit + 3 {
			_, _ = f.check(login, "guess", "198.51.100.20")
		}
	}
	f.auth.WaitForNotices()
	want := []notice{{"alice", "198.51.100.20", limit, time.Date(2026, 11, 23, 12, 15, 0, 0, time.UTC)}}
	if !slices.Equal(got, want) {
		t.Fatalf("notices %+v, want %+v", got, want)
	}
	t.Run("a new window pauses and tells again", func(t *testing.T) {
		f.now = f.now.Add(account.DefaultThrottle.Window)
		for range limit {
			_, _ = f.check("alice", "guess", "198.51.100.20")
		}
		f.auth.WaitForNotices()
		if len(got) != 2 {
			t.Fatalf("%d notices, want 2", len(got))
		}
	})
}
