package signin_test

import (
	"slices"
	"testing"

	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/signin"
)

func TestTheLevelOfASignInFollowsItsMethods(t *testing.T) {
	cases := []struct {
		name string
		amr  []string
		want string
	}{
		{"a password alone is pwd", []string{"pwd"}, signin.ACRPassword},
		{"a password and a code are mfa", []string{"pwd", "otp", "mfa"}, signin.ACRMFA},
		{"a passkey as second factor is phishing-resistant", []string{"pwd", "hwk", "mfa"}, signin.ACRPhishingResistant},
		{"a passkey alone is phishing-resistant", []string{"hwk"}, signin.ACRPhishingResistant},
		{"nothing is pwd, the weakest", nil, signin.ACRPassword},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := signin.ACRFor(tc.amr); got != tc.want {
				t.Fatalf("ACRFor(%v) = %s, want %s", tc.amr, got, tc.want)
			}
		})
	}
}

func TestAcrValuesAskForTheWeakestKnownAlternative(t *testing.T) {
	cases := []struct {
		name   string
		values []string
		want   string
	}{
		{"no values ask for nothing", nil, ""},
		{"unknown values are ignored", []string{"urn:other:gold"}, ""},
		{"one known value is the level", []string{"urn:other:gold", signin.ACRMFA}, signin.ACRMFA},
		{"alternatives are met by the weakest", []string{signin.ACRPhishingResistant, signin.ACRMFA}, signin.ACRMFA},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := signin.RequestedACR(tc.values); got != tc.want {
				t.Fatalf("RequestedACR(%v) = %q, want %q", tc.values, got, tc.want)
			}
		})
	}
	t.Run("a stronger sign-in satisfies a weaker level, not the reverse", func(t *testing.T) {
		if !signin.Satisfies([]string{"pwd", "hwk", "mfa"}, signin.ACRMFA) || signin.Satisfies([]string{"pwd"}, signin.ACRMFA) || !signin.Satisfies([]string{"pwd"}, "") {
			t.Fatal("Satisfies ranks levels wrongly")
		}
	})
}

func TestTheClaimsParameterAsksForALevelToo(t *testing.T) {
	cases := []struct {
		name          string
		acrValues     []string
		claims        []string
		essential     bool
		want          string
		wantSatisfied bool
	}{
		{"nothing asked is no level", nil, nil, false, "", true},
		{"an essential acr is a level", nil, []string{signin.ACRMFA}, true, signin.ACRMFA, true},
		{"the stronger of acr_values and claims wins", []string{signin.ACRPassword}, []string{signin.ACRPhishingResistant}, false, signin.ACRPhishingResistant, true},
		{"an essential acr of unknown values cannot be met", nil, []string{"urn:other:gold"}, true, "", false},
		{"a voluntary acr of unknown values is ignored", []string{signin.ACRMFA}, []string{"urn:other:gold"}, false, signin.ACRMFA, true},
		{"an essential acr without values only asks for the claim", nil, nil, true, "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := signin.RequestedLevel(tc.acrValues, tc.claims, tc.essential)
			if got != tc.want || ok != tc.wantSatisfied {
				t.Fatalf("RequestedLevel = %q, %v; want %q, %v", got, ok, tc.want, tc.wantSatisfied)
			}
		})
	}
}

func TestTheEngineAndTheResourcesKnowTheSameLevels(t *testing.T) {
	if !slices.Equal(signin.ACRValues, resource.ACRValues) {
		t.Fatalf("signin %v, resource %v", signin.ACRValues, resource.ACRValues)
	}
}

func TestAStepUpAccumulatesTheMethods(t *testing.T) {
	cases := []struct {
		name         string
		prior, added []string
		want         []string
	}{
		{"a password session adds a code", []string{"pwd"}, []string{"otp"}, []string{"pwd", "otp", "mfa"}},
		{"an mfa session adds a passkey", []string{"pwd", "otp", "mfa"}, []string{"hwk"}, []string{"pwd", "otp", "hwk", "mfa"}},
		{"a method proven twice is listed once", []string{"pwd", "otp", "mfa"}, []string{"otp"}, []string{"pwd", "otp", "mfa"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := signin.Accumulate(tc.prior, tc.added); !slices.Equal(got, tc.want) {
				t.Fatalf("Accumulate = %v, want %v", got, tc.want)
			}
		})
	}
}
