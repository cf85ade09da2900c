package twofactor_test

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

// rfc6238 computes a TOTP code directly from RFC 6238/4226, for the
// benchmark loop where starting oathtool per code would dominate.
func rfc6238(b32secret string, at time.Time) string {
	key, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(b32secret)
	if err != nil {
		panic(err)
	}
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], uint64(at.Unix()/30))
	m := hmac.New(sha1.New, key)
	m.Write(msg[:])
	sum := m.Sum(nil)
	off := sum[len(sum)-1] & 0xf
	v := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	return fmt.Sprintf("%06d", v%1_000_000)
}

func TestRFC6238HelperAgreesWithOathtool(t *testing.T) {
	f := newFixture(t, gormstoretest.Open(t))
	_, sec, _ := f.enrol(t, "helper")
	for _, at := range []time.Time{t0, t0.Add(29 * time.Second), t0.Add(step(1)), t0.Add(step(1000))} {
		if got, want := rfc6238(sec, at), oathtool(t, sec, at); got != want {
			t.Fatalf("at %s: helper %s, oathtool %s", at, got, want)
		}
	}
}

// BenchmarkVerifyTOTP measures one accepted TOTP code on SQLite: attempt
// reservation, secret decryption, window check, replay-guard update and
// clearing the counter, plus the audit event.
func BenchmarkVerifyTOTP(b *testing.B) {
	f := newFixture(b, gormstoretest.Open(b))
	u, sec, _ := f.enrol(b, "bench")
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		f.clock.Advance(30 * time.Second)
		code := rfc6238(sec, f.clock.Now())
		b.StartTimer()
		if _, err := f.verify(u.ID, code, 1); err != nil {
			b.Fatalf("verify: %v", err)
		}
	}
}
