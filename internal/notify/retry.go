package notify

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// retrier runs the background retries of one kind of delivery (webhook
// calls, mails): at most maxInFlight retry sequences at once, exponential
// backoff, every wait and attempt cancelled by close. The webhook notifier
// and the mailer share it so that both keep the same bounds.
type retrier struct {
	once sync.Once
	sem  chan struct{}
	stop context.Context
	halt context.CancelFunc

	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// retryPlan is one delivery's retry sequence.
type retryPlan struct {
	retries int           // how many retries after the failed first attempt
	backoff time.Duration // the delay before the first retry, doubled each time
	// attempt makes one try; its context ends when the retrier closes.
	attempt   func(ctx context.Context) error
	retryable func(error) bool
	// failed reports attempt n's failure; more says whether another follows.
	failed func(ctx context.Context, n int, err error, more bool)
	// delivered reports that attempt n succeeded.
	delivered func(ctx context.Context, n int)
	// immediate makes the first attempt in the background too, at once
	// (the caller does not wait for it); retries follows it.
	immediate bool
}

func (r *retrier) init(maxInFlight int) {
	r.once.Do(func() {
		if maxInFlight <= 0 {
			maxInFlight = DefaultMaxInFlight
		}
		r.sem = make(chan struct{}, maxInFlight)
		r.stop, r.halt = context.WithCancel(context.Background())
	})
}

// retryCount turns a Retries setting into a count: 0 means the default,
// a negative value none.
func retryCount(setting int) int {
	switch {
	case setting < 0:
		return 0
	case setting == 0:
		return DefaultRetries
	}
	return setting
}

// start runs plan in the background, detached from ctx's cancellation. It
// answers false, and runs nothing, when the retrier is closed or already
// runs maxInFlight sequences (full: the caller logs it; the failure is then
// final, which beats an unbounded pile of goroutines behind a dead receiver).
func (r *retrier) start(ctx context.Context, plan retryPlan) (started, full bool) {
	if plan.retries <= 0 && !plan.immediate {
		return false, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false, false
	}
	select {
	case r.sem <- struct{}{}:
	default:
		return false, true
	}
	r.wg.Add(1)
	bg := context.WithoutCancel(ctx)
	go func() {
		defer r.wg.Done()
		defer func() { <-r.sem }()
		r.run(bg, plan)
	}()
	return true, false
}

func (r *retrier) run(ctx context.Context, plan retryPlan) {
	delay := plan.backoff
	if delay <= 0 {
		delay = DefaultBackoff
	}
	if plan.immediate {
		err := r.attempt(ctx, plan)
		if err == nil {
			plan.delivered(ctx, 1)
			return
		}
		more := plan.retries > 0 && plan.retryable(err) && r.stop.Err() == nil
		plan.failed(ctx, 1, err, more)
		if !more {
			return
		}
	}
	for i := 1; i <= plan.retries; i++ {
		timer := time.NewTimer(delay)
		select {
		case <-r.stop.Done():
			timer.Stop()
			plan.failed(ctx, i+1, ErrClosed, false)
			return
		case <-timer.C:
		}
		err := r.attempt(ctx, plan)
		if err == nil {
			plan.delivered(ctx, i+1)
			return
		}
		more := i < plan.retries && plan.retryable(err) && r.stop.Err() == nil
		plan.failed(ctx, i+1, err, more)
		if !more {
			return
		}
		delay *= 2
	}
}

// attempt makes one try, cancelled when the retrier closes.
func (r *retrier) attempt(ctx context.Context, plan retryPlan) error {
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopAttempt := context.AfterFunc(r.stop, cancel)
	defer stopAttempt()
	return plan.attempt(actx)
}

// close stops scheduling retries and waits for the running ones until ctx
// ends; then it cancels them and waits for them to stop.
func (r *retrier) close(ctx context.Context, what string) error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
		r.halt()
		return nil
	case <-ctx.Done():
		r.halt()
		<-done
		return fmt.Errorf("close %s: %w", what, ctx.Err())
	}
}
