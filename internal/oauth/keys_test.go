package oauth

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"

	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/store"
)

// jwksKIDs lists the kids of the published ES256 keys (the access tokens').
func jwksKIDs(t *testing.T, e *env) []string {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(e.get(PathJWKS, "").raw), &set); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, k := range set.Keys {
		if k.Algorithm == algES256 {
			out = append(out, k.KeyID)
		}
	}
	return out
}

func kidOf(t *testing.T, e *env, tok string) string {
	t.Helper()
	h, _ := e.verifyJWT(tok)
	return h.KeyID
}

// cachingRP is a relying party that caches the JWKS for the max-age the
// server advertises and never refetches early: a token naming a kid it has
// not cached fails, as "no applicable keys found" does in openid-client.
type cachingRP struct {
	e         *env
	set       jose.JSONWebKeySet
	expires   time.Time
	fetches   int
	fetchedAt []time.Time
}

func (rp *cachingRP) refresh(t *testing.T) {
	t.Helper()
	now := rp.e.clock.Now()
	if rp.fetches > 0 && now.Before(rp.expires) {
		return
	}
	res := rp.e.get(PathJWKS, "")
	var maxAge int
	if _, err := fmt.Sscanf(strings.TrimPrefix(res.header.Get("Cache-Control"), "public, "), "max-age=%d", &maxAge); err != nil || maxAge <= 0 {
		t.Fatalf("JWKS Cache-Control = %q, want a max-age", res.header.Get("Cache-Control"))
	}
	rp.set = jose.JSONWebKeySet{}
	if err := json.Unmarshal([]byte(res.raw), &rp.set); err != nil {
		t.Fatal(err)
	}
	rp.expires = now.Add(time.Duration(maxAge) * time.Second)
	rp.fetches++
	rp.fetchedAt = append(rp.fetchedAt, now)
}

// verify checks tok against the cached JWKS and returns its kid.
func (rp *cachingRP) verify(t *testing.T, what, tok string) string {
	t.Helper()
	rp.refresh(t)
	obj, err := jose.ParseSigned(tok)
	if err != nil {
		t.Fatalf("%s: parse: %v", what, err)
	}
	kid := obj.Signatures[0].Protected.KeyID
	keys := rp.set.Key(kid)
	if len(keys) != 1 {
		t.Fatalf("%s: no applicable key: kid %s is not in the JWKS cached at %v", what, kid, rp.fetchedAt[len(rp.fetchedAt)-1])
	}
	if _, err := obj.Verify(keys[0].Key); err != nil {
		t.Fatalf("%s: signature: %v", what, err)
	}
	return kid
}

