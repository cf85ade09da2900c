package oauth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite"

	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/store"
)

// DPoP (RFC 9449): a client proves, with a JWT signed by a key of its own
// on every request, that it holds the key its tokens are bound to. At the
// token endpoint the proof's key thumbprint (jkt) goes into the session of
// the tokens issued, so access and refresh tokens of the family are bound
// to it: JWT access tokens carry cnf.jkt, introspection shows it, a bound
// refresh token needs a proof by the same key, and userinfo wants
// "Authorization: DPoP <token>" with a proof whose ath is the token's hash.
// go-jose parses and verifies the proof and computes the thumbprint; this
// file holds the checks RFC 9449 §4.3 lists.
//
// The server always asks for a nonce (§8): the first proof without one is
// answered use_dpop_nonce with a DPoP-Nonce header, and the client repeats
// with it. Nonces are stateless, a MAC over a time window, so every process
// accepts every other's; each proof's jti is recorded so a proof is used
// once.

const (
	dpopHeader      = "DPoP"
	dpopNonceHeader = "DPoP-Nonce"
	dpopTyp         = "dpop+jwt"
	// A nonce lives for the window it was made in and the next one.
	dpopNonceWindow = 5 * time.Minute
	// iat may be this old or this far ahead (clock skew).
	dpopMaxAge   = 5 * time.Minute
	dpopMaxSkew  = time.Minute
	dpopMaxProof = 8 << 10
	dpopMaxJTI   = 256
	errDPoPProof = "invalid_dpop_proof"
	errDPoPNonce = "use_dpop_nonce"
	schemeDPoP   = "DPoP"
)

// dpopProof is a checked proof: the key's thumbprint.
type dpopProof struct{ jkt string }

// dpopError is a refused proof; nonce says the fix is the DPoP-Nonce we send.
type dpopError struct {
	code string // invalid_dpop_proof | use_dpop_nonce
	desc string
}

func (e *dpopError) Error() string { return e.code + ": " + e.desc }

func proofError(format string, args ...any) error {
	return &dpopError{code: errDPoPProof, desc: fmt.Sprintf(format, args...)}
}

// rfcError is the token endpoint's form of e.
func (e *dpopError) rfcError() *fosite.RFC6749Error {
	return &fosite.RFC6749Error{ErrorField: e.code, DescriptionField: e.desc, CodeField: http.StatusBadRequest}
}

// dpopNonce is the nonce of the window now falls in.
func (p *Provider) dpopNonce(now time.Time) string {
	return p.dpopNonceAt(now.Unix() / int64(dpopNonceWindow/time.Second))
}

func (p *Provider) dpopNonceAt(window int64) string {
	return secret.MAC(p.dpopKey, "dpop nonce", strconv.FormatInt(window, 10))
}

func (p *Provider) dpopNonceValid(nonce string, now time.Time) bool {
	w := now.Unix() / int64(dpopNonceWindow/time.Second)
	for _, cand := range []int64{w, w - 1} {
		if subtle.ConstantTimeCompare([]byte(nonce), []byte(p.dpopNonceAt(cand))) == 1 {
			return true
		}
	}
	return false
}

// checkDPoP checks the request's DPoP proof for the endpoint at htu; nil,
// nil when the request carries none. accessToken, at a resource, must be
// the token the proof's ath hashes.
func (p *Provider) checkDPoP(ctx context.Context, r *http.Request, htu, accessToken string) (*dpopProof, error) {
	vals := r.Header.Values(dpopHeader)
	if len(vals) == 0 {
		return nil, nil
	}
	if len(vals) > 1 {
		return nil, proofError("Send exactly one DPoP header.")
	}
	raw := vals[0]
	if len(raw) > dpopMaxProof || strings.Count(raw, ".") != 2 {
		return nil, proofError("The DPoP proof is not a compact JWS.")
	}
	jws, err := jose.ParseSigned(raw)
	if err != nil || len(jws.Signatures) != 1 {
		return nil, proofError("The DPoP proof is not a JWS.")
	}
	h := jws.Signatures[0].Protected
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != dpopTyp {
		return nil, proofError("The DPoP proof's typ must be %s.", dpopTyp)
	}
	if !slices.Contains(resource.AssertionAlgs, h.Algorithm) {
		return nil, proofError("The DPoP proof's alg must be one of %s.", strings.Join(resource.AssertionAlgs, ", "))
	}
	key := h.JSONWebKey
	if key == nil || !key.Valid() || !key.IsPublic() {
		return nil, proofError("The DPoP proof's header must carry the public key (jwk).")
	}
	payload, err := jws.Verify(key)
	if err != nil {
		return nil, proofError("The DPoP proof's signature does not verify with its jwk.")
	}
	var claims struct {
		JTI   string      `json:"jti"`
		HTM   string      `json:"htm"`
		HTU   string      `json:"htu"`
		IAT   json.Number `json:"iat"`
		ATH   string      `json:"ath"`
		Nonce string      `json:"nonce"`
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(&claims); err != nil {
		return nil, proofError("The DPoP proof's claims are not a JSON object.")
	}
	now := p.now()
	iat, err := claims.IAT.Float64()
	switch {
	case claims.JTI == "" || len(claims.JTI) > dpopMaxJTI:
		return nil, proofError("The DPoP proof needs a jti of at most %d characters.", dpopMaxJTI)
	case claims.HTM != r.Method:
		return nil, proofError("The DPoP proof's htm is not this request's method.")
	case !sameHTU(claims.HTU, htu):
		return nil, proofError("The DPoP proof's htu is not this endpoint (%s).", htu)
	case err != nil:
		return nil, proofError("The DPoP proof needs an iat.")
	}
	issued := time.Unix(int64(iat), 0)
	if issued.Before(now.Add(-dpopMaxAge)) || issued.After(now.Add(dpopMaxSkew)) {
		return nil, proofError("The DPoP proof's iat is too far from the server's time.")
	}
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		if subtle.ConstantTimeCompare([]byte(claims.ATH), []byte(base64.RawURLEncoding.EncodeToString(sum[:]))) != 1 {
			return nil, proofError("The DPoP proof's ath is not the hash of the access token.")
		}
	}
	if claims.Nonce == "" || !p.dpopNonceValid(claims.Nonce, now) {
		return nil, &dpopError{code: errDPoPNonce, desc: "Repeat the request with a DPoP proof carrying the nonce in the DPoP-Nonce header."}
	}
	thumb, err := key.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, proofError("The DPoP proof's jwk has no thumbprint.")
	}
	jkt := base64.RawURLEncoding.EncodeToString(thumb)
	if err := p.useDPoPJTI(ctx, jkt, claims.JTI, issued.Add(dpopMaxAge+dpopMaxSkew)); err != nil {
		return nil, err
	}
	return &dpopProof{jkt: jkt}, nil
}

