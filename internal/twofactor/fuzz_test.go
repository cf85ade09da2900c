package twofactor

import (
	"strings"
	"testing"
)

// FuzzNormalizeCode feeds arbitrary input to the code classifier every
// OTP and recovery-code check starts with: it never panics, and what it
// accepts is exactly six ASCII digits or ten letters of the recovery
// alphabet, whatever spaces, dashes or case the input had.
func FuzzNormalizeCode(f *testing.F) {
	for _, s := range []string{"123456", " 123 456 ", "12-34-56", "abcde-fghij", "ABCDE FGHIJ", "١٢٣٤٥٦", "12345\x00", "0o1il-23456",
		strings.Repeat("1", 65), "123456789", "", "\t-\t-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		s, kind := normalize(raw)
		switch kind {
		case kindMalformed:
			if s != "" {
				t.Fatalf("malformed %q normalised to %q", raw, s)
			}
		case kindDigits:
			if len(s) != Digits || !allIn(s, "0123456789") {
				t.Fatalf("%q accepted as digits %q", raw, s)
			}
		case kindRecovery:
			if len(s) != recoveryLen || !allIn(s, recoveryAlphabet) {
				t.Fatalf("%q accepted as a recovery code %q", raw, s)
			}
		}
		if kind != kindMalformed && len(raw) > maxInput {
			t.Fatalf("input of %d bytes accepted", len(raw))
		}
	})
}
