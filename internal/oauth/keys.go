package oauth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v3"

	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/store"
)

const (
	// algRS256 is mandatory to implement (OIDC Core §15.1) and what a
	// Client's ID tokens use unless it asks for ES256.
	algRS256 = "RS256"
	// algES256 signs JWT access tokens, and ID tokens of Clients that ask.
	algES256 = "ES256"
	// rsaKeyBits is the size of generated RS256 keys (NIST: 2048 until 2030).
	rsaKeyBits = 2048
	// keyRefreshEvery bounds how long a process signs with a key another
	// process has already retired, and how late it learns of a new one.
	keyRefreshEvery = time.Minute
	// keyMissBackoff limits reloads triggered by tokens naming an unknown
	// kid, so forged kids cannot turn into a query per request.
	keyMissBackoff = time.Second

	// JWKSMaxAge is the JWKS cache lifetime advertised to relying parties
	// (Cache-Control max-age).
	JWKSMaxAge = 5 * time.Minute
	// MinKeyPublicationPeriod is the shortest time a new key must be in the
	// JWKS before it signs: a relying party's cached copy expires
	// (JWKSMaxAge) and every process has re-read the keys (keyRefreshEvery).
	MinKeyPublicationPeriod = JWKSMaxAge + keyRefreshEvery
	// DefaultKeyPublicationPeriod is twice the advertised cache lifetime.
	DefaultKeyPublicationPeriod = 2 * JWKSMaxAge
)

// signingAlgs are the algorithms the server keeps a signing key for; each
// has its own active key and rotates on its own.
var signingAlgs = []string{algRS256, algES256}

var errUnknownKey = errors.New("unknown signing key")

// signingKey is one published key: private only for an active signer.
type signingKey struct {
	kid      string
	alg      string
	priv     crypto.Signer
	pub      crypto.PublicKey
	notAfter time.Time // zero: published until retired and expired
	signers  map[string]jose.Signer
}

// keySet is an immutable snapshot of the published keys.
type keySet struct {
	active   map[string]*signingKey // by algorithm
	byKID    map[string]*signingKey
	jwks     []byte
	loadedAt time.Time
}

// complete reports whether every algorithm has a signer.
func (ks *keySet) complete() bool {
	for _, alg := range signingAlgs {
		if ks.active[alg] == nil {
			return false
		}
	}
	return true
}

// keyManager keeps the signing keys: stored in the database (private parts
// sealed with a key derived from the master secret, kid as associated data),
// cached here, re-read every keyRefreshEvery and whenever a token names a kid
// the cache does not know, so several processes converge on the same keys.
type keyManager struct {
	store  store.Store
	sealer *secret.Sealer
	now    func() time.Time
	logger *slog.Logger
	// retention is how long a retired key stays published.
	retention func(ctx context.Context) time.Duration
	// publication is how long a new key is published before it signs.
	publication time.Duration

	mu       sync.Mutex // serialises reloads and rotations in this process
	set      atomic.Pointer[keySet]
	lastMiss atomic.Int64 // unix nanos of the last kid-miss reload
}

// ensure loads the keys, creating the first one of each algorithm that has
// none (a first start, or an upgrade from a release that had only ES256: a
// lone key of its algorithm signs at once, see load).
func (m *keyManager) ensure(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	ks, err := m.load(ctx)
	if err != nil {
		return err
	}
	if !ks.complete() {
		for _, alg := range signingAlgs {
			if ks.active[alg] != nil {
				continue
			}
			k, rec, err := m.generate(alg)
			if err != nil {
				return err
			}
			if err := m.store.CreateSigningKey(ctx, rec); err != nil {
				return fmt.Errorf("store first %s signing key: %w", alg, err)
			}
			m.logger.InfoContext(ctx, "created signing key", "kid", k.kid, "alg", alg)
		}
		if ks, err = m.load(ctx); err != nil {
			return err
		}
		if !ks.complete() {
			return errors.New("signing key vanished right after it was created")
		}
	}
	m.set.Store(ks)
	return nil
}

