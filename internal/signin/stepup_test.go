package signin_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/policy"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/signin"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

// key stands in for the passkey factor: offered to users whose id starts
// with "key-", it proves amr hwk and reaches the phishing-resistant level.
type key struct{}

func (key) Strategy() string { return "key" }
func (key) ACR() string      { return signin.ACRPhishingResistant }
func (key) Offers(_ context.Context, s *signin.SignIn) ([]signin.Offer, error) {
	if strings.HasPrefix(s.User.ID, "key-") {
		return []signin.Offer{{Strategy: "key"}}, nil
	}
	return nil, nil
}
func (key) Prepare(context.Context, *signin.SignIn, string) (signin.Prepared, error) {
	return signin.Prepared{}, signin.ErrNotPreparable
}
func (key) Attempt(_ context.Context, _ *signin.SignIn, answer string) (signin.Proof, error) {
	if answer != "signed" {
		return signin.Proof{}, signin.ErrInvalidCode
	}
	return signin.Proof{AMR: []string{signin.AMRHardwareKey}}, nil
}

// passkey is a factor of strategy passkey that does not say its level:
// the engine knows the passkey factor reaches phr.
type passkey struct{ key }

func (passkey) Strategy() string { return signin.StrategyPasskey }
func (passkey) Offers(_ context.Context, s *signin.SignIn) ([]signin.Offer, error) {
	if strings.HasPrefix(s.User.ID, "pk-") {
		return []signin.Offer{{Strategy: signin.StrategyPasskey}}, nil
	}
	return nil, nil
}

// unleveled hides key's ACR method.
type unleveled struct{ signin.Factor }

func requireACR(acr string) *resource.ClientAuth {
	return &resource.ClientAuth{AuthorizationCode: &resource.GrantSettings{RequiredACR: acr}}
}

func TestStepUpAsksOnlyForWhatTheSessionLacks(t *testing.T) {
	pwd := []string{"pwd"}
	mfa := []string{"pwd", "pin", "mfa"}
	for _, be := range gormstoretest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			e := newEnv(t, be.Open(t))
			e.eng.Factors = append(e.eng.Factors, key{}, unleveled{passkey{}})
			ctx := context.Background()
			cases := []struct {
				name    string
				user    string
				client  resource.Client
				amr     []string
				acr     string
				factors []string
				want    string
				wantErr error
				offers  []string
			}{
				{name: "a password session of a user without factors is enough for a plain client", user: "plain", client: resource.Client{ID: "shop"}, amr: pwd, want: signin.StatusComplete},
				{name: "a user with a factor of their own proves it, without the password again", user: "pin-a", client: resource.Client{ID: "shop"}, amr: pwd, want: signin.StatusNeedsStepUp, offers: []string{"pin"}},
				{name: "a client's required_acr of mfa steps a password session up", user: "pin-b", client: resource.Client{ID: "bank", Auth: requireACR(signin.ACRMFA)}, amr: pwd, want: signin.StatusNeedsStepUp, offers: []string{"pin"}},
				{name: "acr_values of mfa on a plain client step up the same way", user: "pin-c", client: resource.Client{ID: "shop"}, amr: pwd, acr: signin.ACRMFA, want: signin.StatusNeedsStepUp, offers: []string{"pin"}},
				{name: "a user without a factor who must reach mfa enrols", user: "plain2", client: resource.Client{ID: "bank", Auth: requireACR(signin.ACRMFA)}, amr: pwd, want: signin.StatusNeedsEnrollment},
				{name: "an mfa session is enough for mfa", user: "pin-d", client: resource.Client{ID: "bank", Auth: requireACR(signin.ACRMFA)}, amr: mfa, want: signin.StatusComplete},
				{name: "phr is offered only the factors that reach it", user: "key-e", client: resource.Client{ID: "vault"}, amr: mfa, acr: signin.ACRPhishingResistant, want: signin.StatusNeedsStepUp, offers: []string{"key"}},
				{name: "the passkey factor reaches phr without saying so", user: "pk-e", client: resource.Client{ID: "vault"}, amr: mfa, acr: signin.ACRPhishingResistant, want: signin.StatusNeedsStepUp, offers: []string{"passkey"}},
				{name: "phr without such a factor cannot be met", user: "pin-f", client: resource.Client{ID: "vault", Auth: requireACR(signin.ACRPhishingResistant)}, amr: mfa, wantErr: signin.ErrUnmetLevel},
				{name: "a client's methods decide which factors may step up", user: "pin-g", client: resource.Client{ID: "admin", TwoFactor: &resource.ClientTwoFactor{Required: new(true), Methods: []string{"totp"}}}, amr: pwd, want: signin.StatusNeedsEnrollment},
				{name: "an mfa session whose factor the client's methods leave out proves an allowed one", user: "key-i", client: resource.Client{ID: "admin", TwoFactor: &resource.ClientTwoFactor{Required: new(true), Methods: []string{"key"}}}, amr: mfa, factors: []string{"pin"}, want: signin.StatusNeedsStepUp, offers: []string{"key"}},
				{name: "an mfa session whose factor the client's methods allow is enough", user: "key-j", client: resource.Client{ID: "admin", TwoFactor: &resource.ClientTwoFactor{Required: new(true), Methods: []string{"key"}}}, amr: []string{"pwd", "hwk", "mfa"}, factors: []string{"key"}, want: signin.StatusComplete},
				{name: "an mfa session with a left-out factor and no allowed one cannot be met", user: "pin-k", client: resource.Client{ID: "admin", TwoFactor: &resource.ClientTwoFactor{Required: new(true), Methods: []string{"key"}}}, amr: mfa, factors: []string{"pin"}, wantErr: signin.ErrUnmetLevel},
				{name: "methods that nothing enrollable meets cannot be met", user: "plain3", client: resource.Client{ID: "admin", TwoFactor: &resource.ClientTwoFactor{Required: new(true), Methods: []string{"passkey"}}}, amr: pwd, wantErr: signin.ErrUnmetLevel},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					s, step, err := e.eng.StepUp(ctx, signin.StepUpInput{User: e.user(t, tc.user), Client: tc.client, AMR: tc.amr, Factors: tc.factors, AuthTime: e.clock.Now(), ACR: tc.acr})
					if tc.wantErr != nil {
						if !errors.Is(err, tc.wantErr) {
							t.Fatalf("err = %v, want %v", err, tc.wantErr)
						}
						return
					}
					if err != nil {
						t.Fatal(err)
					}
					if step.Status != tc.want {
						t.Fatalf("status %s, want %s", step.Status, tc.want)
					}
					if tc.offers != nil {
						offers, err := e.eng.Offers(ctx, s)
						if err != nil {
							t.Fatal(err)
						}
						if got := signin.Strategies(offers); !slices.Equal(got, tc.offers) {
							t.Fatalf("offers %v, want %v", got, tc.offers)
						}
					}
				})
			}

			t.Run("a step-up accumulates the methods and keeps the first factor's time", func(t *testing.T) {
				signedIn := e.clock.Now()
				e.clock.Advance(time.Hour)
				s, _, err := e.eng.StepUp(ctx, signin.StepUpInput{User: e.user(t, "key-h"), Client: resource.Client{ID: "vault"}, AMR: mfa, AuthTime: signedIn, ACR: signin.ACRPhishingResistant})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := e.eng.Attempt(ctx, s, "pin", "4242"); !errors.Is(err, signin.ErrNotOffered) {
					t.Fatalf("a factor below the level was accepted: %v", err)
				}
				r, err := e.eng.Attempt(ctx, s, "key", "signed")
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(r.AMR, []string{"pwd", "pin", "hwk", "mfa"}) || r.ACR != signin.ACRPhishingResistant || !r.AuthTime.Equal(signedIn) {
					t.Fatalf("result %+v", r)
				}
			})
		})
	}
}

