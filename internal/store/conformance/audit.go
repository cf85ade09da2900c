package conformance

import (
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
)

func testAudit(t *testing.T, newStore func(t testing.TB) store.Store) {
	s := newStore(t)
	ctx := ctxb()
	events := []store.AuditEvent{
		{ID: "e1", Type: "login.success", UserID: "ann", ClientID: "app", RemoteAddr: "192.0.2.1", RequestID: "r1"},
		{ID: "e2", Type: "login.failure", UserID: "ann", Detail: map[string]string{"reason": "wrong_password"}},
		{ID: "e3", Type: "login.success", UserID: "bob"},
		{ID: "e4", Type: "admin.write", Detail: map[string]string{"resource": "Client/app", "actor": "admin"}},
		{ID: "e5", Type: "login.success", UserID: "ann"},
	}
	for i := range events {
		events[i].Time = base.Add(time.Duration(i) * time.Minute)
		must(t, s.AppendAudit(ctx, events[i]), "append "+events[i].ID)
	}
	ids := func(es []store.AuditEvent) []string {
		var out []string
		for _, e := range es {
			out = append(out, e.ID)
		}
		return out
	}

	t.Run("events keep every field and come back in UTC", func(t *testing.T) {
		got, _, err := s.ListAudit(ctx, store.AuditFilter{}, store.Page{Count: 10, Page: 1})
		must(t, err, "list")
		byID := map[string]store.AuditEvent{}
		for _, e := range got {
			byID[e.ID] = e
		}
		e1, e4 := byID["e1"], byID["e4"]
		if e1.Type != "login.success" || e1.UserID != "ann" || e1.ClientID != "app" || e1.RemoteAddr != "192.0.2.1" || e1.RequestID != "r1" {
			t.Errorf("e1 = %+v", e1)
		}
		if e4.Detail["resource"] != "Client/app" || e4.Detail["actor"] != "admin" || len(e4.Detail) != 2 {
			t.Errorf("e4 detail = %v", e4.Detail)
		}
		sameTime(t, "e1 time", e1.Time, events[0].Time)
	})

	cases := []struct {
		name   string
		filter store.AuditFilter
		page   store.Page
		want   []string
		total  int
	}{
		{"everything lists newest first", store.AuditFilter{}, store.Page{Count: 10, Page: 1}, []string{"e5", "e4", "e3", "e2", "e1"}, 5},
		{"a user's events", store.AuditFilter{UserID: "ann"}, store.Page{Count: 10, Page: 1}, []string{"e5", "e2", "e1"}, 3},
		{"one type", store.AuditFilter{Type: "login.success"}, store.Page{Count: 10, Page: 1}, []string{"e5", "e3", "e1"}, 3},
		{"a user and a type", store.AuditFilter{UserID: "ann", Type: "login.success"}, store.Page{Count: 10, Page: 1}, []string{"e5", "e1"}, 2},
		{"the second page", store.AuditFilter{}, store.Page{Count: 2, Page: 2}, []string{"e3", "e2"}, 5},
		{"a filtered page", store.AuditFilter{UserID: "ann"}, store.Page{Count: 2, Page: 2}, []string{"e1"}, 3},
		{"a page past the end still totals", store.AuditFilter{UserID: "ann"}, store.Page{Count: 2, Page: 5}, nil, 3},
		{"no match", store.AuditFilter{UserID: "nobody"}, store.Page{Count: 10, Page: 1}, nil, 0},
	}
	for _, c := range cases {
		t.Run("listing "+c.name, func(t *testing.T) {
			got, total, err := s.ListAudit(ctx, c.filter, c.page)
			must(t, err, "list")
			if !sameStrings(ids(got), c.want) || total != c.total {
				t.Errorf("list %+v %+v = %v (total %d), want %v (total %d)", c.filter, c.page, ids(got), total, c.want, c.total)
			}
			for _, e := range got {
				wantUTC(t, e.ID, e.Time)
			}
		})
	}
}

