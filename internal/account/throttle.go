package account

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
)

// ErrThrottled is what a ThrottledError matches: too many failures from
// this address, or for this account from this address, in the window.
var ErrThrottled = errors.New("too many failed attempts; try again later")

// ThrottledError tells when the refusing window ends. It also matches
// ErrInvalidCredentials, so a caller that does not look for ErrThrottled
// still refuses the attempt; callers that do tell the user plainly (429
// with Retry-After on the JSON APIs, a message on the pages).
type ThrottledError struct {
	Until time.Time // the end of the window that refused
	Now   time.Time // when the attempt was refused
}

func (e *ThrottledError) Error() string { return ErrThrottled.Error() }

// Is makes errors.Is match ErrThrottled and ErrInvalidCredentials.
func (e *ThrottledError) Is(target error) bool {
	return target == ErrThrottled || target == ErrInvalidCredentials
}

// RetryAfter is the whole seconds until the window ends, at least one.
func (e *ThrottledError) RetryAfter() int {
	s := int((e.Until.Sub(e.Now) + time.Second - 1) / time.Second)
	return max(s, 1)
}

// RetryAfterOf is the RetryAfter of a ThrottledError in err, or 0.
func RetryAfterOf(err error) int {
	var te *ThrottledError
	if errors.As(err, &te) {
		return te.RetryAfter()
	}
	return 0
}

// Limit is one counter of a reserve-first throttle: at most Max attempts
// per window under Key. A Max of 0 or less means no limit.
type Limit struct {
	Key string
	Max int
}

// Reservation is the attempts a Reserve took; Release gives them back.
type Reservation struct {
	st     store.Store
	window time.Duration
	now    time.Time
	keys   []string
	Hits   []int // the count of each reserved key, this attempt included, in the order of the limits
}

// Reserve counts one attempt on every limit before the attempt is checked,
// atomically in the store, so a burst of concurrent attempts gets at most
// Max checks per key and window on every process. When one limit is
// reached it gives back what it took and returns a *ThrottledError. A
// failed attempt keeps its reservation (it counts); a successful one calls
// Release.
func Reserve(ctx context.Context, st store.Store, window time.Duration, now time.Time, limits ...Limit) (Reservation, error) {
	r := Reservation{st: st, window: window, now: now, Hits: make([]int, len(limits))}
	var counted []store.CounterLimit
	var at []int // the index in limits of each counted limit
	for i, l := range limits {
		if l.Max > 0 {
			counted = append(counted, store.CounterLimit{Key: l.Key, Max: l.Max})
			at = append(at, i)
		}
	}
	if len(counted) == 0 {
		return r, nil
	}
	got, err := st.ReserveCounters(ctx, counted, window, now)
	if err != nil {
		return Reservation{}, fmt.Errorf("reserve attempt: %w", err)
	}
	throttled := false
	for i, c := range counted {
		if got[i].Reserved {
			r.keys = append(r.keys, c.Key)
			r.Hits[at[i]] = got[i].Hits
		} else {
			throttled = true
		}
	}
	if throttled {
		if err := r.Release(ctx); err != nil {
			return Reservation{}, err
		}
		return Reservation{}, &ThrottledError{Until: windowEnd(now, window), Now: now}
	}
	return r, nil
}

// releaseTimeout bounds a release, which outlives the request's deadline.
const releaseTimeout = 2 * time.Second

// Release gives the reservations back (after a success). It does so even
// when the request's deadline has just passed (an overloaded server, a
// hash that finished late): a right password whose reservation stayed
// would count as a failure, and enough of them would pause sign-in for a
// whole network.
func (r Reservation) Release(ctx context.Context) error {
	if len(r.keys) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	if err := r.st.ReleaseCounters(ctx, r.keys, r.window, r.now); err != nil {
		return fmt.Errorf("release attempt: %w", err)
	}
	return nil
}

// windowEnd is the end of the fixed window containing now; the store counts
// windows from the Unix epoch.
func windowEnd(now time.Time, w time.Duration) time.Time {
	n := now.UnixNano()
	start := n - n%int64(w)
	if n < 0 && n%int64(w) != 0 {
		start -= int64(w)
	}
	return time.Unix(0, start+int64(w)).UTC()
}

// ClientSecretThrottle limits failed client-secret checks (token,
// introspection, revocation endpoints and the sign-in API): PerAccount per
// client id from any address, PerAddress per client address over all
// clients, in Window. Successes that the checking process remembers skip it,
// so a client in use keeps working while someone guesses its secret.
var ClientSecretThrottle = Throttle{PerAccount: 100, PerAddress: 50, Window: 15 * time.Minute}

// ClientSecretLimits are the counters a client-secret check reserves:
// clientID "" (an unknown client, or one without a secret) and addr "" skip
// theirs.
func ClientSecretLimits(clientID, addr string) []Limit {
	var limits []Limit
	if clientID != "" {
		limits = append(limits, Limit{Key: "clientfail:client:" + clientID, Max: ClientSecretThrottle.PerAccount})
	}
	if addr != "" {
		limits = append(limits, Limit{Key: "clientfail:ip:" + addr, Max: ClientSecretThrottle.PerAddress})
	}
	return limits
}
