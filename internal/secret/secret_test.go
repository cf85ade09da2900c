package secret

import (
	"context"
	"strings"
	"testing"
)

var fast = Argon2Params{MemoryKiB: 64, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}

func TestPasswordHasher(t *testing.T) {
	ctx := context.Background()
	h := NewPasswordHasher(fast, 2)
	phc, err := h.Hash(ctx, "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(phc, "$argon2id$v=19$m=64,t=1,p=1$") || strings.Contains(phc, "correct") {
		t.Fatalf("unexpected PHC %q", phc)
	}
	tests := []struct {
		name    string
		phc, pw string
		want    bool
		wantErr bool
	}{
		{"the right password verifies", phc, "correct horse", true, false},
		{"a wrong password does not", phc, "correct horsf", false, false},
		{"an empty hash (unknown user) never verifies", "", "gatehouse-dummy", false, false},
		{"a malformed hash is an error", "$argon2id$v=19$garbage", "x", false, true},
		{"an absurd memory cost is refused", "$argon2id$v=19$m=99999999,t=1,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "x", false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ok, err := h.Verify(ctx, tc.phc, tc.pw)
			if (err != nil) != tc.wantErr || ok != tc.want {
				t.Fatalf("Verify = %v, %v; want %v, err=%v", ok, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestSealerBindsAssociatedData(t *testing.T) {
	s, err := NewSealer(Derive([]byte("master-master-master-master-0000"), PurposeAtRest))
	if err != nil {
		t.Fatal(err)
	}
	sealed := s.Seal([]byte("JBSWY3DPEHPK3PXP"), []byte("alice"))
	if strings.Contains(string(sealed), "JBSWY3DP") {
		t.Fatal("plaintext visible in sealed value")
	}
	if got, err := s.Open(sealed, []byte("alice")); err != nil || string(got) != "JBSWY3DPEHPK3PXP" {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := s.Open(sealed, []byte("mallory")); err != ErrOpen {
		t.Fatalf("Open with other ad = %v, want ErrOpen", err)
	}
	if _, err := s.Open(sealed[:5], []byte("alice")); err != ErrOpen {
		t.Fatalf("Open of truncated value = %v, want ErrOpen", err)
	}
}

func TestRandomDigitsAreDigits(t *testing.T) {
	for range 100 {
		d := RandomDigits(6)
		if len(d) != 6 || strings.Trim(d, "0123456789") != "" {
			t.Fatalf("RandomDigits(6) = %q", d)
		}
	}
}

func BenchmarkPasswordVerify(b *testing.B) {
	ctx := context.Background()
	h := NewPasswordHasher(DefaultArgon2, 0)
	phc, _ := h.Hash(ctx, "password")
	b.ResetTimer()
	for b.Loop() {
		if ok, _ := h.Verify(ctx, phc, "password"); !ok {
			b.Fatal("verify failed")
		}
	}
}