func TestKeyRotation(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		// A second process on the same database, started before the rotation.
		p2, err := e.newProvider()
		if err != nil {
			t.Fatal(err)
		}
		rp := &cachingRP{e: e}
		rp.refresh(t)
		before := e.clientCredentials("svc", svcSecret, "patient.read").str("access_token")
		oldKID := rp.verify(t, "token before the rotation", before)

		rotatedAt := e.clock.Now()
		newKID, signsFrom, err := e.p.RotateKey(ctx, algES256)
		if err != nil {
			t.Fatal(err)
		}
		if newKID == oldKID {
			t.Fatal("rotation kept the kid")
		}
		if got := signsFrom.Sub(rotatedAt); got < DefaultKeyPublicationPeriod || got > DefaultKeyPublicationPeriod+time.Second {
			t.Fatalf("the new key signs %s after the rotation, want the publication period %s", got, DefaultKeyPublicationPeriod)
		}
		if DefaultKeyPublicationPeriod < 2*JWKSMaxAge {
			t.Fatalf("publication period %s is shorter than twice the JWKS max-age %s", DefaultKeyPublicationPeriod, JWKSMaxAge)
		}
		kids := jwksKIDs(t, e)
		if len(kids) != 2 || !contains(kids, oldKID) || !contains(kids, newKID) {
			t.Fatalf("JWKS kids right after the rotation = %v, want old and new", kids)
		}

		t.Run("a relying party that cached the JWKS before the rotation validates every token issued during and after it", func(t *testing.T) {
			step := 20 * time.Second
			var signedNew, signedOld int
			lastOld := before
			for elapsed := time.Duration(0); elapsed <= DefaultKeyPublicationPeriod+3*JWKSMaxAge; elapsed += step {
				tok := e.clientCredentials("svc", svcSecret, "patient.read").str("access_token")
				kid := rp.verify(t, fmt.Sprintf("token of process 1 at +%s", elapsed), tok)
				tok2, err := p2.keys.sign(ctx, algES256, map[string]any{"sub": "svc"}, typAccessToken, nil)
				if err != nil {
					t.Fatal(err)
				}
				kid2 := rp.verify(t, fmt.Sprintf("token of process 2 at +%s", elapsed), tok2)
				now := e.clock.Now()
				if kid == newKID && signedNew == 0 {
					// The switch: what the old key signed just before still holds.
					if r := e.introspect(lastOld); r.body["active"] != true {
						t.Fatalf("a token signed with the previous key is no longer active after the switch: %s", r.raw)
					}
					rp.verify(t, "the last token of the previous key, after the switch", lastOld)
				}
				if kid == oldKID {
					lastOld = tok
				}
				for _, k := range []string{kid, kid2} {
					switch {
					case k == newKID:
						signedNew++
						if now.Before(signsFrom) {
							t.Fatalf("the new key signed at +%s, before the publication period ended", elapsed)
						}
					case now.After(signsFrom.Add(keyRefreshEvery + step)):
						t.Fatalf("a process still signs with %s at +%s, %s after the switch", k, elapsed, now.Sub(signsFrom))
					default:
						signedOld++
					}
				}
				e.clock.Advance(step)
			}
			if signedNew == 0 || signedOld == 0 {
				t.Fatalf("%d tokens with the old key, %d with the new: the walk missed the switch", signedOld, signedNew)
			}
			if rp.fetches < 3 {
				t.Fatalf("the relying party fetched the JWKS %d times: its cache never expired", rp.fetches)
			}
			rp.verify(t, "the token issued before the rotation", before)
		})

		t.Run("keys survive a restart", func(t *testing.T) {
			p3, err := e.newProvider()
			if err != nil {
				t.Fatal(err)
			}
			if got := p3.keys.signer(ctx, algES256).kid; got != newKID {
				t.Fatalf("restarted provider signs with %s, want %s", got, newKID)
			}
			if string(p3.keys.jwks(ctx)) != string(e.p.keys.jwks(ctx)) {
				t.Fatal("restarted provider serves another JWKS")
			}
			if err := p3.strategy.verifyJWT(ctx, before); err != nil {
				t.Fatalf("restarted provider cannot verify an old token: %v", err)
			}
		})
		t.Run("a rotation by another process is published everywhere before it signs", func(t *testing.T) {
			third, signsFrom, err := p2.RotateKey(ctx, algES256)
			if err != nil {
				t.Fatal(err)
			}
			e.clock.Advance(keyRefreshEvery + time.Second)
			if kids := jwksKIDs(t, e); !contains(kids, third) {
				t.Fatalf("process 1 does not publish %s a refresh interval after the rotation: %v", third, kids)
			}
			for i, p := range []*Provider{e.p, p2} {
				if got := p.keys.signer(ctx, algES256).kid; got != newKID {
					t.Fatalf("process %d signs with %s during the publication period, want %s", i+1, got, newKID)
				}
			}
			e.clock.Advance(signsFrom.Sub(e.clock.Now()) + keyRefreshEvery + time.Second)
			for i, p := range []*Provider{e.p, p2} {
				if got := p.keys.signer(ctx, algES256).kid; got != third {
					t.Fatalf("process %d signs with %s after the publication period, want %s", i+1, got, third)
				}
			}
		})
		t.Run("retired keys leave the JWKS once their tokens have expired", func(t *testing.T) {
			e.clock.Advance(48 * time.Hour)
			kids := jwksKIDs(t, e)
			if len(kids) != 1 || contains(kids, oldKID) || contains(kids, newKID) {
				t.Fatalf("JWKS kids = %v, want only the active key", kids)
			}
		})
	})
}