// load reads every published key and picks one signer per algorithm. A
// key that is not retired is a candidate; it signs once it has been
// published for the publication period (so that relying parties caching the
// JWKS know it), and the newest such key of its algorithm wins (then the
// greatest kid). When no candidate is old enough (a first start), the oldest
// one signs at once: nobody can have cached a JWKS without it. Candidates
// older than the winner are retired here, by whichever process sees the
// switch first; they stay published until every token they may have signed
// has expired. Newer candidates wait, published. Every process computes the
// same winners, so two processes that created a first key at the same time
// agree too.
func (m *keyManager) load(ctx context.Context) (*keySet, error) {
	recs, err := m.store.ListSigningKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list signing keys: %w", err)
	}
	now := m.now().UTC()
	ks := &keySet{active: map[string]*signingKey{}, byKID: map[string]*signingKey{}, loadedAt: now}
	actives := map[string][]store.SigningKey{}
	var published []store.SigningKey
	for _, rec := range recs {
		if !rec.NotAfter.IsZero() && !now.Before(rec.NotAfter) {
			continue
		}
		if !slices.Contains(signingAlgs, rec.Algorithm) {
			m.logger.WarnContext(ctx, "skipping signing key with unsupported algorithm", "kid", rec.ID, "alg", rec.Algorithm)
			continue
		}
		pub, err := parsePublicJWK(rec.PublicJWK, rec.Algorithm)
		if err != nil {
			return nil, fmt.Errorf("signing key %q: %w", rec.ID, err)
		}
		ks.byKID[rec.ID] = &signingKey{kid: rec.ID, alg: rec.Algorithm, pub: pub, notAfter: rec.NotAfter}
		published = append(published, rec)
		if rec.RetiredAt.IsZero() {
			actives[rec.Algorithm] = append(actives[rec.Algorithm], rec)
		}
	}
	for _, alg := range signingAlgs {
		if len(actives[alg]) == 0 {
			continue
		}
		win, losers := m.pickSigner(actives[alg], now)
		priv, err := m.open(win)
		if err != nil {
			return nil, err
		}
		k := ks.byKID[win.ID]
		k.priv = priv
		if k.signers, err = newSigners(k.kid, alg, priv); err != nil {
			return nil, err
		}
		ks.active[alg] = k
		for _, loser := range losers {
			notAfter := now.Add(m.retention(ctx))
			if err := m.store.RetireSigningKey(ctx, loser.ID, now, notAfter); err != nil {
				m.logger.WarnContext(ctx, "retire duplicate signing key", "kid", loser.ID, "err", err)
				continue
			}
			ks.byKID[loser.ID].notAfter = notAfter
		}
	}
	jwks, err := buildJWKS(published)
	if err != nil {
		return nil, err
	}
	ks.jwks = jwks
	return ks, nil
}

// pickSigner chooses among the unretired keys of one algorithm (see load)
// and returns the winner and the older keys it replaces.
func (m *keyManager) pickSigner(actives []store.SigningKey, now time.Time) (store.SigningKey, []store.SigningKey) {
	// Newest first, ties by the greatest kid.
	slices.SortFunc(actives, func(a, b store.SigningKey) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	winAt := slices.IndexFunc(actives, func(r store.SigningKey) bool { return !now.Before(r.CreatedAt.Add(m.publication)) })
	if winAt < 0 {
		// None is old enough: the oldest (then greatest kid) signs.
		oldest := actives[len(actives)-1].CreatedAt
		winAt = slices.IndexFunc(actives, func(r store.SigningKey) bool { return r.CreatedAt.Equal(oldest) })
	}
	win := actives[winAt]
	var losers []store.SigningKey
	for i, rec := range actives {
		if i != winAt && !rec.CreatedAt.After(win.CreatedAt) {
			losers = append(losers, rec)
		}
	}
	return win, losers
}

func (m *keyManager) open(rec store.SigningKey) (crypto.Signer, error) {
	der, err := m.sealer.Open(rec.PrivateKey, []byte(rec.ID))
	if err != nil {
		return nil, fmt.Errorf("signing key %q does not open with this master key: %w", rec.ID, err)
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("parse signing key %q: %w", rec.ID, err)
	}
	priv, ok := k.(crypto.Signer)
	if !ok || checkKeyType(priv.Public(), rec.Algorithm) != nil {
		return nil, fmt.Errorf("signing key %q is not an %s key", rec.ID, rec.Algorithm)
	}
	return priv, nil
}

// checkKeyType reports whether pub is a key alg may use: P-256 for ES256,
// RSA of at least rsaKeyBits for RS256.
func checkKeyType(pub crypto.PublicKey, alg string) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if alg == algES256 && k.Curve == elliptic.P256() {
			return nil
		}
	case *rsa.PublicKey:
		if alg == algRS256 && k.N.BitLen() >= rsaKeyBits {
			return nil
		}
	}
	return fmt.Errorf("not a key for %s", alg)
}

