package secret

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
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

// TestAHashThatCannotFinishInTimeIsRefusedAtOnce: under a burst, a request
// whose deadline will pass before the hashes queued ahead of it are done is
// answered at once (ErrBusy, which is a DeadlineExceeded and so a 503 with
// Retry-After) instead of holding its place in the queue and then failing
// anyway; a request with time enough waits its turn.
func TestAHashThatCannotFinishInTimeIsRefusedAtOnce(t *testing.T) {
	h := NewPasswordHasher(fast, 1)
	phc, err := h.Hash(context.Background(), "pw")
	if err != nil {
		t.Fatal(err)
	}
	h.hashNanos.Store(int64(200 * time.Millisecond)) // as if each hash took 200 ms
	// Hold the only slot, as a hash in progress does.
	holding, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := h.VerifyAdmitted(context.Background(), phc, "pw", func() error { close(holding); <-release; return nil })
		done <- err
	}()
	<-holding

	t.Run("a deadline shorter than the hash ahead of it is refused at once", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := h.Verify(ctx, phc, "pw")
		if !errors.Is(err, ErrBusy) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err %v, want ErrBusy matching context.DeadlineExceeded", err)
		}
		if d := time.Since(start); d > 100*time.Millisecond {
			t.Fatalf("refused after %s, want at once", d)
		}
	})
	t.Run("a deadline with room for the queue waits its turn and passes", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		got := make(chan error, 1)
		go func() {
			ok, err := h.Verify(ctx, phc, "pw")
			if err == nil && !ok {
				err = errors.New("the right password did not verify")
			}
			got <- err
		}()
		time.Sleep(20 * time.Millisecond)
		close(release)
		if err := <-got; err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
	t.Run("without a deadline nothing is refused", func(t *testing.T) {
		if ok, err := h.Verify(context.Background(), phc, "pw"); !ok || err != nil {
			t.Fatalf("%v, %v", ok, err)
		}
	})
}
