package policy_test

import (
	"context"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/policy"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

func TestRememberDeviceAndGraceComeFromTheAuthConfigThatApplies(t *testing.T) {
	const day = 24 * time.Hour
	for _, be := range gormstoretest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			cases := []struct {
				name         string
				tf           *resource.AuthConfigTwoFactor
				client       resource.Client
				wantRemember time.Duration
				wantGrace    time.Duration
			}{
				{name: "nothing configured remembers no browser and gives no grace"},
				{name: "rememberDevice enabled without days remembers for 30 days",
					tf: &resource.AuthConfigTwoFactor{RememberDevice: &resource.RememberDevice{Enabled: true}}, wantRemember: 30 * day},
				{name: "rememberDevice with days remembers for that many",
					tf: &resource.AuthConfigTwoFactor{RememberDevice: &resource.RememberDevice{Enabled: true, Days: 7}}, wantRemember: 7 * day},
				{name: "rememberDevice turned off remembers nothing whatever its days",
					tf: &resource.AuthConfigTwoFactor{RememberDevice: &resource.RememberDevice{Days: 7}}},
				{name: "a grace period of 5 days is 5 days",
					tf: &resource.AuthConfigTwoFactor{Required: true, GracePeriod: &resource.GracePeriod{Days: 5}}, wantGrace: 5 * day},
				{name: "a client naming another AuthConfig gets that one's settings",
					tf:     &resource.AuthConfigTwoFactor{RememberDevice: &resource.RememberDevice{Enabled: true}, GracePeriod: &resource.GracePeriod{Days: 5}},
					client: resource.Client{ID: "c", AuthConfig: ref("plain")}},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					st := be.Open(t)
					putAuthConfigWith(t, st, resource.AuthConfig{ID: "default", TwoFactor: tc.tf})
					putAuthConfigWith(t, st, resource.AuthConfig{ID: "plain"})
					p, err := (&policy.Resolver{Store: st}).For(context.Background(), tc.client)
					if err != nil {
						t.Fatal(err)
					}
					if got := p.RememberDeviceFor(); got != tc.wantRemember {
						t.Errorf("remember for %v, want %v", got, tc.wantRemember)
					}
					if got := p.EnrolmentGrace(); got != tc.wantGrace {
						t.Errorf("grace %v, want %v", got, tc.wantGrace)
					}
				})
			}
		})
	}
}