// generate makes a new key for alg; its kid is the RFC 7638 thumbprint.
func (m *keyManager) generate(alg string) (*signingKey, store.SigningKey, error) {
	var priv crypto.Signer
	var err error
	switch alg {
	case algES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case algRS256:
		priv, err = rsa.GenerateKey(rand.Reader, rsaKeyBits)
	default:
		return nil, store.SigningKey{}, fmt.Errorf("unsupported signing algorithm %q", alg)
	}
	if err != nil {
		return nil, store.SigningKey{}, fmt.Errorf("generate %s signing key: %w", alg, err)
	}
	jwk := jose.JSONWebKey{Key: priv.Public()}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, store.SigningKey{}, fmt.Errorf("thumbprint: %w", err)
	}
	kid := base64.RawURLEncoding.EncodeToString(tp)
	jwk = jose.JSONWebKey{Key: priv.Public(), KeyID: kid, Algorithm: alg, Use: "sig"}
	pubJSON, err := jwk.MarshalJSON()
	if err != nil {
		return nil, store.SigningKey{}, fmt.Errorf("marshal public key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, store.SigningKey{}, fmt.Errorf("marshal private key: %w", err)
	}
	rec := store.SigningKey{
		ID:         kid,
		Algorithm:  alg,
		PrivateKey: m.sealer.Seal(der, []byte(kid)),
		PublicJWK:  pubJSON,
		CreatedAt:  m.now().UTC(),
	}
	return &signingKey{kid: kid, alg: alg, priv: priv, pub: priv.Public()}, rec, nil
}

// rotate publishes a new key for alg; it becomes alg's signer once
// published for the publication period (load retires the previous signer
// then). It returns the kid and when it starts signing.
func (m *keyManager) rotate(ctx context.Context, alg string) (string, time.Time, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k, rec, err := m.generate(alg)
	if err != nil {
		return "", time.Time{}, err
	}
	recs, err := m.store.ListSigningKeys(ctx)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("list signing keys: %w", err)
	}
	// The new key must sort first even if the clock is coarse.
	for _, r := range recs {
		if !rec.CreatedAt.After(r.CreatedAt) {
			rec.CreatedAt = r.CreatedAt.Add(time.Millisecond)
		}
	}
	if err := m.store.CreateSigningKey(ctx, rec); err != nil {
		return "", time.Time{}, fmt.Errorf("store signing key: %w", err)
	}
	ks, err := m.load(ctx)
	if err != nil {
		return "", time.Time{}, err
	}
	m.set.Store(ks)
	signsFrom := rec.CreatedAt.Add(m.publication)
	m.logger.InfoContext(ctx, "published new signing key", "kid", k.kid, "alg", alg, "signs_from", signsFrom)
	return k.kid, signsFrom, nil
}

// current returns the key set, re-reading it when it is older than
// keyRefreshEvery. A failed re-read keeps the old set (and logs): signing
// must not stop because the database blinked.
func (m *keyManager) current(ctx context.Context) *keySet {
	ks := m.set.Load()
	if m.now().Sub(ks.loadedAt) < keyRefreshEvery {
		return ks
	}
	// One request re-reads; the others carry on with the set they have.
	if !m.mu.TryLock() {
		return ks
	}
	return m.reloadLocked(ctx, ks)
}

func (m *keyManager) reload(ctx context.Context, seen *keySet) *keySet {
	m.mu.Lock()
	return m.reloadLocked(ctx, seen)
}

// reloadLocked re-reads the keys; m.mu is held and released here.
func (m *keyManager) reloadLocked(ctx context.Context, seen *keySet) *keySet {
	defer m.mu.Unlock()
	if cur := m.set.Load(); cur != seen {
		return cur // another goroutine reloaded meanwhile
	}
	ks, err := m.load(ctx)
	if err != nil || !ks.complete() {
		m.logger.WarnContext(ctx, "reload signing keys", "err", err)
		// Try again after the next interval, not on every request.
		cp := *seen
		cp.loadedAt = m.now().UTC()
		m.set.Store(&cp)
		return &cp
	}
	m.set.Store(ks)
	return ks
}

