package bench

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/internal/secret"
)

// redirectURI is where the bench's clients get their codes: a loopback
// address nothing listens on (the browser stops at the redirect and reads
// the code from its Location).
const redirectURI = "http://127.0.0.1:1/gatehouse-bench/callback"

// Enrolment pages (DESIGN.md §4).
const (
	pathTwoFactorEnable = "/auth/two-factor/enable"
	pathLogin           = "/auth/login"
	pathLoginTwoFactor  = "/auth/login/two-factor"
)

func (r *run) passwordUserID(i int) string { return fmt.Sprintf("%s-u%d", r.cfg.Prefix, i) }
func (r *run) totpUserID(i int) string     { return fmt.Sprintf("%s-t%d", r.cfg.Prefix, i) }
func emailOf(id string) string             { return id + "@bench.example" }

// clientDefs are the bench's clients: a confidential client_credentials
// client with JWT access tokens; a confidential first-party client with
// opaque tokens for client_credentials, authorization_code and refresh
// (the refresh and introspection scenarios); and the first-party login
// client (JWT access token and ID token).
func (r *run) clientDefs() map[string]map[string]any {
	return map[string]map[string]any{
		r.jwtClient: {
			"name":        "gatehouse-bench client_credentials (JWT)",
			"grant_types": []string{"client_credentials"},
			"auth":        map[string]any{"client_credentials": map[string]any{"token_format": "jwt"}},
		},
		r.opaqueClient: {
			"name":        "gatehouse-bench opaque tokens",
			"first_party": true,
			"grant_types": []string{"client_credentials", "authorization_code", "refresh_token"},
			"scope":       []string{"openid", "offline_access"},
			"auth": map[string]any{
				"client_credentials": map[string]any{"token_format": "opaque"},
				"authorization_code": map[string]any{"redirect_uri": redirectURI, "token_format": "opaque", "refresh_token": true, "secret_required": true},
			},
		},
		r.webClient: {
			"name":        "gatehouse-bench login",
			"first_party": true,
			"grant_types": []string{"authorization_code"},
			"scope":       []string{"openid", "profile", "email"},
			"auth": map[string]any{
				"authorization_code": map[string]any{"redirect_uri": redirectURI, "token_format": "jwt", "secret_required": true},
			},
		},
	}
}

// seedClients creates the clients the state does not know, or that the
// server no longer has.
func (r *run) seedClients(ctx context.Context) error {
	for id, def := range r.clientDefs() {
		if sec := r.st.Clients[id]; sec != "" {
			found, err := r.api.get(ctx, "Client", id, nil)
			if err != nil {
				return err
			}
			if found {
				continue
			}
		}
		sec := secret.RandomToken(24)
		body := map[string]any{"secret": sec}
		for k, v := range def {
			body[k] = v
		}
		if err := r.api.put(ctx, "Client", id, body); err != nil {
			return fmt.Errorf("seed client: %w", err)
		}
		r.st.Clients[id] = sec
	}
	return nil
}

// passwordFields is how a seeded user gets its password: one precomputed
// argon2id hash for a large seed, the password itself (hashed by the
// server) for a small one.
func (r *run) passwordFields(ctx context.Context, n int) (map[string]any, error) {
	if r.st.Password == "" {
		r.st.Password = secret.RandomToken(16)
		r.st.PasswordHash, r.st.SeededUsers = "", 0
	}
	if n <= r.cfg.PasswordUnder {
		return map[string]any{"password": r.st.Password}, nil
	}
	if r.st.PasswordHash != "" && !sameParams(r.st.PasswordHash, r.cfg.Argon) {
		// Users seeded with other parameters cost another amount per
		// login: seed them again.
		r.st.PasswordHash, r.st.SeededUsers = "", 0
	}
	if r.st.PasswordHash == "" {
		phc, err := secret.NewPasswordHasher(r.cfg.Argon, 1).Hash(ctx, r.st.Password)
		if err != nil {
			return nil, fmt.Errorf("hash the users' password: %w", err)
		}
		r.st.PasswordHash = phc
	}
	return map[string]any{"passwordHash": r.st.PasswordHash}, nil
}

func sameParams(phc string, p secret.Argon2Params) bool {
	return strings.Contains(phc, fmt.Sprintf("$m=%d,t=%d,p=%d$", p.MemoryKiB, p.Iterations, p.Parallelism))
}