// sameHTU compares htu with the endpoint's URL without query and fragment
// (RFC 9449 §4.3 step 9), scheme and host case-insensitively.
func sameHTU(got, want string) bool {
	u, err := url.Parse(got)
	if err != nil {
		return false
	}
	w, err := url.Parse(want)
	if err != nil {
		return false
	}
	return strings.EqualFold(u.Scheme, w.Scheme) && strings.EqualFold(u.Host, w.Host) && u.EscapedPath() == w.EscapedPath()
}

// useDPoPJTI records a proof's jti (with its key: jtis are the client's
// choice) until the proof could no longer pass the iat check.
func (p *Provider) useDPoPJTI(ctx context.Context, jkt, jti string, until time.Time) error {
	sum := sha256.Sum256([]byte(jkt + "\x00" + jti))
	now := p.now()
	err := p.cfg.Store.CreateOAuthRequest(ctx, store.OAuthRequest{
		Kind: store.KindDPoPProof, Signature: hex.EncodeToString(sum[:]),
		RequestedAt: now, ExpiresAt: until, Active: true, Session: []byte("{}"),
	})
	switch {
	case errors.Is(err, store.ErrConflict):
		return proofError("This DPoP proof was used before: each request needs a new one.")
	case err != nil:
		return storeErr("record dpop proof", err)
	}
	return nil
}

// bindDPoP applies the proof to a token request fosite accepted: a family
// bound to a key stays bound to it; a new family is bound to the proof's
// key; a Client with dpop_bound_access_tokens must send one.
func bindDPoP(ar fosite.AccessRequester, c *client, proof *dpopProof) error {
	sess := sessionOf(ar)
	refresh := ar.GetGrantTypes().ExactOne(grantRefreshToken)
	switch {
	case refresh && sess.DPoPJKT != "" && proof == nil:
		return &dpopError{code: errDPoPProof, desc: "This refresh token is bound to a DPoP key: send a DPoP proof signed with it."}
	case refresh && sess.DPoPJKT != "" && proof.jkt != sess.DPoPJKT:
		return &dpopError{code: errDPoPProof, desc: "The DPoP proof is signed by another key than the one this refresh token is bound to."}
	case proof == nil && c.res.DPoPBoundAccessTokens:
		return &dpopError{code: errDPoPProof, desc: "This client's tokens must be DPoP-bound: send a DPoP proof."}
	case proof != nil:
		sess.DPoPJKT = proof.jkt
	}
	return nil
}

// tokenFromRequest reads "Authorization: DPoP <token>" or "Bearer
// <token>" and says which scheme it was.
func tokenFromRequest(r *http.Request) (token string, dpop bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if ok && strings.EqualFold(scheme, schemeDPoP) {
		return strings.TrimSpace(tok), true
	}
	return fosite.AccessTokenFromRequest(r), false
}

// checkResourceDPoP applies RFC 9449 §7 to a resource request with token:
// a bound token needs the DPoP scheme and a proof by its key; an unbound
// one the Bearer scheme and no proof.
func (p *Provider) checkResourceDPoP(ctx context.Context, r *http.Request, htu, token string, dpopScheme bool, jkt string) error {
	if jkt == "" {
		if dpopScheme {
			return &dpopError{code: "invalid_token", desc: "This access token is not DPoP-bound: send it as a Bearer token."}
		}
		return nil
	}
	if !dpopScheme {
		return &dpopError{code: "invalid_token", desc: "This access token is DPoP-bound: send it with the DPoP scheme and a proof."}
	}
	proof, err := p.checkDPoP(ctx, r, htu, token)
	if err != nil {
		return err
	}
	if proof == nil {
		return proofError("A DPoP proof is required with a DPoP-bound access token.")
	}
	if proof.jkt != jkt {
		return proofError("The DPoP proof is signed by another key than the one the access token is bound to.")
	}
	return nil
}

// writeResourceDPoPError answers a refused resource request (RFC 9449 §7.1).
func (p *Provider) writeResourceDPoPError(w http.ResponseWriter, err error) {
	var de *dpopError
	if !errors.As(err, &de) {
		writeOAuthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "Try again later.")
		return
	}
	if de.code == errDPoPNonce {
		w.Header().Set(dpopNonceHeader, p.dpopNonce(p.now()))
	}
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(`DPoP algs="%s", error="%s", error_description="%s"`,
		strings.Join(resource.AssertionAlgs, " "), de.code, strings.ReplaceAll(de.desc, `"`, `'`)))
	writeOAuthError(w, http.StatusUnauthorized, de.code, de.desc)
}
