package bench

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// op performs one timed unit of a scenario (a request, or a whole login)
// for worker w and returns how long the timed part took. Waiting that is
// not the server's work (a TOTP user becoming free) is left out of it.
// errStop ends the worker without counting anything.
type op func(ctx context.Context, w int, deadline time.Time) (time.Duration, error)

var errStop = errors.New("worker stopped")

// load is what one scenario measured.
type load struct {
	ok        int
	errors    map[string]int
	samples   map[string]string // kind → first detail
	latencies []time.Duration   // of successful units, sorted
	elapsed   time.Duration
	stopped   string // why the run ended early, if it did
}

// drive runs op on concurrency workers until the duration has passed or
// the request budget is spent, and collects latencies and errors. A unit
// in flight at the deadline completes and counts.
func drive(ctx context.Context, concurrency int, duration time.Duration, budget int, fn op) load {
	type acc struct {
		lat     []time.Duration
		errs    map[string]int
		samples map[string]string
	}
	accs := make([]acc, concurrency)
	var (
		started   atomic.Int64
		exhausted atomic.Bool
		wg        sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(duration)
	for w := range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := &accs[w]
			a.errs, a.samples = map[string]int{}, map[string]string{}
			for ctx.Err() == nil && time.Now().Before(deadline) {
				if started.Add(1) > int64(budget) {
					return
				}
				d, err := fn(ctx, w, deadline)
				switch {
				case errors.Is(err, errStop) || errors.Is(err, errUsersExhausted):
					started.Add(-1)
					if errors.Is(err, errUsersExhausted) {
						exhausted.Store(true)
					}
					return
				case err != nil && ctx.Err() != nil:
					started.Add(-1)
					return
				case err != nil:
					kind, detail := kindOf(err)
					a.errs[kind]++
					if _, seen := a.samples[kind]; !seen {
						a.samples[kind] = detail
					}
				default:
					a.lat = append(a.lat, d)
				}
			}
		}()
	}
	wg.Wait()
	l := load{errors: map[string]int{}, samples: map[string]string{}, elapsed: time.Since(start)}
	for _, a := range accs {
		l.latencies = append(l.latencies, a.lat...)
		for k, n := range a.errs {
			l.errors[k] += n
		}
		for k, d := range a.samples {
			if _, seen := l.samples[k]; !seen {
				l.samples[k] = d
			}
		}
	}
	l.ok = len(l.latencies)
	slices.Sort(l.latencies)
	switch {
	case exhausted.Load():
		l.stopped = "TOTP users exhausted for the current and next step until the deadline"
	case started.Load() >= int64(budget):
		l.stopped = "request budget reached"
	}
	return l
}

// percentile of sorted latencies (nearest rank); 0 for none.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(p/100*float64(len(sorted))+0.999999) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}
