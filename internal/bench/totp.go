package bench

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
)

// totpPeriod is the TOTP step length Gatehouse uses (RFC 6238 default).
const totpPeriod = 30

// stepOf is the TOTP step containing t.
func stepOf(t time.Time) int64 { return t.Unix() / totpPeriod }

// startOfStep is when step begins.
func startOfStep(step int64) time.Time { return time.Unix(step*totpPeriod, 0) }

// totpCode is the 6-digit SHA-1 code of secret for step, as an
// authenticator app computes it.
func totpCode(secret string, step int64) (string, error) {
	code, err := hotp.GenerateCodeCustom(secret, uint64(step), hotp.ValidateOpts{Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		return "", fmt.Errorf("totp code: %w", err)
	}
	return code, nil
}

// totpUser is an enrolled user the login scenario signs in as.
type totpUser struct {
	id, login string
	st        *totpState
	index     int // in the heap
}

// errUsersExhausted means no user could sign in before the deadline.
var errUsersExhausted = errors.New("every TOTP user has used the current and next step")

// totpPool hands out users so that no (user, step) code is ever sent twice:
// Gatehouse accepts a step once per user (replay protection) and accepts
// the current step, past steps and one future step. A user whose last used
// step is before the current one signs in with the current step's code;
// one who already used the current step signs in with the next step's code
// (what a phone whose clock runs a little ahead sends). When every user
// has used the next step too, acquire waits for the clock to reach the
// next step rather than reuse a user within a step. A user is out of the
// pool while its login is in flight.
type totpPool struct {
	now func() time.Time

	mu   sync.Mutex
	free userHeap
	all  []*totpUser
}

func newTOTPPool(users []*totpUser, now func() time.Time) *totpPool {
	p := &totpPool{now: now, all: users}
	p.free = append(p.free, users...)
	heap.Init(&p.free)
	return p
}

// acquire returns a user and the step whose code it should send, waiting
// (in short sleeps) while every user is in flight or has used both usable
// steps. It gives up with errUsersExhausted at deadline.
func (p *totpPool) acquire(ctx context.Context, deadline time.Time) (*totpUser, int64, error) {
	for {
		now := p.now()
		cur := stepOf(now)
		p.mu.Lock()
		if len(p.free) > 0 {
			u := p.free[0]
			step, ok := cur, true
			switch {
			case u.st.LastStep < cur:
			case u.st.LastStep < cur+1:
				step = cur + 1
			default:
				ok = false
			}
			if ok {
				heap.Pop(&p.free)
				p.mu.Unlock()
				return u, step, nil
			}
		}
		p.mu.Unlock()
		// The deadline is the run's, on the wall clock; steps follow p.now.
		left := time.Until(deadline)
		if left <= 0 {
			return nil, 0, errUsersExhausted
		}
		// Wake at the next step boundary, or soon if a user in flight
		// comes back first.
		wait := min(startOfStep(cur+1).Sub(now), 10*time.Millisecond, left)
		t := time.NewTimer(max(wait, time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, 0, ctx.Err()
		case <-t.C:
		}
	}
}

// release returns u after a login that sent the code of step. The step
// counts as used whatever the outcome: the server may have recorded it.
func (p *totpPool) release(u *totpUser, step int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	u.st.LastStep = max(u.st.LastStep, step)
	heap.Push(&p.free, u)
}

// userHeap orders free users by last used step, oldest first.
type userHeap []*totpUser

func (h userHeap) Len() int           { return len(h) }
func (h userHeap) Less(i, j int) bool { return h[i].st.LastStep < h[j].st.LastStep }
func (h userHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *userHeap) Push(x any) {
	u := x.(*totpUser)
	u.index = len(*h)
	*h = append(*h, u)
}
func (h *userHeap) Pop() any {
	old := *h
	n := len(old)
	u := old[n-1]
	old[n-1] = nil
	*h = old[:n-1]
	u.index = -1
	return u
}
