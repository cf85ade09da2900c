// Package conformance is the behaviour every store.Store backend must show,
// as one test suite (the pattern of Dex's storage/conformance): a backend's
// own tests call RunTests with a constructor of empty stores. It pins down
// what the interface comments promise, above all the races: optimistic
// versions, single-use tokens and codes, attempt limits and replay guards
// must hold however many callers run at once.
package conformance

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
)

// RunTests runs the suite. newStore must return an empty, ready (migrated)
// store and arrange its cleanup; it is called once per group of tests.
func RunTests(t *testing.T, newStore func(t testing.TB) store.Store) {
	groups := []struct {
		name string
		run  func(t *testing.T, newStore func(t testing.TB) store.Store)
	}{
		{"versioned resources", testResources},
		{"users", testUsers},
		{"clients", testClients},
		{"oauth requests", testOAuthRequests},
		{"browser sessions", testBrowserSessions},
		{"signing keys", testSigningKeys},
		{"consents", testConsents},
		{"audit log", testAudit},
		{"counters", testCounters},
		{"second factors", testTwoFactor},
		{"recovery codes", testRecoveryCodes},
		{"one-time codes", testOneTimeCodes},
		{"remembered devices", testRememberedDevices},
		{"two-factor requirements", testTwoFactorRequirements},
		{"transactions", testTransactions},
		{"webauthn credentials", testWebAuthnCredentials},
		{"webauthn challenges", testWebAuthnChallenges},
		{"health", testHealth},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) { g.run(t, newStore) })
	}
}

// zone is a non-UTC location: times given in it must come back in UTC.
var zone = time.FixedZone("UTC+5", 5*60*60)

// base is a fixed instant with microsecond precision (what PostgreSQL keeps).
var base = time.Date(2031, 3, 14, 15, 9, 26, 535897000, zone)

func ctxb() context.Context { return context.Background() }

func must(t testing.TB, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func wantErr(t testing.TB, err, target error, what string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}

func wantUTC(t testing.TB, what string, times ...time.Time) {
	t.Helper()
	for i, tm := range times {
		if !tm.IsZero() && tm.Location() != time.UTC {
			t.Errorf("%s: time %d is in %v, want UTC", what, i, tm.Location())
		}
	}
}

func sameTime(t testing.TB, what string, got, want time.Time) {
	t.Helper()
	if !got.Equal(want) {
		t.Errorf("%s: got %v, want %v", what, got, want)
	}
	wantUTC(t, what, got)
}

func sameStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// race runs fn n times at once, releasing all goroutines together for the
// most contention, and returns the errors by index.
func race(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = fn(i)
		}()
	}
	close(start)
	wg.Wait()
	return errs
}

// tally counts nil errors and errors matching loser; it fails the test on
// any other error.
func tally(t testing.TB, errs []error, loser error) (wins, losses int) {
	t.Helper()
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case errors.Is(err, loser):
			losses++
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	return wins, losses
}

// seedUser stores a minimal user, for records that belong to one.
func seedUser(t testing.TB, s store.Store, id string) store.User {
	t.Helper()
	u, _, err := s.PutUser(ctxb(), store.User{ID: id, Doc: []byte(`{"id":"` + id + `"}`)}, 0)
	must(t, err, "seed user "+id)
	return u
}

func seedClient(t testing.TB, s store.Store, id string) store.Client {
	t.Helper()
	c, _, err := s.PutClient(ctxb(), store.Client{ID: id, Doc: []byte(`{}`)}, 0)
	must(t, err, "seed client "+id)
	return c
}

func testHealth(t *testing.T, newStore func(t testing.TB) store.Store) {
	s := newStore(t)
	ctx := ctxb()
	t.Run("a healthy store answers a ping and accepts the write probe again and again, also concurrently", func(t *testing.T) {
		must(t, s.Ping(ctx), "ping")
		for range 3 {
			must(t, s.CheckWrites(ctx), "write probe")
		}
		for i, err := range race(10, func(int) error { return s.CheckWrites(ctx) }) {
			must(t, err, fmt.Sprintf("concurrent write probe %d", i))
		}
	})
	t.Run("the write probe leaves the throttling counters alone", func(t *testing.T) {
		n, err := s.HitCounter(ctx, "gatehouse:ready-probe", time.Minute, base)
		must(t, err, "hit")
		must(t, s.CheckWrites(ctx), "write probe")
		got, err := s.GetCounter(ctx, "gatehouse:ready-probe", time.Minute, base)
		must(t, err, "get")
		if got != n {
			t.Errorf("a counter with the probe's key reads %d after a probe, want %d", got, n)
		}
	})
	t.Run("a closed store fails the write probe as unavailable", func(t *testing.T) {
		closed := newStore(t)
		must(t, closed.Close(), "close")
		wantErr(t, closed.CheckWrites(ctx), store.ErrUnavailable, "write probe on a closed store")
	})
}