// seedUsers makes sure users <prefix>-u0 … -u(N-1) exist with the state's
// password. A previous complete seed is trusted once its first and last
// users are found.
func (r *run) seedUsers(ctx context.Context) error {
	n := r.cfg.Users
	pw, err := r.passwordFields(ctx, n)
	if err != nil {
		return err
	}
	from := 0
	if done := r.st.SeededUsers; done > 0 {
		first, err := r.api.get(ctx, "User", r.passwordUserID(0), nil)
		if err != nil {
			return err
		}
		last, err := r.api.get(ctx, "User", r.passwordUserID(done-1), nil)
		if err != nil {
			return err
		}
		if first && last {
			from = done
		}
	}
	if from >= n {
		r.progress("users: %d password-only users already seeded", n)
		return nil
	}
	how := "passwordHash"
	if _, ok := pw["password"]; ok {
		how = "password (hashed by the server)"
	}
	r.progress("users: seeding %d password-only users (%d…%d) with %s", n-from, from, n-1, how)
	start := time.Now()
	err = r.parallel(ctx, n-from, r.cfg.SeedConcurrency, "users", func(ctx context.Context, i int) error {
		id := r.passwordUserID(from + i)
		body := map[string]any{"email": emailOf(id)}
		for k, v := range pw {
			body[k] = v
		}
		return r.api.put(ctx, "User", id, body)
	})
	if err != nil {
		return fmt.Errorf("seed users: %w", err)
	}
	r.written += n - from
	r.st.SeededUsers = max(r.st.SeededUsers, n)
	if from == 0 {
		r.st.SeededUsers = n
	}
	r.progress("users: seeded %d in %s (%.0f/s)", n-from, time.Since(start).Round(time.Millisecond), float64(n-from)/time.Since(start).Seconds())
	return r.saveState()
}

// totpUsersNeeded is how many enrolled users the login scenario needs so it
// does not wait for the next TOTP step: its expected logins within one 30 s
// step (from the password-hash floor), with a margin, plus the workers'.
func (r *run) totpUsersNeeded(floor Floor) int {
	if r.cfg.TOTPUsers > 0 {
		return r.cfg.TOTPUsers
	}
	window := min(r.cfg.Duration, totpPeriod*time.Second).Seconds()
	n := int(math.Ceil(floor.PasswordHashPerSec*window*1.3)) + 2*r.cfg.Concurrency
	return max(n, 2*r.cfg.Concurrency)
}

// userView is the part of a User response the seeding reads.
type userView struct {
	TwoFactor *struct {
		Enabled    bool       `json:"enabled"`
		EnrolledAt *time.Time `json:"enrolledAt"`
	} `json:"twoFactor"`
}

