package signin

import "slices"

// ACRValues are the acr values Gatehouse issues, weakest first (discovery's
// acr_values_supported).
var ACRValues = []string{ACRPassword, ACRMFA, ACRPhishingResistant}

// Level is the rank of an acr value: 1 pwd, 2 mfa, 3 phr; 0 for a value
// Gatehouse does not issue (and for "", no requirement).
func Level(acr string) int {
	return slices.Index(ACRValues, acr) + 1
}

// KnownACR reports whether acr is one of ACRValues.
func KnownACR(acr string) bool { return Level(acr) > 0 }

// ACRFor is the acr of a sign-in that proved amr: phr when a passkey (hwk)
// was among the methods, mfa after two factors, pwd otherwise.
func ACRFor(amr []string) string {
	switch {
	case slices.Contains(amr, AMRHardwareKey):
		return ACRPhishingResistant
	case slices.Contains(amr, AMRMFA):
		return ACRMFA
	}
	return ACRPassword
}

// Stronger is the stronger of two acr values ("" and unknown values rank
// lowest).
func Stronger(a, b string) string {
	if Level(b) > Level(a) {
		return b
	}
	return a
}

// Satisfies reports whether a sign-in that proved amr meets the level acr
// ("" is always met).
func Satisfies(amr []string, acr string) bool {
	return Level(ACRFor(amr)) >= Level(acr)
}

// RequestedACR is the level an authorization request's acr_values ask for:
// the values are alternatives in order of preference, so the weakest known
// one is enough. Unknown values are ignored (OpenID Connect Core §3.1.2.1:
// acr_values is a voluntary claim); "" when none is known.
func RequestedACR(values []string) string {
	out := ""
	for _, v := range values {
		if !KnownACR(v) {
			continue
		}
		if out == "" || Level(v) < Level(out) {
			out = v
		}
	}
	return out
}

// RequestedLevel is the level an authorization request asks for through
// acr_values and the claims parameter's acr: the stronger of the two (each
// met by its weakest known alternative). ok is false when the claims
// parameter's acr is essential and names no level Gatehouse issues: such a
// request cannot be met.
func RequestedLevel(acrValues, claimValues []string, essential bool) (acr string, ok bool) {
	claimed := RequestedACR(claimValues)
	if essential && len(claimValues) > 0 && claimed == "" {
		return "", false
	}
	return Stronger(RequestedACR(acrValues), claimed), true
}

// Accumulate is the amr of a session that proved prior and then, in a
// step-up, methods: every method once, in the order proven, and mfa at the
// end when more than one factor was proven.
func Accumulate(prior, methods []string) []string {
	var out []string
	for _, m := range slices.Concat(prior, methods) {
		if m != AMRMFA && !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	if len(out) > 1 {
		out = append(out, AMRMFA)
	}
	return out
}