func testCounters(t *testing.T, newStore func(t testing.TB) store.Store) {
	s := newStore(t)
	ctx := ctxb()
	w := 15 * time.Minute
	// start is a window boundary: windows are fixed, counted from the epoch.
	start := time.Date(2031, 1, 1, 10, 0, 0, 0, time.UTC)

	hit := func(t *testing.T, key string, at time.Time) int {
		t.Helper()
		n, err := s.HitCounter(ctx, key, w, at)
		must(t, err, "hit")
		return n
	}
	get := func(t *testing.T, key string, at time.Time) int {
		t.Helper()
		n, err := s.GetCounter(ctx, key, w, at)
		must(t, err, "get")
		return n
	}

	t.Run("an unknown counter is zero", func(t *testing.T) {
		if n := get(t, "never", start); n != 0 {
			t.Errorf("got %d", n)
		}
	})

	t.Run("hits in one window count up and read back", func(t *testing.T) {
		for i := 1; i <= 3; i++ {
			if n := hit(t, "k1", start.Add(time.Duration(i)*time.Minute)); n != i {
				t.Fatalf("hit %d returned %d", i, n)
			}
		}
		if n := get(t, "k1", start.Add(14*time.Minute)); n != 3 {
			t.Errorf("get = %d, want 3", n)
		}
	})

	t.Run("a new window starts again at one and the old count no longer shows", func(t *testing.T) {
		if n := get(t, "k1", start.Add(w)); n != 0 {
			t.Errorf("get in the next window = %d, want 0", n)
		}
		if n := hit(t, "k1", start.Add(w+time.Second)); n != 1 {
			t.Errorf("first hit of the next window = %d, want 1", n)
		}
		if n := hit(t, "k1", start.Add(2*w-time.Nanosecond)); n != 2 {
			t.Errorf("last instant of the window = %d, want 2", n)
		}
	})

	t.Run("times in any zone fall in the same window", func(t *testing.T) {
		hit(t, "zoned", start.Add(time.Minute))
		if n := hit(t, "zoned", start.Add(2*time.Minute).In(zone)); n != 2 {
			t.Errorf("hit in another zone = %d, want 2", n)
		}
	})

	t.Run("keys and window lengths are counted apart", func(t *testing.T) {
		hit(t, "apart-a", start)
		hit(t, "apart-a", start)
		if n := hit(t, "apart-b", start); n != 1 {
			t.Errorf("other key = %d, want 1", n)
		}
		n, err := s.HitCounter(ctx, "apart-a", time.Hour, start)
		must(t, err, "hit hourly")
		if n != 1 {
			t.Errorf("other window length = %d, want 1", n)
		}
	})

	t.Run("several counters read in one call, in the order asked, zero when unknown or from an older window", func(t *testing.T) {
		hit(t, "multi-a", start)
		hit(t, "multi-a", start)
		hit(t, "multi-b", start.Add(-w)) // the window before
		hit(t, "multi-c", start)
		if _, err := s.HitCounter(ctx, "multi-c", time.Hour, start); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetCounters(ctx, []string{"multi-c", "multi-missing", "multi-a", "multi-b", "multi-a"}, w, start.Add(time.Minute).In(zone))
		must(t, err, "get counters")
		if want := []int{1, 0, 2, 0, 2}; !equalInts(got, want) {
			t.Errorf("GetCounters = %v, want %v", got, want)
		}
		got, err = s.GetCounters(ctx, nil, w, start)
		must(t, err, "get no counters")
		if len(got) != 0 {
			t.Errorf("GetCounters of no keys = %v", got)
		}
	})

	t.Run("reset clears a counter", func(t *testing.T) {
		hit(t, "reset", start)
		hit(t, "reset", start)
		must(t, s.ResetCounter(ctx, "reset"), "reset")
		if n := get(t, "reset", start); n != 0 {
			t.Errorf("after reset = %d", n)
		}
		if n := hit(t, "reset", start); n != 1 {
			t.Errorf("first hit after reset = %d", n)
		}
		must(t, s.ResetCounter(ctx, "never-hit"), "resetting an unknown counter is not an error")
	})

	t.Run("concurrent hits each count once", func(t *testing.T) {
		seen := make([]int, 50)
		errs := race(50, func(i int) error {
			n, err := s.HitCounter(ctx, "busy", w, start)
			seen[i] = n
			return err
		})
		for i, err := range errs {
			must(t, err, fmt.Sprint("hit ", i))
		}
		got := map[int]bool{}
		for _, n := range seen {
			got[n] = true
		}
		if len(got) != 50 || get(t, "busy", start) != 50 {
			t.Errorf("50 concurrent hits returned %d distinct counts, total %d; want 1..50", len(got), get(t, "busy", start))
		}
	})

	reserve := func(key string, at time.Time, limit int) (int, bool, error) {
		got, err := s.ReserveCounters(ctx, []store.CounterLimit{{Key: key, Max: limit}}, w, at)
		if err != nil {
			return 0, false, err
		}
		if len(got) != 1 {
			return 0, false, fmt.Errorf("ReserveCounters answered %d results for one key", len(got))
		}
		return got[0].Hits, got[0].Reserved, nil
	}

	t.Run("a reservation is allowed below the limit and refused at it, without counting the refusal", func(t *testing.T) {
		for i := 1; i <= 3; i++ {
			n, ok, err := reserve("resv", start.Add(time.Minute), 3)
			must(t, err, "reserve")
			if !ok || n != i {
				t.Fatalf("reservation %d = %d, %v; want %d, true", i, n, ok, i)
			}
		}
		n, ok, err := reserve("resv", start.Add(2*time.Minute), 3)
		must(t, err, "reserve at the limit")
		if ok || n != 3 {
			t.Fatalf("reservation at the limit = %d, %v; want 3, false", n, ok)
		}
		hit(t, "resv-other", start)
		must(t, s.ReleaseCounters(ctx, []string{"resv", "resv-other", "resv-none"}, w, start.Add(3*time.Minute)), "release")
		if n := get(t, "resv", start.Add(3*time.Minute)); n != 2 {
			t.Fatalf("after a release = %d, want 2", n)
		}
		if n := get(t, "resv-other", start.Add(3*time.Minute)); n != 0 {
			t.Fatalf("the other key after a release = %d, want 0", n)
		}
		if n, ok, err := reserve("resv", start.Add(w), 3); err != nil || !ok || n != 1 {
			t.Fatalf("first reservation of the next window = %d, %v, %v; want 1, true", n, ok, err)
		}
		must(t, s.ReleaseCounters(ctx, []string{"resv"}, w, start.Add(w)), "release")
		must(t, s.ReleaseCounters(ctx, []string{"resv"}, w, start.Add(w)), "release below zero is not an error")
		if n := get(t, "resv", start.Add(w)); n != 0 {
			t.Fatalf("released below zero: %d", n)
		}
		must(t, s.ReleaseCounters(ctx, []string{"never-reserved"}, w, start), "releasing an unknown counter is not an error")
		must(t, s.ReleaseCounters(ctx, nil, w, start), "releasing no counters is not an error")
	})

	t.Run("a concurrent burst of reservations gets exactly the limit", func(t *testing.T) {
		var allowed atomic.Int32
		errs := race(40, func(i int) error {
			_, ok, err := reserve("resv-burst", start, 10)
			if ok {
				allowed.Add(1)
			}
			return err
		})
		for i, err := range errs {
			must(t, err, fmt.Sprint("reserve ", i))
		}
		if allowed.Load() != 10 || get(t, "resv-burst", start) != 10 {
			t.Errorf("40 concurrent reservations, limit 10: %d allowed, counter %d", allowed.Load(), get(t, "resv-burst", start))
		}
	})

	t.Run("several keys are reserved in one call, each against its own limit", func(t *testing.T) {
		at := start.Add(5 * time.Minute)
		for i := 1; i <= 2; i++ {
			got, err := s.ReserveCounters(ctx, []store.CounterLimit{{Key: "resv-a", Max: 2}, {Key: "resv-b", Max: 5}}, w, at)
			must(t, err, "reserve two keys")
			want := []store.CounterReservation{{Hits: i, Reserved: true}, {Hits: i, Reserved: true}}
			if !slices.Equal(got, want) {
				t.Fatalf("reservation %d = %+v, want %+v", i, got, want)
			}
		}
		// resv-a is at its limit: it is refused and keeps its count, while
		// resv-b and a new key are still counted.
		got, err := s.ReserveCounters(ctx, []store.CounterLimit{{Key: "resv-b", Max: 5}, {Key: "resv-a", Max: 2}, {Key: "resv-c", Max: 1}}, w, at)
		must(t, err, "reserve with one key at its limit")
		want := []store.CounterReservation{{Hits: 3, Reserved: true}, {Hits: 2, Reserved: false}, {Hits: 1, Reserved: true}}
		if !slices.Equal(got, want) {
			t.Fatalf("reservation at resv-a's limit = %+v, want %+v", got, want)
		}
		if n := get(t, "resv-a", at); n != 2 {
			t.Fatalf("the refused key counts %d, want 2", n)
		}
		if got, err := s.ReserveCounters(ctx, nil, w, at); err != nil || len(got) != 0 {
			t.Fatalf("reserving no keys = %v, %v; want nothing", got, err)
		}
	})

	t.Run("a reservation that names a key twice or a limit below one is refused and counts nothing", func(t *testing.T) {
		at := start.Add(6 * time.Minute)
		for _, limits := range [][]store.CounterLimit{
			{{Key: "twice", Max: 3}, {Key: "twice", Max: 3}},
			{{Key: "twice", Max: 3}, {Key: "zero", Max: 0}},
		} {
			if _, err := s.ReserveCounters(ctx, limits, w, at); err == nil {
				t.Fatalf("ReserveCounters(%+v) succeeded", limits)
			}
		}
		if n := get(t, "twice", at); n != 0 {
			t.Fatalf("a refused call counted %d", n)
		}
	})

	t.Run("a concurrent burst of two-key reservations gets exactly each key's limit", func(t *testing.T) {
		var both, onlyWide atomic.Int32
		errs := race(40, func(i int) error {
			got, err := s.ReserveCounters(ctx, []store.CounterLimit{{Key: "burst-narrow", Max: 5}, {Key: "burst-wide", Max: 30}}, w, start)
			if err != nil {
				return err
			}
			switch {
			case got[0].Reserved && got[1].Reserved:
				both.Add(1)
			case got[1].Reserved:
				onlyWide.Add(1)
			}
			return nil
		})
		for i, err := range errs {
			must(t, err, fmt.Sprint("reserve ", i))
		}
		if both.Load() != 5 || both.Load()+onlyWide.Load() != 30 || get(t, "burst-narrow", start) != 5 || get(t, "burst-wide", start) != 30 {
			t.Errorf("40 concurrent reservations, limits 5 and 30: %d got both, %d only the wide one; counters %d and %d",
				both.Load(), onlyWide.Load(), get(t, "burst-narrow", start), get(t, "burst-wide", start))
		}
	})

	t.Run("purging removes counters whose window ended, by each counter's own length", func(t *testing.T) {
		s := newStore(t)
		hitW := func(key string, window time.Duration, at time.Time) {
			t.Helper()
			_, err := s.HitCounter(ctx, key, window, at)
			must(t, err, "hit "+key)
		}
		// At the purge time start+2h, in UTC+5 to show zones do not matter:
		hitW("ended-15m", w, start.Add(time.Hour))                        // window ended at 1h15
		hitW("ends-at-purge-15m", w, start.Add(time.Hour+45*time.Minute)) // ends exactly at 2h: not before it
		hitW("current-15m", w, start.Add(2*time.Hour))                    // the window containing the purge time
		hitW("ended-1h", time.Hour, start.Add(30*time.Minute))            // window [0h, 1h)
		hitW("running-1h", time.Hour, start.Add(90*time.Minute))          // window [1h, 2h): ends at the purge time
		hitW("running-1h", 24*time.Hour, start)                           // same key, a day long: still running
		// A key hit again in a later window is judged by that window.
		hitW("renewed-15m", w, start)
		hitW("renewed-15m", w, start.Add(2*time.Hour+time.Minute))

		n, err := s.DeleteStaleCounters(ctx, start.Add(2*time.Hour).In(zone))
		must(t, err, "purge")
		if n != 2 {
			t.Errorf("purged %d counters, want 2 (ended-15m, ended-1h)", n)
		}
		cases := []struct {
			key    string
			window time.Duration
			at     time.Time
			want   int
		}{
			{"ended-15m", w, start.Add(time.Hour), 0},
			{"ended-1h", time.Hour, start.Add(30 * time.Minute), 0},
			{"ends-at-purge-15m", w, start.Add(time.Hour + 45*time.Minute), 1},
			{"current-15m", w, start.Add(2 * time.Hour), 1},
			{"running-1h", time.Hour, start.Add(90 * time.Minute), 1},
			{"running-1h", 24 * time.Hour, start, 1},
			{"renewed-15m", w, start.Add(2 * time.Hour), 1},
		}
		for _, c := range cases {
			got, err := s.GetCounter(ctx, c.key, c.window, c.at)
			must(t, err, "get "+c.key)
			if got != c.want {
				t.Errorf("%s (%s) read at its own window = %d, want %d", c.key, c.window, got, c.want)
			}
		}
		n, err = s.DeleteStaleCounters(ctx, start.Add(2*time.Hour))
		must(t, err, "purge again")
		if n != 0 {
			t.Errorf("a second purge at the same time removed %d", n)
		}
	})
}

func equalInts(a, b []int) bool {
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
