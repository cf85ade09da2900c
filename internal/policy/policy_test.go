package policy_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/policy"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
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

func putAuthConfig(t *testing.T, st store.Store, id, issuer string, required bool) {
	t.Helper()
	rec, err := resource.ToStoreAuthConfig(resource.AuthConfig{ID: id,
		TwoFactor: &resource.AuthConfigTwoFactor{IssuerName: issuer, Required: required}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.PutAuthConfig(context.Background(), rec, 0); err != nil {
		t.Fatal(err)
	}
}

func putAuthConfigWith(t *testing.T, st store.Store, ac resource.AuthConfig) {
	t.Helper()
	rec, err := resource.ToStoreAuthConfig(ac, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.PutAuthConfig(context.Background(), rec, 0); err != nil {
		t.Fatal(err)
	}
}

func ref(id string) *resource.Reference { return &resource.Reference{ID: id} }

func TestResolutionGoesClientThenAuthConfigThenDefaults(t *testing.T) {
	for _, be := range gormstoretest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			cases := []struct {
				name        string
				stored      []string // AuthConfig ids stored, each with issuer = id
				requiredIDs []string
				client      resource.Client
				wantIssuer  string
				wantReq     bool
				wantErr     error
				methods     []string // of every stored AuthConfig
				wantMethods []string
				wantACR     string
			}{
				{name: "nothing stored gives the built-in defaults", wantIssuer: resource.DefaultIssuerName},
				{name: "the only AuthConfig applies to a client that names none", stored: []string{"shop"}, wantIssuer: "shop"},
				{name: "default wins over others for a client that names none", stored: []string{"shop", "default"}, wantIssuer: "default"},
				{name: "a client's reference wins over default", stored: []string{"shop", "default"}, client: resource.Client{ID: "c", AuthConfig: ref("shop")}, wantIssuer: "shop"},
				{name: "several and no default give the built-in defaults", stored: []string{"a", "b"}, wantIssuer: resource.DefaultIssuerName},
				{name: "a reference to a missing AuthConfig is an error, never a fallback", stored: []string{"default"}, client: resource.Client{ID: "c", AuthConfig: ref("gone")}, wantErr: store.ErrNotFound},
				{name: "the AuthConfig's requirement applies", stored: []string{"default"}, requiredIDs: []string{"default"}, wantIssuer: "default", wantReq: true},
				{name: "the client's requirement adds to an AuthConfig that has none", stored: []string{"default"}, client: resource.Client{ID: "c", TwoFactor: &resource.ClientTwoFactor{Required: new(true)}}, wantIssuer: "default", wantReq: true},
				{name: "a client that says required: false lifts the AuthConfig's requirement for its sign-ins", stored: []string{"default"}, requiredIDs: []string{"default"}, client: resource.Client{ID: "c", TwoFactor: &resource.ClientTwoFactor{Required: new(false)}}, wantIssuer: "default", wantReq: false},
				{name: "a client that says nothing about required keeps the AuthConfig's", stored: []string{"default"}, requiredIDs: []string{"default"}, client: resource.Client{ID: "c", TwoFactor: &resource.ClientTwoFactor{Methods: []string{"totp"}}}, wantIssuer: "default", wantReq: true, wantMethods: []string{"totp"}},
				{name: "the AuthConfig's methods apply to a client that lists none", stored: []string{"default"}, methods: []string{"totp", "passkey"}, wantIssuer: "default", wantMethods: []string{"totp", "passkey"}},
				{name: "the client's methods override the AuthConfig's", stored: []string{"default"}, methods: []string{"totp", "passkey"}, client: resource.Client{ID: "c", TwoFactor: &resource.ClientTwoFactor{Methods: []string{"phone_code"}}}, wantIssuer: "default", wantMethods: []string{"phone_code"}},
				{name: "without methods anywhere every factor is allowed", stored: []string{"default"}, wantIssuer: "default"},
				{name: "the client's required_acr is the policy's", client: resource.Client{ID: "c", Auth: &resource.ClientAuth{AuthorizationCode: &resource.GrantSettings{RequiredACR: "urn:gatehouse:acr:mfa"}}}, wantIssuer: resource.DefaultIssuerName, wantACR: "urn:gatehouse:acr:mfa"},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					st := be.Open(t)
					for _, id := range tc.stored {
						req := false
						for _, r := range tc.requiredIDs {
							req = req || r == id
						}
						putAuthConfigWith(t, st, resource.AuthConfig{ID: id,
							TwoFactor: &resource.AuthConfigTwoFactor{IssuerName: id, Required: req, Methods: tc.methods}})
					}
					r := &policy.Resolver{Store: st}
					p, err := r.For(context.Background(), tc.client)
					if tc.wantErr != nil {
						if !errors.Is(err, tc.wantErr) {
							t.Fatalf("err = %v, want %v", err, tc.wantErr)
						}
						return
					}
					if err != nil {
						t.Fatal(err)
					}
					if got := p.AuthConfig.Issuer(); got != tc.wantIssuer {
						t.Errorf("issuer = %q, want %q", got, tc.wantIssuer)
					}
					if got := p.SecondFactorRequired(); got != tc.wantReq {
						t.Errorf("second factor required = %v, want %v", got, tc.wantReq)
					}
					if got := p.Methods(); !slices.Equal(got, tc.wantMethods) {
						t.Errorf("methods = %v, want %v", got, tc.wantMethods)
					}
					for _, m := range []string{"totp", "phone_code", "passkey"} {
						if want := tc.wantMethods == nil || slices.Contains(tc.wantMethods, m); p.Allows(m) != want {
							t.Errorf("allows %s = %v, want %v", m, p.Allows(m), want)
						}
					}
					if got := p.RequiredACR(); got != tc.wantACR {
						t.Errorf("required acr = %q, want %q", got, tc.wantACR)
					}
				})
			}
		})
	}
}

func TestTheCacheHoldsForItsTTLAndForgetDropsItAtOnce(t *testing.T) {
	for _, be := range gormstoretest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			st := be.Open(t)
			c := &clock{t: time.Unix(1_800_000_000, 0)}
			r := &policy.Resolver{Store: st, TTL: time.Second, Now: c.Now}
			ctx := context.Background()
			issuer := func() string {
				t.Helper()
				ac, err := r.AuthConfig(ctx, resource.Client{})
				if err != nil {
					t.Fatal(err)
				}
				return ac.Issuer()
			}
			putAuthConfig(t, st, "default", "one", false)
			if got := issuer(); got != "one" {
				t.Fatalf("issuer = %q", got)
			}
			putAuthConfig(t, st, "default", "two", false)
			t.Run("a change made behind the resolver's back shows after the TTL", func(t *testing.T) {
				if got := issuer(); got != "one" {
					t.Fatalf("within the TTL: issuer = %q, want the cached one", got)
				}
				c.Advance(time.Second)
				if got := issuer(); got != "two" {
					t.Fatalf("after the TTL: issuer = %q, want two", got)
				}
			})
			t.Run("Forget makes the next resolution read the store", func(t *testing.T) {
				putAuthConfig(t, st, "default", "three", false)
				r.Forget()
				if got := issuer(); got != "three" {
					t.Fatalf("after Forget: issuer = %q, want three", got)
				}
			})
			t.Run("a cached AuthConfig changed by a caller stays as stored", func(t *testing.T) {
				ac, _ := r.AuthConfig(ctx, resource.Client{})
				ac.TwoFactor.IssuerName = "scribbled"
				if got := issuer(); got != "three" {
					t.Fatalf("issuer = %q after a caller changed its copy", got)
				}
			})
		})
	}
}