// signer is alg's active key.
func (m *keyManager) signer(ctx context.Context, alg string) *signingKey {
	return m.current(ctx).active[alg]
}

// publicKey finds a published key of alg by kid, re-reading the database
// (at most once per keyMissBackoff) when it is not cached: another process
// may have rotated. A kid of another algorithm is unknown: a token's alg
// header never chooses how its key is used.
func (m *keyManager) publicKey(ctx context.Context, alg, kid string) (crypto.PublicKey, error) {
	ks := m.current(ctx)
	if k := ks.byKID[kid]; k != nil && m.published(k) {
		if k.alg != alg {
			return nil, errUnknownKey
		}
		return k.pub, nil
	}
	last := m.lastMiss.Load()
	now := m.now().UnixNano()
	if now-last < int64(keyMissBackoff) || !m.lastMiss.CompareAndSwap(last, now) {
		return nil, errUnknownKey
	}
	ks = m.reload(ctx, ks)
	if k := ks.byKID[kid]; k != nil && m.published(k) && k.alg == alg {
		return k.pub, nil
	}
	return nil, errUnknownKey
}

func (m *keyManager) published(k *signingKey) bool {
	return k.notAfter.IsZero() || m.now().Before(k.notAfter)
}

func (m *keyManager) jwks(ctx context.Context) []byte { return m.current(ctx).jwks }

// sign signs claims with alg's active key; typ is the JOSE typ header.
func (m *keyManager) sign(ctx context.Context, alg string, claims map[string]any, typ string, extraHeaders map[string]any) (string, error) {
	k := m.signer(ctx, alg)
	if k == nil {
		return "", fmt.Errorf("no %s signing key", alg)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("marshal claims: %w", err)
	}
	s := k.signers[typ]
	if s == nil || len(extraHeaders) > 0 {
		opts := (&jose.SignerOptions{}).WithType(jose.ContentType(typ))
		for h, v := range extraHeaders {
			switch h {
			case "alg", "kid", "typ", "jwk", "crit":
				continue
			}
			opts = opts.WithHeader(jose.HeaderKey(h), v)
		}
		if s, err = jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(k.alg), Key: jose.JSONWebKey{Key: k.priv, KeyID: k.kid}}, opts); err != nil {
			return "", fmt.Errorf("new signer: %w", err)
		}
	}
	obj, err := s.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	return obj.CompactSerialize()
}

const (
	typAccessToken = "at+jwt" // RFC 9068
	typJWT         = "JWT"
)

func newSigners(kid, alg string, priv crypto.Signer) (map[string]jose.Signer, error) {
	out := map[string]jose.Signer{}
	for _, typ := range []string{typAccessToken, typJWT} {
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: jose.JSONWebKey{Key: priv, KeyID: kid}},
			(&jose.SignerOptions{}).WithType(jose.ContentType(typ)))
		if err != nil {
			return nil, fmt.Errorf("new signer: %w", err)
		}
		out[typ] = s
	}
	return out, nil
}

func parsePublicJWK(b []byte, alg string) (crypto.PublicKey, error) {
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(b); err != nil {
		return nil, fmt.Errorf("parse public JWK: %w", err)
	}
	if !jwk.IsPublic() {
		return nil, errors.New("public JWK holds a private key")
	}
	if err := checkKeyType(jwk.Key, alg); err != nil {
		return nil, fmt.Errorf("public JWK: %w", err)
	}
	return jwk.Key, nil
}

func buildJWKS(recs []store.SigningKey) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString(`{"keys":[`)
	for i, r := range recs {
		if i > 0 {
			buf.WriteByte(',')
		}
		// Re-marshal so only public members are ever served, whatever the row holds.
		var jwk jose.JSONWebKey
		if err := jwk.UnmarshalJSON(r.PublicJWK); err != nil {
			return nil, fmt.Errorf("signing key %q: %w", r.ID, err)
		}
		pub := jwk.Public()
		pub.KeyID, pub.Algorithm, pub.Use = r.ID, r.Algorithm, "sig"
		b, err := pub.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("marshal JWK %q: %w", r.ID, err)
		}
		buf.Write(b)
	}
	buf.WriteString(`]}`)
	return buf.Bytes(), nil
}
