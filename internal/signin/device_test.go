package signin_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/signin"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

func putRemember(t *testing.T, e *env, enabled bool, version int64) {
	t.Helper()
	rec, err := resource.ToStoreAuthConfig(resource.AuthConfig{ID: "default",
		TwoFactor: &resource.AuthConfigTwoFactor{RememberDevice: &resource.RememberDevice{Enabled: enabled, Days: 30}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.st.PutAuthConfig(context.Background(), rec, version); err != nil {
		t.Fatal(err)
	}
}

func TestARememberedBrowserStandsInForTheSecondFactorOnlyWithinItsRules(t *testing.T) {
	for _, be := range gormstoretest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			e := newEnv(t, be.Open(t))
			ctx := context.Background()
			putRemember(t, e, true, 0)
			user, other := e.user(t, "pin-dev"), e.user(t, "pin-other")
			s, step, err := e.eng.Begin(ctx, signin.BeginInput{User: user, FirstFactorAt: e.clock.Now()})
			if err != nil || step.Status != signin.StatusNeedsSecondFactor {
				t.Fatalf("first sign-in: %v %+v", err, step)
			}
			token, expires, err := e.eng.Remember(ctx, s, "pin", "Firefox")
			if err != nil || token == "" || !expires.Equal(e.clock.Now().Add(30*24*time.Hour)) {
				t.Fatalf("remember: %q %v %v", token, expires, err)
			}
			e.clock.Advance(time.Minute)
			hour, zero := time.Hour, time.Duration(0)
			phrClient := resource.Client{ID: "vault", Auth: &resource.ClientAuth{AuthorizationCode: &resource.GrantSettings{RequiredACR: signin.ACRPhishingResistant}}}
			totpOnly := resource.Client{ID: "admin", TwoFactor: &resource.ClientTwoFactor{Required: new(true), Methods: []string{"totp"}}}
			cases := []struct {
				name string
				in   signin.BeginInput
				skip bool
			}{
				{"its token skips the second factor", signin.BeginInput{User: user, DeviceToken: token}, true},
				{"without a token the factor is asked", signin.BeginInput{User: user}, false},
				{"an unknown token is no device", signin.BeginInput{User: user, DeviceToken: token + "x"}, false},
				{"another user's sign-in on that browser asks for the factor", signin.BeginInput{User: other, DeviceToken: token}, false},
				{"acr_values of mfa are met", signin.BeginInput{User: user, DeviceToken: token, ACRValues: []string{signin.ACRMFA}}, true},
				{"acr_values of phr are never met", signin.BeginInput{User: user, DeviceToken: token, ACRValues: []string{signin.ACRPhishingResistant}}, false},
				{"a client's required_acr of phr is never met", signin.BeginInput{User: user, Client: phrClient, DeviceToken: token}, false},
				{"a max_age longer than the time since the factor is met", signin.BeginInput{User: user, DeviceToken: token, MaxAge: &hour}, true},
				{"a max_age shorter than the time since the factor asks for it", signin.BeginInput{User: user, DeviceToken: token, MaxAge: &zero}, false},
				{"a client that accepts other factors only asks for one", signin.BeginInput{User: user, Client: totpOnly, DeviceToken: token}, false},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					tc.in.FirstFactorAt = e.clock.Now()
					_, step, err := e.eng.Begin(ctx, tc.in)
					if err != nil && tc.skip {
						t.Fatal(err)
					}
					if got := step.Status == signin.StatusComplete; got != tc.skip {
						t.Fatalf("skipped = %v (status %s), want %v", got, step.Status, tc.skip)
					}
					if tc.skip {
						r := step.Result
						if !slices.Equal(r.AMR, []string{"pwd", "mfa"}) || r.ACR != signin.ACRMFA || r.Strategy != "pin" || r.RememberedDevice == "" {
							t.Fatalf("result %+v", r)
						}
					}
				})
			}

			t.Run("turning rememberDevice off stops every remembered browser at once", func(t *testing.T) {
				putRemember(t, e, false, 1)
				off, step, err := e.eng.Begin(ctx, signin.BeginInput{User: user, DeviceToken: token, FirstFactorAt: e.clock.Now()})
				if err != nil || step.Status != signin.StatusNeedsSecondFactor {
					t.Fatalf("with the setting off: %v %s", err, step.Status)
				}
				if _, _, err := e.eng.Remember(ctx, off, "pin", ""); err == nil {
					t.Fatal("a browser was remembered with the setting off")
				}
				putRemember(t, e, true, 2)
			})

			t.Run("the browser is asked again once the record expires", func(t *testing.T) {
				e.clock.Advance(30 * 24 * time.Hour)
				_, step, err := e.eng.Begin(ctx, signin.BeginInput{User: user, DeviceToken: token, FirstFactorAt: e.clock.Now()})
				if err != nil || step.Status != signin.StatusNeedsSecondFactor {
					t.Fatalf("after 30 days: %v %s", err, step.Status)
				}
			})
		})
	}
}
