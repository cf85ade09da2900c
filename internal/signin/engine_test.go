package signin_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/policy"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/signin"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// pin is a factor of one's own: offered to every user whose id starts
// with "pin-", it accepts "4242" and counts how often it was asked.
type pin struct{ asked atomic.Int64 }

func (*pin) Strategy() string { return "pin" }
func (*pin) Offers(_ context.Context, s *signin.SignIn) ([]signin.Offer, error) {
	if len(s.User.ID) > 4 && s.User.ID[:4] == "pin-" {
		return []signin.Offer{{Strategy: "pin"}}, nil
	}
	return nil, nil
}
func (*pin) Prepare(context.Context, *signin.SignIn, string) (signin.Prepared, error) {
	return signin.Prepared{}, signin.ErrNotPreparable
}
func (p *pin) Attempt(_ context.Context, _ *signin.SignIn, code string) (signin.Proof, error) {
	p.asked.Add(1)
	if code != "4242" {
		return signin.Proof{}, signin.ErrInvalidCode
	}
	return signin.Proof{AMR: []string{"pin"}}, nil
}

type env struct {
	st    store.Store
	clock *clock
	eng   *signin.Engine
	pin   *pin
}

func newEnv(t *testing.T, st store.Store) *env {
	t.Helper()
	c := &clock{t: time.Unix(1_800_000_000, 0).UTC()}
	master := secret.RandomBytes(secret.MasterKeyLen)
	sealer, err := secret.NewSealer(secret.Derive(master, secret.PurposeAtRest))
	if err != nil {
		t.Fatal(err)
	}
	rec := &audit.Recorder{Store: st, Logger: slog.New(slog.DiscardHandler), Now: c.Now}
	tf := &twofactor.Service{Store: st, Sealer: sealer, CodeKey: secret.Derive(master, secret.PurposeCodeMAC), Audit: rec, Now: c.Now}
	p := &pin{}
	return &env{st: st, clock: c, pin: p, eng: &signin.Engine{
		Store: st, TwoFactor: tf, Policy: &policy.Resolver{Store: st}, Factors: []signin.Factor{p}, Now: c.Now,
	}}
}

func (e *env) user(t *testing.T, id string) store.User {
	t.Helper()
	if u, err := e.st.GetUser(context.Background(), id); err == nil {
		return u
	}
	u, _, err := e.st.PutUser(context.Background(), store.User{ID: id, Email: id + "@example.com"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestBeginDecidesFromTheUsersFactorsAndThePolicy(t *testing.T) {
	for _, be := range gormstoretest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			e := newEnv(t, be.Open(t))
			ctx := context.Background()
			e.user(t, "due")
			if err := e.st.PutTwoFactor(ctx, resource.TOTPEnrolmentMarker("due", e.clock.Now())); err != nil {
				t.Fatal(err)
			}
			cases := []struct {
				name, user string
				client     resource.Client
				want       string
			}{
				{"a user without a factor for a client without a rule is done", "plain", resource.Client{ID: "shop"}, signin.StatusComplete},
				{"a client that requires a second factor asks for an enrolment", "plain2", resource.Client{ID: "admin", TwoFactor: &resource.ClientTwoFactor{Required: new(true)}}, signin.StatusNeedsEnrollment},
				{"an account created with a TOTP enrolment due asks for it", "due", resource.Client{ID: "shop"}, signin.StatusNeedsEnrollment},
				{"a factor of one's own that applies asks for it", "pin-ann", resource.Client{ID: "shop"}, signin.StatusNeedsSecondFactor},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					_, step, err := e.eng.Begin(ctx, signin.BeginInput{User: e.user(t, tc.user), Client: tc.client, FirstFactorAt: e.clock.Now()})
					if err != nil {
						t.Fatal(err)
					}
					if step.Status != tc.want {
						t.Fatalf("status %s, want %s", step.Status, tc.want)
					}
					if step.Status == signin.StatusComplete {
						r := step.Result
						if !slices.Equal(r.AMR, []string{"pwd"}) || r.ACR != signin.ACRPassword || !r.AuthTime.Equal(e.clock.Now()) {
							t.Fatalf("result %+v", r)
						}
					}
				})
			}
		})
	}
}