func TestKeyPublicationPeriodBelowTheCacheLifetimeIsRefused(t *testing.T) {
	e := newEnv(t, gormstoreOpen(t))
	cfg := e.config()
	cfg.KeyPublicationPeriod = JWKSMaxAge
	if _, err := New(context.Background(), cfg); err == nil {
		t.Fatal("New accepted a publication period no longer than the JWKS max-age")
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func TestSigningKeysAtRest(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		recs, err := e.st.ListSigningKeys(ctx)
		if err != nil || len(recs) != 2 {
			t.Fatalf("keys = %v, %v; want an RS256 and an ES256 key", recs, err)
		}
		if recs[0].Algorithm == recs[1].Algorithm || len(recs[0].PrivateKey) == 0 || len(recs[1].PrivateKey) == 0 {
			t.Fatalf("key records = %+v", recs)
		}
		t.Run("the private key is sealed", func(t *testing.T) {
			var jwk jose.JSONWebKey
			if err := jwk.UnmarshalJSON(recs[0].PrivateKey); err == nil {
				t.Fatal("private key stored as a plain JWK")
			}
			sealer, _ := secret.NewSealer(secret.Derive(e.master, secret.PurposeAtRest))
			if _, err := sealer.Open(recs[0].PrivateKey, []byte("another kid")); err == nil {
				t.Fatal("the sealed key opens under another kid")
			}
		})
		t.Run("another master key cannot start", func(t *testing.T) {
			cfg := e.config()
			cfg.MasterKey = []byte("ffffffffffffffffffffffffffffffff")
			if _, err := New(ctx, cfg); err == nil {
				t.Fatal("New succeeded with the wrong master key")
			}
		})
	})
}

func TestProcessesRacingToCreateTheFirstKey(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		fresh := newEnvWithoutKey(t, e)
		// Two processes that both found no key and created one leave two
		// active keys behind (same second, so the kid breaks the tie).
		km := fresh.keyGenerator()
		created := time.Now().UTC().Truncate(time.Second)
		var kids []string
		for range 2 {
			_, rec, err := km.generate(algES256)
			if err != nil {
				t.Fatal(err)
			}
			rec.CreatedAt = created
			if err := fresh.st.CreateSigningKey(ctx, rec); err != nil {
				t.Fatal(err)
			}
			kids = append(kids, rec.ID)
		}
		want := max(kids[0], kids[1])

		var wg sync.WaitGroup
		ps := make([]*Provider, 4)
		errs := make([]error, 4)
		for i := range ps {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ps[i], errs[i] = fresh.newProvider()
			}()
		}
		wg.Wait()
		for i, p := range ps {
			if errs[i] != nil {
				t.Fatal(errs[i])
			}
			if got := p.keys.signer(ctx, algES256).kid; got != want {
				t.Fatalf("process %d signs with %s, want %s", i, got, want)
			}
		}
		all, _ := fresh.st.ListSigningKeys(ctx)
		var recs []store.SigningKey
		for _, r := range all {
			if r.Algorithm == algES256 {
				recs = append(recs, r)
			}
		}
		active := 0
		for _, r := range recs {
			if r.RetiredAt.IsZero() {
				active++
			} else if r.NotAfter.Before(time.Now()) {
				t.Errorf("the losing key %s was dropped at once (NotAfter %v)", r.ID, r.NotAfter)
			}
		}
		if active != 1 || len(recs) != 2 {
			t.Fatalf("%d keys, %d active; want 2 keys, 1 active", len(recs), active)
		}
		if k := ps[0].keys.current(ctx).byKID[min(kids[0], kids[1])]; k == nil {
			t.Fatal("the losing key is not published")
		}
	})
}

