package bench

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v3"

	"github.com/gatehouse/gatehouse/internal/secret"
)

// Floor is the unavoidable cryptography, measured in this process on
// GOMAXPROCS goroutines while the server is idle: what one core set can do
// at best, the bound a scenario's rate is compared with.
type Floor struct {
	GOMAXPROCS int `json:"gomaxprocs"`
	// Argon2 are the parameters of the password hash (the server's).
	Argon2 struct {
		MemoryKiB   uint32 `json:"memoryKiB"`
		Iterations  uint32 `json:"iterations"`
		Parallelism uint8  `json:"parallelism"`
	} `json:"argon2"`
	// PasswordHashPerSec: argon2id hashes/s, through the same limited
	// hasher the server uses (one per login).
	PasswordHashPerSec float64 `json:"passwordHashPerSec"`
	// SecretCheckUncachedPerSec: client-secret checks/s on a cache miss
	// (an argon2id verification of the stored PHC).
	SecretCheckUncachedPerSec float64 `json:"secretCheckUncachedPerSec"`
	// SecretCheckCachedPerSec: client-secret checks/s on a cache hit (the
	// server's HMAC of id, version, stored hash and presented secret, then
	// a map lookup under a lock).
	SecretCheckCachedPerSec float64 `json:"secretCheckCachedPerSec"`
	// ES256PerSec: JWT access tokens signed/s (claims encoded, ES256).
	ES256PerSec float64 `json:"es256PerSec"`
}

// measureFloor runs each measurement for d.
func measureFloor(ctx context.Context, p secret.Argon2Params, d time.Duration, progress func(string, ...any)) (Floor, error) {
	var f Floor
	n := runtime.GOMAXPROCS(0)
	f.GOMAXPROCS = n
	f.Argon2.MemoryKiB, f.Argon2.Iterations, f.Argon2.Parallelism = p.MemoryKiB, p.Iterations, p.Parallelism
	hasher := secret.NewPasswordHasher(p, n)
	const clientSecret = "a-client-secret-of-typical-length-0123456789"

	var err error
	progress("floor: argon2id m=%d t=%d p=%d on %d goroutines for %s", p.MemoryKiB, p.Iterations, p.Parallelism, n, d)
	if f.PasswordHashPerSec, err = opsPerSec(ctx, n, d, func() error {
		_, err := hasher.Hash(ctx, clientSecret)
		return err
	}); err != nil {
		return f, fmt.Errorf("password hash floor: %w", err)
	}

	phc, err := hasher.Hash(ctx, clientSecret)
	if err != nil {
		return f, err
	}
	if f.SecretCheckUncachedPerSec, err = opsPerSec(ctx, n, d, func() error {
		ok, err := hasher.Verify(ctx, phc, clientSecret)
		if err == nil && !ok {
			err = fmt.Errorf("the secret does not verify")
		}
		return err
	}); err != nil {
		return f, fmt.Errorf("client secret floor: %w", err)
	}

	cache := newSecretCache()
	key := secret.RandomBytes(32)
	cache.put(secret.MAC(key, "bench-client", "1", phc, clientSecret), time.Now().Add(time.Hour))
	short := max(d/3, 100*time.Millisecond)
	if f.SecretCheckCachedPerSec, err = opsPerSec(ctx, n, short, func() error {
		k := secret.MAC(key, "bench-client", strconv.Itoa(1), phc, clientSecret)
		if !cache.hit(k, time.Now()) {
			return fmt.Errorf("cache miss")
		}
		return nil
	}); err != nil {
		return f, fmt.Errorf("client secret cache floor: %w", err)
	}

	sign, err := newES256Signer()
	if err != nil {
		return f, err
	}
	if f.ES256PerSec, err = opsPerSec(ctx, n, short, sign); err != nil {
		return f, fmt.Errorf("ES256 floor: %w", err)
	}
	return f, nil
}

// opsPerSec runs fn on n goroutines for about d and returns completed calls
// per second of wall time (up to the last call's end). A warm-up of d/4
// runs first, uncounted: the first argon2 calls of a process pay page
// faults for memory later calls reuse.
func opsPerSec(ctx context.Context, n int, d time.Duration, fn func() error) (float64, error) {
	if _, err := countOps(ctx, n, d/4, fn); err != nil {
		return 0, err
	}
	return countOps(ctx, n, d, fn)
}

func countOps(ctx context.Context, n int, d time.Duration, fn func() error) (float64, error) {
	var (
		count    atomic.Int64
		wg       sync.WaitGroup
		once     sync.Once
		firstErr error
	)
	start := time.Now()
	stop := start.Add(d)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && time.Now().Before(stop) {
				if err := fn(); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				count.Add(1)
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return 0, firstErr
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return float64(count.Load()) / time.Since(start).Seconds(), nil
}

// secretCache is the shape of the server's verified-secret cache: a map
// from HMAC key to expiry under one mutex.
type secretCache struct {
	mu sync.Mutex
	m  map[string]time.Time
}

func newSecretCache() *secretCache { return &secretCache{m: map[string]time.Time{}} }

func (c *secretCache) put(k string, exp time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[k] = exp
}

func (c *secretCache) hit(k string, now time.Time) bool {
	c.mu.Lock()
	exp, ok := c.m[k]
	c.mu.Unlock()
	return ok && now.Before(exp)
}

// newES256Signer returns a function that signs one access-token-sized JWT
// the way the server does: claims encoded to JSON, then ES256 (P-256).
func newES256Signer() (func() error, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate P-256 key: %w", err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key},
		(&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", "bench-key"))
	if err != nil {
		return nil, fmt.Errorf("ES256 signer: %w", err)
	}
	return func() error {
		now := time.Now().Unix()
		claims, err := json.Marshal(map[string]any{
			"iss": "http://127.0.0.1:8080", "sub": "bench-client", "aud": []string{}, "client_id": "bench-client",
			"iat": now, "nbf": now, "exp": now + 3600, "jti": secret.RandomToken(16), "scp": []string{},
		})
		if err != nil {
			return err
		}
		obj, err := signer.Sign(claims)
		if err != nil {
			return err
		}
		_, err = obj.CompactSerialize()
		return err
	}, nil
}
