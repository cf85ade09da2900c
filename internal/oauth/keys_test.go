package oauth

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"

	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/store"
)

func jwksKIDs(t *testing.T, e *env) []string {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(e.get(PathJWKS, "").raw), &set); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, k := range set.Keys {
		out = append(out, k.KeyID)
	}
	return out
}

func kidOf(t *testing.T, e *env, tok string) string {
	t.Helper()
	h, _ := e.verifyJWT(tok)
	return h.KeyID
}

func TestKeyRotation(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		before := e.clientCredentials("svc", svcSecret, "patient.read").str("access_token")
		oldKID := kidOf(t, e, before)

		newKID, err := e.p.RotateKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if newKID == oldKID {
			t.Fatal("rotation kept the kid")
		}
		after := e.clientCredentials("svc", svcSecret, "patient.read").str("access_token")
		if got := kidOf(t, e, after); got != newKID {
			t.Fatalf("new token kid = %s, want %s", got, newKID)
		}
		kids := jwksKIDs(t, e)
		if len(kids) != 2 || !contains(kids, oldKID) || !contains(kids, newKID) {
			t.Fatalf("JWKS kids = %v, want old and new", kids)
		}
		if r := e.introspect(before); r.body["active"] != true {
			t.Fatalf("a token signed with the retired key is no longer active: %s", r.raw)
		}
		idt := e.webTokens("openid").str("id_token")
		if got := kidOf(t, e, idt); got != newKID {
			t.Errorf("id token kid = %s, want %s", got, newKID)
		}

		t.Run("keys survive a restart", func(t *testing.T) {
			p2, err := e.newProvider()
			if err != nil {
				t.Fatal(err)
			}
			if got := p2.keys.signer(ctx).kid; got != newKID {
				t.Fatalf("restarted provider signs with %s, want %s", got, newKID)
			}
			if string(p2.keys.jwks(ctx)) != string(e.p.keys.jwks(ctx)) {
				t.Fatal("restarted provider serves another JWKS")
			}
			// The old process verifies what the new one signs, and back.
			if err := p2.strategy.verifyJWT(ctx, before); err != nil {
				t.Fatalf("restarted provider cannot verify an old token: %v", err)
			}
		})
		t.Run("another process learns of a rotation", func(t *testing.T) {
			p2, err := e.newProvider()
			if err != nil {
				t.Fatal(err)
			}
			third, err := p2.RotateKeys(ctx)
			if err != nil {
				t.Fatal(err)
			}
			tok, err := p2.keys.sign(ctx, map[string]any{"sub": "x"}, typAccessToken, nil)
			if err != nil {
				t.Fatal(err)
			}
			// e.p has not reloaded yet, but an unknown kid makes it look.
			if err := e.p.strategy.verifyJWT(ctx, tok); err != nil {
				t.Fatalf("first process rejects a token signed with %s: %v", third, err)
			}
			e.clock.Advance(2 * keyRefreshEvery)
			if got := e.p.keys.signer(ctx).kid; got != third {
				t.Fatalf("first process still signs with %s after the refresh interval, want %s", got, third)
			}
		})
		t.Run("retired keys leave the JWKS once their tokens have expired", func(t *testing.T) {
			e.clock.Advance(48 * time.Hour)
			kids := jwksKIDs(t, e)
			if len(kids) != 1 || contains(kids, oldKID) {
				t.Fatalf("JWKS kids = %v, want only the active key", kids)
			}
		})
	})
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
		if err != nil || len(recs) != 1 {
			t.Fatalf("keys = %v, %v", recs, err)
		}
		if recs[0].Algorithm != "ES256" || len(recs[0].PrivateKey) == 0 {
			t.Fatalf("key record = %+v", recs[0])
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
		sealer, _ := secret.NewSealer(secret.Derive(fresh.master, secret.PurposeAtRest))
		km := &keyManager{store: fresh.st, sealer: sealer, now: fresh.clock.Now}
		created := time.Now().UTC().Truncate(time.Second)
		var kids []string
		for range 2 {
			_, rec, err := km.generate()
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
			if got := p.keys.signer(ctx).kid; got != want {
				t.Fatalf("process %d signs with %s, want %s", i, got, want)
			}
		}
		recs, _ := fresh.st.ListSigningKeys(ctx)
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
		if got := len(ps[0].keys.current(ctx).byKID); got != 2 {
			t.Fatalf("the losing key is not published: %d keys", got)
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
		signer := ps[0].keys.signer(ctx).kid
		for i, p := range ps {
			if got := p.keys.signer(ctx).kid; got != signer {
				t.Fatalf("process %d signs with %s, process 0 with %s", i, got, signer)
			}
		}
	})
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
