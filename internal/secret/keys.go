package secret

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
)

// MasterKeyLen is the length of the master secret in bytes.
const MasterKeyLen = 32

// Purposes for Derive. Each derived key serves exactly one use.
const (
	PurposeCookieHash   = "gatehouse cookie hash v1"
	PurposeCookieBlock  = "gatehouse cookie block v1"
	PurposeAtRest       = "gatehouse at-rest encryption v1"
	PurposeFosite       = "gatehouse fosite global secret v1"
	PurposeCodeMAC      = "gatehouse code mac v1"
	PurposeSecretsCache = "gatehouse client secret cache v1"
	PurposePushedMark   = "gatehouse pushed request mark v1"
	PurposeDPoPNonce    = "gatehouse dpop nonce v1"
)

// Derive returns a 32-byte key for purpose from the master secret (HKDF-SHA256).
func Derive(master []byte, purpose string) []byte {
	k, err := hkdf.Key(sha256.New, master, nil, purpose, 32)
	if err != nil {
		// Only possible for absurd lengths; 32 bytes is always valid.
		panic(fmt.Sprintf("hkdf: %v", err))
	}
	return k
}

// ErrOpen means sealed data failed authentication: wrong key, wrong
// associated data, or tampering.
var ErrOpen = errors.New("sealed data did not authenticate")

// Sealer encrypts small values at rest with AES-256-GCM.
type Sealer struct{ aead cipher.AEAD }

// NewSealer returns a sealer for a 32-byte key.
func NewSealer(key []byte) (*Sealer, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("sealer key must be 32 bytes, got %d", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("new cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("new gcm: %w", err)
	}
	return &Sealer{aead: aead}, nil
}

// Seal returns nonce||ciphertext. ad binds the value to its owner (a user id,
// a key id) so a sealed value copied to another row does not open.
func (s *Sealer) Seal(plaintext, ad []byte) []byte {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plaintext)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		panic(fmt.Sprintf("read nonce: %v", err)) // crypto/rand never fails on Linux
	}
	return s.aead.Seal(nonce, nonce, plaintext, ad)
}

// Open reverses Seal.
func (s *Sealer) Open(sealed, ad []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n+s.aead.Overhead() {
		return nil, ErrOpen
	}
	out, err := s.aead.Open(nil, sealed[:n], sealed[n:], ad)
	if err != nil {
		return nil, ErrOpen
	}
	return out, nil
}

// MAC is a keyed hash (HMAC-SHA256, hex) for high-entropy values that must be
// found by value but not stored in the clear: recovery codes, one-time codes
// bound to an id, session ids.
func MAC(key []byte, parts ...string) string {
	m := hmac.New(sha256.New, key)
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return hex.EncodeToString(m.Sum(nil))
}

// Equal compares two secrets in constant time.
func Equal(a, b string) bool { return hmac.Equal([]byte(a), []byte(b)) }

// RandomBytes returns n random bytes.
func RandomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return b
}

var token32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// RandomToken returns a URL-safe random token carrying n bytes of entropy.
func RandomToken(n int) string {
	return hex.EncodeToString(RandomBytes(n))
}

// RandomBase32 returns an upper-case base32 string of n random bytes.
func RandomBase32(n int) string { return token32.EncodeToString(RandomBytes(n)) }

// RandomDigits returns n uniformly random decimal digits.
func RandomDigits(n int) string {
	b := make([]byte, n)
	ten := big.NewInt(10)
	for i := range b {
		d, err := rand.Int(rand.Reader, ten)
		if err != nil {
			panic(fmt.Sprintf("crypto/rand: %v", err))
		}
		b[i] = byte('0' + d.Int64())
	}
	return string(b)
}