func TestTheEngineCountsAndLocksOutAFactorOfOnesOwn(t *testing.T) {
	for _, be := range gormstoretest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			e := newEnv(t, be.Open(t))
			ctx := context.Background()
			s, _, err := e.eng.Begin(ctx, signin.BeginInput{User: e.user(t, "pin-bob"), FirstFactorAt: e.clock.Now()})
			if err != nil {
				t.Fatal(err)
			}
			for i := range twofactor.MaxAttempts {
				if _, err := e.eng.Attempt(ctx, s, "pin", "0000"); !errors.Is(err, signin.ErrInvalidCode) {
					t.Fatalf("wrong answer %d: %v", i+1, err)
				}
			}
			asked := e.pin.asked.Load()
			t.Run("after the limit even the right answer is refused, and the factor is not asked", func(t *testing.T) {
				if _, err := e.eng.Attempt(ctx, s, "pin", "4242"); !errors.Is(err, signin.ErrInvalidCode) {
					t.Fatalf("right answer during the lockout: %v", err)
				}
				if n := e.pin.asked.Load(); n != asked {
					t.Fatalf("the factor was asked %d more times during the lockout", n-asked)
				}
			})
			t.Run("the lockout is an audit event", func(t *testing.T) {
				evs, _, err := e.st.ListAudit(ctx, store.AuditFilter{UserID: "pin-bob", Type: audit.TwoFactorLockout}, store.Page{Count: 10})
				if err != nil || len(evs) != 1 {
					t.Fatalf("lockout events %v, %v", evs, err)
				}
			})
			t.Run("after the lock the right answer signs in with the factor's amr", func(t *testing.T) {
				e.clock.Advance(twofactor.LockoutBase)
				r, err := e.eng.Attempt(ctx, s, "pin", "4242")
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(r.AMR, []string{"pwd", "pin", "mfa"}) || r.ACR != signin.ACRMFA {
					t.Fatalf("result %+v", r)
				}
			})
		})
	}
}

func TestAParkedSignInCompletesOnceAndExpires(t *testing.T) {
	for _, be := range gormstoretest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			e := newEnv(t, be.Open(t))
			ctx := context.Background()
			cl := resource.Client{ID: "app"}
			u := e.user(t, "pin-cat")
			park := func() string {
				s, _, err := e.eng.Begin(ctx, signin.BeginInput{User: u, Client: cl, FirstFactorAt: e.clock.Now()})
				if err != nil {
					t.Fatal(err)
				}
				ticket, _, err := e.eng.Park(ctx, s, signin.APITTL)
				if err != nil {
					t.Fatal(err)
				}
				return ticket
			}
			t.Run("twenty attempts at once with the right answer complete it once", func(t *testing.T) {
				ticket := park()
				var ok atomic.Int64
				var wg sync.WaitGroup
				for range 20 {
					wg.Go(func() {
						s, err := e.eng.Open(ctx, ticket, cl)
						if err != nil {
							return
						}
						if _, err := e.eng.Attempt(ctx, s, "pin", "4242"); err == nil {
							ok.Add(1)
						}
					})
				}
				wg.Wait()
				if ok.Load() != 1 {
					t.Fatalf("%d completions, want 1", ok.Load())
				}
				if _, err := e.eng.Open(ctx, ticket, cl); !errors.Is(err, signin.ErrInvalidTicket) {
					t.Fatalf("open after completion: %v", err)
				}
			})
			t.Run("another client cannot open it", func(t *testing.T) {
				if _, err := e.eng.Open(ctx, park(), resource.Client{ID: "other"}); !errors.Is(err, signin.ErrInvalidTicket) {
					t.Fatalf("open by another client: %v", err)
				}
			})
			t.Run("it expires", func(t *testing.T) {
				ticket := park()
				e.clock.Advance(signin.APITTL)
				if _, err := e.eng.Open(ctx, ticket, cl); !errors.Is(err, signin.ErrInvalidTicket) {
					t.Fatalf("open after the TTL: %v", err)
				}
			})
		})
	}
}

func TestTheRegistryRefusesTwoFactorsOfOneStrategy(t *testing.T) {
	for _, fs := range [][]signin.Factor{{&pin{}, &pin{}}} {
		if err := (&signin.Engine{Factors: fs}).Validate(); err == nil {
			t.Fatal("two factors named pin were accepted")
		}
	}
	if err := (&signin.Engine{Factors: []signin.Factor{&pin{}}}).Validate(); err != nil {
		t.Fatal(err)
	}
}