func TestBeginKeepsTheMethodsOfARequirementAndAUsersOwnFactor(t *testing.T) {
	for _, be := range gormstoretest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			e := newEnv(t, be.Open(t))
			ctx := context.Background()
			cases := []struct {
				name   string
				client resource.Client
				want   string
			}{
				{"a user's own factor is asked for when nothing is required, whatever the methods", resource.Client{ID: "shop", TwoFactor: &resource.ClientTwoFactor{Methods: []string{"totp"}}}, signin.StatusNeedsSecondFactor},
				{"a required second factor is proven only by the client's methods", resource.Client{ID: "admin", TwoFactor: &resource.ClientTwoFactor{Required: new(true), Methods: []string{"totp"}}}, signin.StatusNeedsEnrollment},
				{"the client's methods allowing the factor keep it", resource.Client{ID: "admin2", TwoFactor: &resource.ClientTwoFactor{Required: new(true), Methods: []string{"pin"}}}, signin.StatusNeedsSecondFactor},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					_, step, err := e.eng.Begin(ctx, signin.BeginInput{User: e.user(t, "pin-m"), Client: tc.client, FirstFactorAt: e.clock.Now()})
					if err != nil {
						t.Fatal(err)
					}
					if step.Status != tc.want {
						t.Fatalf("status %s, want %s", step.Status, tc.want)
					}
				})
			}
			t.Run("a client that lifts its AuthConfig's requirement signs a user without factors in with the password", func(t *testing.T) {
				rec, err := resource.ToStoreAuthConfig(resource.AuthConfig{ID: "default", TwoFactor: &resource.AuthConfigTwoFactor{Required: true}}, nil)
				if err != nil {
					t.Fatal(err)
				}
				if _, _, err := e.st.PutAuthConfig(ctx, rec, 0); err != nil {
					t.Fatal(err)
				}
				e.eng.Policy = &policy.Resolver{Store: e.st}
				for _, c := range []struct {
					client resource.Client
					want   string
				}{
					{resource.Client{ID: "shop", TwoFactor: &resource.ClientTwoFactor{Required: new(false)}}, signin.StatusComplete},
					{resource.Client{ID: "other"}, signin.StatusNeedsEnrollment},
				} {
					_, step, err := e.eng.Begin(ctx, signin.BeginInput{User: e.user(t, "plain-n"), Client: c.client, FirstFactorAt: e.clock.Now()})
					if err != nil || step.Status != c.want {
						t.Fatalf("client %s: %s, %v; want %s", c.client.ID, step.Status, err, c.want)
					}
				}
			})
		})
	}
}
