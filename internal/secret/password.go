package secret

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/internal/secret/argon2id"
)

// Argon2Params are argon2id cost parameters. The defaults are OWASP's
// minimum recommendation (m=19 MiB, t=2, p=1).
type Argon2Params struct {
	MemoryKiB   uint32
	Iterations  uint32
	Parallelism uint8
	SaltLen     int
	KeyLen      uint32
}

// DefaultArgon2 is what new hashes use unless configured otherwise.
var DefaultArgon2 = Argon2Params{MemoryKiB: 19 * 1024, Iterations: 2, Parallelism: 1, SaltLen: 16, KeyLen: 32}

// ErrMalformedHash means a stored hash is not an argon2id PHC string we can read.
var ErrMalformedHash = errors.New("malformed password hash")

// PasswordHasher hashes and verifies passwords with argon2id. At most limit
// hashes run at once, each in one of limit work areas that are kept and
// reused: a burst of logins queues for a slot instead of piling up 19 MiB
// buffers for the collector, and memory stays at limit × MemoryKiB.
type PasswordHasher struct {
	Params Argon2Params
	// slots holds one work area per hash allowed to run at once; taking
	// one is the admission to hash.
	slots chan *argon2id.Memory
	dummy string
	// waiting counts the hashes queued for a slot; hashNanos is a moving
	// average of one hash's duration. Together they tell how long a new
	// hash would take to finish.
	waiting   atomic.Int64
	hashNanos atomic.Int64
}

// ErrBusy is the answer to a hash that would not finish before its
// context's deadline, given the hashes queued before it: refused at once
// rather than after waiting in vain, so that the slots go to requests that
// can still be answered. It matches context.DeadlineExceeded, which every
// surface answers with 503 and Retry-After.
var ErrBusy = fmt.Errorf("password hashing is busy: %w", context.DeadlineExceeded)

// NewPasswordHasher returns a hasher that runs at most limit hashes at once
// (GOMAXPROCS when limit <= 0).
func NewPasswordHasher(p Argon2Params, limit int) *PasswordHasher {
	if limit <= 0 {
		limit = runtime.GOMAXPROCS(0)
	}
	h := &PasswordHasher{Params: p, slots: make(chan *argon2id.Memory, limit)}
	for range limit {
		// Allocated at first use, so an idle server holds none.
		h.slots <- new(argon2id.Memory)
	}
	// A fixed hash to verify against for unknown users, so that "no such
	// user" costs the same as "wrong password".
	salt := make([]byte, p.SaltLen)
	start := time.Now()
	h.dummy = encodePHC(p, salt, argon2id.IDKey(nil, []byte("gatehouse-dummy"), salt, p.Iterations, p.MemoryKiB, p.Parallelism, p.KeyLen))
	h.hashNanos.Store(int64(time.Since(start)))
	return h
}

// wouldFinishBy reports whether a hash queued now would finish before
// deadline: the hashes running and queued go first, limit at a time.
func (h *PasswordHasher) wouldFinishBy(deadline time.Time) bool {
	limit := int64(cap(h.slots))
	ahead := h.waiting.Load() + limit - int64(len(h.slots)) // queued + running
	rounds := ahead/limit + 1
	return time.Until(deadline) >= time.Duration(rounds*h.hashNanos.Load())
}

// idKey runs one argon2id hash when a slot is free. A stored hash with a
// larger memory cost than configured (imported, or from before a change of
// parameters) gets a work area of its own that is not kept, so one odd row
// cannot grow every slot for good.
func (h *PasswordHasher) idKey(ctx context.Context, password, salt []byte, p Argon2Params, keyLen uint32, admit func() error) ([]byte, error) {
	if deadline, ok := ctx.Deadline(); ok && !h.wouldFinishBy(deadline) {
		return nil, ErrBusy
	}
	var m *argon2id.Memory
	h.waiting.Add(1)
	select {
	case m = <-h.slots:
		h.waiting.Add(-1)
	case <-ctx.Done():
		h.waiting.Add(-1)
		return nil, ctx.Err()
	}
	defer func() { h.slots <- m }()
	if admit != nil {
		if err := admit(); err != nil {
			return nil, err
		}
	}
	work := m
	if p.MemoryKiB > h.Params.MemoryKiB {
		work = nil
	}
	start := time.Now()
	key := argon2id.IDKey(work, password, salt, p.Iterations, p.MemoryKiB, p.Parallelism, keyLen)
	if p.MemoryKiB == h.Params.MemoryKiB && p.Iterations == h.Params.Iterations && p.Parallelism == h.Params.Parallelism {
		// An exponential moving average (1/8 weight per hash); concurrent
		// updates may lose one another's, which only slows it down.
		avg := h.hashNanos.Load()
		h.hashNanos.Store(avg + (int64(time.Since(start))-avg)/8)
	}
	return key, nil
}

