package argon2id

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	upstream "golang.org/x/crypto/argon2"
)

func TestIDKeyMatchesUpstream(t *testing.T) {
	// One Memory for every case, in an order that grows, shrinks and regrows
	// it, so each hash starts on blocks a different hash left behind.
	var reused Memory
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 60 {
		password := make([]byte, rng.IntN(40))
		salt := make([]byte, 8+rng.IntN(24))
		for j := range password {
			password[j] = byte(rng.Uint32())
		}
		for j := range salt {
			salt[j] = byte(rng.Uint32())
		}
		time := 1 + rng.Uint32N(3)
		memory := 8 + rng.Uint32N(300)
		threads := uint8(1 + rng.IntN(4))
		keyLen := 4 + rng.Uint32N(100)
		name := fmt.Sprintf("case %d: t=%d m=%d p=%d len=%d", i, time, memory, threads, keyLen)
		t.Run(name+" gives upstream's key in reused memory", func(t *testing.T) {
			want := upstream.IDKey(password, salt, time, memory, threads, keyLen)
			if got := IDKey(&reused, password, salt, time, memory, threads, keyLen); !bytes.Equal(got, want) {
				t.Fatalf("reused memory: got %x, want %x", got, want)
			}
			if got := IDKey(nil, password, salt, time, memory, threads, keyLen); !bytes.Equal(got, want) {
				t.Fatalf("fresh memory: got %x, want %x", got, want)
			}
		})
	}
}

func TestIDKeyKeepsLargestMemory(t *testing.T) {
	var m Memory
	IDKey(&m, []byte("pw"), []byte("somesalt"), 1, 64, 1, 32)
	IDKey(&m, []byte("pw"), []byte("somesalt"), 1, 32, 1, 32)
	if m.Size() != 64 {
		t.Fatalf("a smaller hash should reuse the 64 KiB area, have %d KiB", m.Size())
	}
}

func TestIDKeyKnownAnswers(t *testing.T) {
	// upstream's argon2id vectors (password "password", salt "somesalt"),
	// hashed one after another in one dirty Memory.
	vectors := []struct {
		time, memory uint32
		threads      uint8
		hash         string
	}{
		{1, 64, 1, "655ad15eac652dc59f7170a7332bf49b8469be1fdb9c28bb"},
		{2, 64, 1, "068d62b26455936aa6ebe60060b0a65870dbfa3ddf8d41f7"},
		{2, 64, 2, "350ac37222f436ccb5c0972f1ebd3bf6b958bf2071841362"},
	}
	var m Memory
	for _, v := range vectors {
		t.Run(fmt.Sprintf("t=%d m=%d p=%d gives the published key", v.time, v.memory, v.threads), func(t *testing.T) {
			got := IDKey(&m, []byte("password"), []byte("somesalt"), v.time, v.memory, v.threads, 24)
			if hex.EncodeToString(got) != v.hash {
				t.Fatalf("got %x, want %s", got, v.hash)
			}
		})
	}
}

func BenchmarkIDKey(b *testing.B) {
	password, salt := []byte("correct horse battery staple"), []byte("0123456789abcdef")
	b.Run("reused memory m=19MiB t=2 p=1", func(b *testing.B) {
		var m Memory
		for b.Loop() {
			IDKey(&m, password, salt, 2, 19*1024, 1, 32)
		}
	})
	b.Run("upstream m=19MiB t=2 p=1", func(b *testing.B) {
		for b.Loop() {
			upstream.IDKey(password, salt, 2, 19*1024, 1, 32)
		}
	})
}

func TestMappedMemoryIsReturnedWhenUnreachable(t *testing.T) {
	released := make(chan struct{})
	func() {
		m := new(Memory)
		IDKey(m, []byte("pw"), []byte("somesalt"), 1, 1024, 1, 32)
		if m.unmap == nil {
			t.Skip("this system hashes in heap memory")
		}
		runtime.AddCleanup(m, func(ch chan struct{}) { close(ch) }, released)
	}()
	for range 100 {
		runtime.GC()
		select {
		case <-released:
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatal("an unreachable Memory was never cleaned up")
}