// seedTOTPUsers makes sure k users <prefix>-t0 … have TOTP enrolled with a
// secret the state knows; the rest are (re)created and enrolled through
// the hosted pages, as their owners would.
func (r *run) seedTOTPUsers(ctx context.Context, k int) ([]*totpUser, error) {
	pw, err := r.passwordFields(ctx, k)
	if err != nil {
		return nil, err
	}
	users := make([]*totpUser, k)
	var todo []int
	var mu sync.Mutex
	// Which enrolments the server still has as we left them.
	err = r.parallel(ctx, k, r.cfg.SeedConcurrency, "", func(ctx context.Context, i int) error {
		id := r.totpUserID(i)
		mu.Lock()
		st := r.st.TOTP[id]
		mu.Unlock()
		users[i] = &totpUser{id: id, login: emailOf(id)}
		if st == nil {
			mu.Lock()
			todo = append(todo, i)
			mu.Unlock()
			return nil
		}
		var v userView
		found, err := r.api.get(ctx, "User", id, &v)
		if err != nil {
			return err
		}
		if found && v.TwoFactor != nil && v.TwoFactor.Enabled && v.TwoFactor.EnrolledAt != nil &&
			v.TwoFactor.EnrolledAt.Sub(st.EnrolledAt).Abs() < time.Second {
			users[i].st = st
			return nil
		}
		mu.Lock()
		todo = append(todo, i)
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("check TOTP users: %w", err)
	}
	if len(todo) == 0 {
		r.progress("totp: %d users already enrolled", k)
		return users, nil
	}
	r.progress("totp: enrolling %d users through %s (one password login each)", len(todo), pathTwoFactorEnable)
	start := time.Now()
	err = r.parallel(ctx, len(todo), r.cfg.SeedConcurrency, "enrolments", func(ctx context.Context, j int) error {
		u := users[todo[j]]
		// Create or reset: a factor whose secret we do not know is of no use.
		body := map[string]any{"email": u.login, "twoFactor": map[string]any{"enabled": false}}
		for k, v := range pw {
			body[k] = v
		}
		if err := r.api.put(ctx, "User", u.id, body); err != nil {
			return err
		}
		st, err := r.enrol(ctx, u)
		if err != nil {
			return fmt.Errorf("enrol %s: %w", u.id, err)
		}
		u.st = st
		mu.Lock()
		r.st.TOTP[u.id] = st
		mu.Unlock()
		return nil
	})
	r.written += len(todo)
	if serr := r.saveState(); serr != nil && err == nil {
		err = serr
	}
	if err != nil {
		return nil, fmt.Errorf("enrol TOTP users: %w", err)
	}
	r.progress("totp: enrolled %d in %s", len(todo), time.Since(start).Round(time.Millisecond))
	return users, nil
}

// enrol signs u in with its password and enables TOTP on the hosted pages:
// GET the enrolment page, read #totp-secret, POST the current code.
func (r *run) enrol(ctx context.Context, u *totpUser) (*totpState, error) {
	br := newBrowser(r.cfg.URL, r.host, r.tr, r.cfg.RequestTimeout)
	p, err := br.get(ctx, pathLogin, "login page")
	if err != nil {
		return nil, err
	}
	if err := expectPage(p, pathLogin, "login page"); err != nil {
		return nil, err
	}
	csrf, err := csrfOf(p, "login page")
	if err != nil {
		return nil, err
	}
	p, err = br.post(ctx, pathLogin, map[string][]string{"username": {u.login}, "password": {r.st.Password}, "_csrf": {csrf}}, "password login")
	if err != nil {
		return nil, err
	}
	if err := expectPage(p, pathLogin, "password login"); err != nil {
		return nil, err
	}
	if strings.Contains(string(p.body), `id="error"`) {
		return nil, assertFailure("password login refused: %s", snippet(p.body))
	}
	p, err = br.get(ctx, pathTwoFactorEnable, "enrolment page")
	if err != nil {
		return nil, err
	}
	if p.status == http.StatusNotFound || p.status == http.StatusMethodNotAllowed {
		return nil, fmt.Errorf("GET %s answered %d: this server has no TOTP enrolment page yet (DESIGN.md §4), so the login scenario cannot enrol its users",
			pathTwoFactorEnable, p.status)
	}
	if err := expectPage(p, pathTwoFactorEnable, "enrolment page"); err != nil {
		return nil, err
	}
	m := totpSecretPattern.FindSubmatch(p.body)
	if m == nil {
		return nil, assertFailure("the enrolment page has no #totp-secret: %s", snippet(p.body))
	}
	sec := strings.ToUpper(strings.Join(strings.Fields(string(m[1])), ""))
	if csrf, err = csrfOf(p, "enrolment page"); err != nil {
		return nil, err
	}
	step := stepOf(r.cfg.Now())
	code, err := totpCode(sec, step)
	if err != nil {
		return nil, assertFailure("the #totp-secret is not base32: %v", err)
	}
	p, err = br.post(ctx, pathTwoFactorEnable, map[string][]string{"code": {code}, "_csrf": {csrf}}, "enable TOTP")
	if err != nil {
		return nil, err
	}
	if p.status != http.StatusOK {
		return nil, httpFailure(p.status, "enable TOTP", p.body)
	}
	// The server's word, not the page's: the factor is on, since when.
	var v userView
	if _, err := r.api.get(ctx, "User", u.id, &v); err != nil {
		return nil, err
	}
	if v.TwoFactor == nil || !v.TwoFactor.Enabled || v.TwoFactor.EnrolledAt == nil {
		return nil, assertFailure("TOTP is not enabled after the enrolment POST (page: %s)", snippet(p.body))
	}
	return &totpState{Secret: sec, EnrolledAt: *v.TwoFactor.EnrolledAt, LastStep: step}, nil
}

// parallel runs fn(0…n-1) on workers goroutines, stopping at the first
// error. With a label it reports progress every tenth.
func (r *run) parallel(ctx context.Context, n, workers int, label string, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next, done atomic.Int64
		once       sync.Once
		first      error
		wg         sync.WaitGroup
	)
	step := int64(max(n/10, 1))
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, i); err != nil {
					once.Do(func() { first = err; cancel() })
					return
				}
				if d := done.Add(1); label != "" && d%step == 0 && d < int64(n) {
					r.progress("  %s: %d/%d", label, d, n)
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}