func TestConcurrentFirstStartsAgreeOnOneKey(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		fresh := newEnvWithoutKey(t, e)
		var wg sync.WaitGroup
		ps := make([]*Provider, 4)
		errs := make([]error, 4)
		for i := range ps {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ps[i], errs[i] = fresh.newProvider()
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		// Whatever interleaving happened, after one refresh interval every
		// process signs with the same key.
		fresh.clock.Advance(2 * keyRefreshEvery)
		for _, alg := range signingAlgs {
			signer := ps[0].keys.signer(ctx, alg).kid
			for i, p := range ps {
				if got := p.keys.signer(ctx, alg).kid; got != signer {
					t.Fatalf("process %d signs %s with %s, process 0 with %s", i, alg, got, signer)
				}
			}
		}
	})
}

func TestUpgradeFromOnlyES256AddsAnRS256KeyThatSignsAtOnce(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		fresh := newEnvWithoutKey(t, e)
		km := fresh.keyGenerator()
		_, old, err := km.generate(algES256)
		if err != nil {
			t.Fatal(err)
		}
		old.CreatedAt = fresh.clock.Now().Add(-30 * 24 * time.Hour)
		if err := fresh.st.CreateSigningKey(ctx, old); err != nil {
			t.Fatal(err)
		}
		p, err := fresh.newProvider()
		if err != nil {
			t.Fatal(err)
		}
		if got := p.keys.signer(ctx, algES256).kid; got != old.ID {
			t.Fatalf("ES256 signer = %s, want the key from before the upgrade %s", got, old.ID)
		}
		rs := p.keys.signer(ctx, algRS256)
		if rs == nil {
			t.Fatal("no RS256 signer after the upgrade")
		}
		tok, _, err := p.idSigner.Generate(ctx, map[string]any{"sub": "u"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.idSigner.Decode(ctx, tok); err != nil {
			t.Fatalf("an RS256 ID token does not verify: %v", err)
		}
		t.Run("a token whose alg header names another key's algorithm is refused", func(t *testing.T) {
			if _, err := p.keys.publicKey(ctx, algES256, rs.kid); err == nil {
				t.Fatal("the RS256 key was returned for ES256")
			}
		})
	})
}

func TestRotatingOneAlgorithmLeavesTheOtherAlone(t *testing.T) {
	e := newEnv(t, gormstoreOpen(t))
	ctx := context.Background()
	es := e.p.keys.signer(ctx, algES256).kid
	rs := e.p.keys.signer(ctx, algRS256).kid
	newRS, signsFrom, err := e.p.RotateKey(ctx, algRS256)
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(signsFrom.Sub(e.clock.Now()) + keyRefreshEvery + time.Second)
	if got := e.p.keys.signer(ctx, algRS256).kid; got != newRS || got == rs {
		t.Fatalf("RS256 signs with %s after the publication period, want %s", got, newRS)
	}
	if got := e.p.keys.signer(ctx, algES256).kid; got != es {
		t.Fatalf("ES256 signer changed from %s to %s by an RS256 rotation", es, got)
	}
	if _, _, err := e.p.RotateKey(ctx, "HS256"); err == nil {
		t.Fatal("RotateKey accepted HS256")
	}
}

// keyGenerator is a key manager on e's store and master key, for tests that
// write key records themselves before a provider starts.
func (e *env) keyGenerator() *keyManager {
	sealer, _ := secret.NewSealer(secret.Derive(e.master, secret.PurposeAtRest))
	return &keyManager{store: e.st, sealer: sealer, now: e.clock.Now}
}

// newEnvWithoutKey is a second env on a fresh store of the same backend.
func newEnvWithoutKey(t *testing.T, e *env) *env {
	t.Helper()
	var st store.Store
	for _, b := range backendsFor(t) {
		if b.Name == backendName(t) {
			st = b.Open(t)
		}
	}
	if st == nil {
		t.Fatalf("no backend for %s", t.Name())
	}
	return &env{t: t, st: st, clock: e.clock, hasher: e.hasher, master: e.master}
}

func TestJWKSResponse(t *testing.T) {
	e := newEnv(t, gormstoreOpen(t))
	r := e.get(PathJWKS, "")
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/jwk-set+json" {
		t.Fatalf("got %d %v", r.status, r.header)
	}
}