// Hash returns an argon2id PHC string for password.
func (h *PasswordHasher) Hash(ctx context.Context, password string) (string, error) {
	salt := make([]byte, h.Params.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("read salt: %w", err)
	}
	key, err := h.idKey(ctx, []byte(password), salt, h.Params, h.Params.KeyLen, nil)
	if err != nil {
		return "", err
	}
	return encodePHC(h.Params, salt, key), nil
}

// Verify reports whether password matches the PHC string. An empty phc
// (unknown user, no password set) is checked against a dummy hash so that the
// answer takes as long as a real one, and is always false.
func (h *PasswordHasher) Verify(ctx context.Context, phc, password string) (bool, error) {
	return h.VerifyAdmitted(ctx, phc, password, nil)
}

// VerifyAdmitted is Verify that calls admit once it holds a hashing slot,
// just before the hash, and answers admit's error without hashing. A
// throttle that reserves its attempt in admit counts only the attempts
// being hashed, never the ones still queued for a slot: a burst of right
// passwords from one address is not mistaken for a burst of failures. A
// malformed stored hash is checked against the dummy (admitted, and as slow
// as a real one) and answers ErrMalformedHash.
func (h *PasswordHasher) VerifyAdmitted(ctx context.Context, phc, password string, admit func() error) (bool, error) {
	known := phc != ""
	if !known {
		phc = h.dummy
	}
	p, salt, want, malformed := decodePHC(phc)
	if malformed != nil {
		known = false
		p, salt, want, _ = decodePHC(h.dummy)
	}
	got, err := h.idKey(ctx, []byte(password), salt, p, uint32(len(want)), admit)
	if err != nil {
		return false, err
	}
	return known && subtle.ConstantTimeCompare(got, want) == 1, malformed
}

// IsPHC reports whether s looks like an argon2id PHC string.
func IsPHC(s string) bool {
	_, _, _, err := decodePHC(s)
	return err == nil
}

var b64 = base64.RawStdEncoding

func encodePHC(p Argon2Params, salt, key []byte) string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2id.Version, p.MemoryKiB, p.Iterations, p.Parallelism, b64.EncodeToString(salt), b64.EncodeToString(key))
}

func decodePHC(s string) (Argon2Params, []byte, []byte, error) {
	var p Argon2Params
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return p, nil, nil, ErrMalformedHash
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2id.Version {
		return p, nil, nil, ErrMalformedHash
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.MemoryKiB, &p.Iterations, &p.Parallelism); err != nil {
		return p, nil, nil, ErrMalformedHash
	}
	// Refuse absurd costs from a tampered row rather than allocate them.
	if p.MemoryKiB == 0 || p.MemoryKiB > 1<<20 || p.Iterations == 0 || p.Iterations > 64 || p.Parallelism == 0 {
		return p, nil, nil, ErrMalformedHash
	}
	salt, err := b64.DecodeString(parts[4])
	if err != nil || len(salt) < 8 {
		return p, nil, nil, ErrMalformedHash
	}
	key, err := b64.DecodeString(parts[5])
	if err != nil || len(key) < 16 || len(key) > 64 {
		return p, nil, nil, ErrMalformedHash
	}
	p.SaltLen, p.KeyLen = len(salt), uint32(len(key))
	return p, salt, key, nil
}
