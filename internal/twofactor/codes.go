package twofactor

import (
	"crypto/rand"
	"fmt"
	"math/big"
	"strings"

	"github.com/gatehouse/gatehouse/internal/secret"
)

// recoveryAlphabet leaves out 0/o, 1/i/l so a code copied by hand survives.
const (
	recoveryAlphabet = "23456789abcdefghjkmnpqrstuvwxyz"
	recoveryLen      = 10
	// maxInput bounds the work done on a submitted code: anything longer is
	// malformed without being scanned.
	maxInput = 64
)

type codeKind int

const (
	kindMalformed codeKind = iota
	kindDigits             // six ASCII digits: TOTP, SMS or e-mail code
	kindRecovery
)

// normalize strips the spaces, tabs and dashes people type or paste inside a
// code, and classifies what is left. Only ASCII is accepted: a code in other
// digits, with a NUL or of the wrong length is malformed.
func normalize(raw string) (string, codeKind) {
	if len(raw) > maxInput {
		return "", kindMalformed
	}
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == ' ' || c == '\t' || c == '-':
		case c >= 'A' && c <= 'Z':
			b.WriteByte(c + 'a' - 'A')
		case c >= '0' && c <= '9', c >= 'a' && c <= 'z':
			b.WriteByte(c)
		default:
			return "", kindMalformed
		}
	}
	s := b.String()
	switch {
	case len(s) == Digits && allIn(s, "0123456789"):
		return s, kindDigits
	case len(s) == recoveryLen && allIn(s, recoveryAlphabet):
		return s, kindRecovery
	}
	return "", kindMalformed
}

func allIn(s, set string) bool {
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(set, s[i]) < 0 {
			return false
		}
	}
	return true
}

// newRecoveryCodes returns n fresh codes as shown to the user (xxxxx-xxxxx).
func newRecoveryCodes(n int) ([]string, error) {
	codes := make([]string, n)
	max := big.NewInt(int64(len(recoveryAlphabet)))
	for i := range codes {
		b := make([]byte, recoveryLen)
		for j := range b {
			k, err := rand.Int(rand.Reader, max)
			if err != nil {
				return nil, fmt.Errorf("random recovery code: %w", err)
			}
			b[j] = recoveryAlphabet[k.Int64()]
		}
		codes[i] = string(b[:5]) + "-" + string(b[5:])
	}
	return codes, nil
}

// recoveryHash is the stored form of a normalised recovery code: keyed and
// bound to its user, so a dump neither reveals codes nor lets one be tried
// offline without the key.
func (s *Service) recoveryHash(userID, code string) string {
	return secret.MAC(s.CodeKey, "recovery", userID, code)
}

// oneTimeHash is the stored form of an SMS/e-mail code, bound to what it was
// sent for and why, so a code cannot be spent on another login or purpose.
func (s *Service) oneTimeHash(purpose, bindingID, code string) string {
	return secret.MAC(s.CodeKey, "one-time", purpose, bindingID, code)
}

func (s *Service) recoveryHashes(userID string, codes []string) []string {
	hashes := make([]string, len(codes))
	for i, c := range codes {
		norm, _ := normalize(c)
		hashes[i] = s.recoveryHash(userID, norm)
	}
	return hashes
}
