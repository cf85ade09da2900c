package oauth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/token/jwt"
	"github.com/ory/x/errorsx"

	"github.com/gatehouse/gatehouse/internal/secret"
)

// tokenStrategy issues and checks tokens. Codes and refresh tokens are
// always fosite's HMAC tokens; access tokens are HMAC tokens or ES256 JWTs
// (RFC 9068) depending on the client's token_format for the family's grant.
// Every token also lives in the store, so revocation and deactivation work
// for both formats. Expiry is checked against the provider's clock (fosite's
// own checks use time.Now, which tests cannot move).
type tokenStrategy struct {
	hmac   *oauth2.HMACSHAStrategy
	keys   *keyManager
	issuer string
	now    func() time.Time
	cfg    *fosite.Config
}

var _ oauth2.CoreStrategy = (*tokenStrategy)(nil)

func isJWT(token string) bool { return strings.Count(token, ".") == 2 }

func jwtSignature(token string) string {
	if i := strings.LastIndexByte(token, '.'); i >= 0 {
		return token[i+1:]
	}
	return ""
}

func (s *tokenStrategy) AccessTokenSignature(ctx context.Context, token string) string {
	if isJWT(token) {
		return jwtSignature(token)
	}
	return s.hmac.AccessTokenSignature(ctx, token)
}

func (s *tokenStrategy) GenerateAccessToken(ctx context.Context, r fosite.Requester) (string, string, error) {
	c, _ := r.GetClient().(*client)
	sess := sessionOf(r)
	if c != nil && c.tokenFormat(sess.GrantType) == "jwt" {
		tok, err := s.jwtAccessToken(ctx, r, sess)
		if err != nil {
			return "", "", err
		}
		return tok, jwtSignature(tok), nil
	}
	return s.hmac.GenerateAccessToken(ctx, r)
}

// jwtAccessToken builds the RFC 9068 claims fresh for every token: fosite's
// own JWT strategy mutates the session's claims, so a refreshed token would
// inherit the first token's iat and jti.
func (s *tokenStrategy) jwtAccessToken(ctx context.Context, r fosite.Requester, sess *session) (string, error) {
	lifespan := s.cfg.GetAccessTokenLifespan(ctx)
	if c, ok := r.GetClient().(*client); ok {
		lifespan = c.lifespan(sess.GrantType, fosite.AccessToken, lifespan)
	}
	exp := sess.GetExpiresAt(fosite.AccessToken)
	if exp.IsZero() {
		exp = s.now().UTC().Truncate(time.Second).Add(lifespan)
	}
	// The token endpoint set exp from the issue time: iat is exactly that.
	iat := exp.Add(-lifespan)
	sub := sess.GetSubject()
	if sub == "" {
		sub = r.GetClient().GetID()
	}
	aud := []string(r.GetGrantedAudience())
	if len(aud) == 0 {
		aud = []string{r.GetClient().GetID()}
	}
	claims := map[string]any{
		"iss":       s.issuer,
		"sub":       sub,
		"aud":       aud,
		"client_id": r.GetClient().GetID(),
		"scope":     strings.Join(r.GetGrantedScopes(), " "),
		"iat":       iat.Unix(),
		"exp":       exp.Unix(),
		"jti":       secret.RandomToken(16),
	}
	if !sess.IDTokenClaims().AuthTime.IsZero() && sess.UserID != "" {
		claims["auth_time"] = sess.IDTokenClaims().AuthTime.Unix()
	}
	if acr := sess.IDTokenClaims().AuthenticationContextClassReference; acr != "" {
		claims["acr"] = acr
	}
	if amr := sess.IDTokenClaims().AuthenticationMethodsReferences; len(amr) > 0 {
		claims["amr"] = amr
	}
	if sess.SessionID != "" {
		claims["sid"] = sess.SessionID
	}
	if sess.DPoPJKT != "" {
		claims["cnf"] = map[string]string{"jkt": sess.DPoPJKT}
	}
	return s.keys.sign(ctx, algES256, claims, typAccessToken, nil)
}

func (s *tokenStrategy) ValidateAccessToken(ctx context.Context, r fosite.Requester, token string) error {
	if err := s.checkExpiry(ctx, r, fosite.AccessToken, s.cfg.GetAccessTokenLifespan(ctx)); err != nil {
		return err
	}
	if isJWT(token) {
		return s.verifyJWT(ctx, token)
	}
	return s.hmac.ValidateAccessToken(ctx, r, token)
}

// verifyJWT checks the signature only: expiry and revocation come from the
// stored record, which exists for every token we issued.
func (s *tokenStrategy) verifyJWT(ctx context.Context, token string) error {
	obj, err := jose.ParseSigned(token)
	if err != nil || len(obj.Signatures) != 1 {
		return errorsx.WithStack(fosite.ErrInvalidTokenFormat)
	}
	h := obj.Signatures[0].Protected
	if h.Algorithm != algES256 {
		return errorsx.WithStack(fosite.ErrTokenSignatureMismatch)
	}
	pub, err := s.keys.publicKey(ctx, algES256, h.KeyID)
	if err != nil {
		return errorsx.WithStack(fosite.ErrTokenSignatureMismatch.WithWrap(err))
	}
	if _, err := obj.Verify(pub); err != nil {
		return errorsx.WithStack(fosite.ErrTokenSignatureMismatch.WithWrap(err))
	}
	return nil
}

func (s *tokenStrategy) RefreshTokenSignature(ctx context.Context, token string) string {
	return s.hmac.RefreshTokenSignature(ctx, token)
}

func (s *tokenStrategy) GenerateRefreshToken(ctx context.Context, r fosite.Requester) (string, string, error) {
	return s.hmac.GenerateRefreshToken(ctx, r)
}

func (s *tokenStrategy) ValidateRefreshToken(ctx context.Context, r fosite.Requester, token string) error {
	if err := s.checkExpiry(ctx, r, fosite.RefreshToken, 0); err != nil {
		return err
	}
	return s.hmac.ValidateRefreshToken(ctx, r, token)
}

func (s *tokenStrategy) AuthorizeCodeSignature(ctx context.Context, token string) string {
	return s.hmac.AuthorizeCodeSignature(ctx, token)
}

func (s *tokenStrategy) GenerateAuthorizeCode(ctx context.Context, r fosite.Requester) (string, string, error) {
	return s.hmac.GenerateAuthorizeCode(ctx, r)
}

func (s *tokenStrategy) ValidateAuthorizeCode(ctx context.Context, r fosite.Requester, token string) error {
	if err := s.checkExpiry(ctx, r, fosite.AuthorizeCode, s.cfg.GetAuthorizeCodeLifespan(ctx)); err != nil {
		return err
	}
	return s.hmac.ValidateAuthorizeCode(ctx, r, token)
}

// checkExpiry applies the session's expiry for tt, or RequestedAt+fallback
// when none is set (fallback 0: no expiry, fosite's rule for refresh tokens).
func (s *tokenStrategy) checkExpiry(_ context.Context, r fosite.Requester, tt fosite.TokenType, fallback time.Duration) error {
	exp := r.GetSession().GetExpiresAt(tt)
	if exp.IsZero() {
		if fallback == 0 {
			return nil
		}
		exp = r.GetRequestedAt().Add(fallback)
	}
	if !s.now().Before(exp) {
		return errorsx.WithStack(fosite.ErrTokenExpired.WithHintf("The %s expired.", strings.ReplaceAll(string(tt), "_", " ")))
	}
	return nil
}

// joseSigner is fosite's jwt.Signer on our key manager: it signs ID tokens
// with the active key of the algorithm idTokenStrategy put in the context
// (RS256 unless said otherwise) and verifies tokens (id_token_hint) against
// every published key by kid.
type joseSigner struct{ keys *keyManager }

var _ jwt.Signer = (*joseSigner)(nil)

type idTokenAlgKey struct{}

// withIDTokenAlg tells joseSigner which algorithm signs the ID token being
// generated in ctx.
func withIDTokenAlg(ctx context.Context, alg string) context.Context {
	return context.WithValue(ctx, idTokenAlgKey{}, alg)
}

func (s *joseSigner) Generate(ctx context.Context, claims jwt.MapClaims, header jwt.Mapper) (string, string, error) {
	var extra map[string]any
	if header != nil {
		extra = header.ToMap()
	}
	alg, _ := ctx.Value(idTokenAlgKey{}).(string)
	if alg == "" {
		alg = algRS256
	}
	tok, err := s.keys.sign(ctx, alg, claims, typJWT, extra)
	if err != nil {
		return "", "", err
	}
	return tok, jwtSignature(tok), nil
}

func (s *joseSigner) Validate(ctx context.Context, token string) (string, error) {
	if _, err := s.Decode(ctx, token); err != nil {
		return "", err
	}
	return jwtSignature(token), nil
}

func (s *joseSigner) Decode(ctx context.Context, token string) (*jwt.Token, error) {
	return jwt.ParseWithClaims(token, jwt.MapClaims{}, func(t *jwt.Token) (any, error) {
		alg := string(t.Method)
		if !slices.Contains(signingAlgs, alg) {
			return nil, fmt.Errorf("unexpected signing algorithm %q", t.Method)
		}
		kid, _ := t.Header["kid"].(string)
		pub, err := s.keys.publicKey(ctx, alg, kid)
		if err != nil {
			return nil, err
		}
		return pub, nil
	})
}

func (s *joseSigner) GetSignature(_ context.Context, token string) (string, error) {
	if !isJWT(token) {
		return "", errors.New("not a compact JWT")
	}
	return jwtSignature(token), nil
}

func (s *joseSigner) Hash(_ context.Context, in []byte) ([]byte, error) {
	h := sha256.Sum256(in)
	return h[:], nil
}

func (s *joseSigner) GetSigningMethodLength(context.Context) int { return sha256.Size }

// idTokenStrategy signs each ID token with the algorithm its Client asked
// for (id_token_signed_response_alg).
type idTokenStrategy struct{ openid.DefaultStrategy }

func (s idTokenStrategy) GenerateIDToken(ctx context.Context, lifespan time.Duration, r fosite.Requester) (string, error) {
	alg := algRS256
	if c, ok := r.GetClient().(*client); ok {
		alg = c.idTokenAlg()
	}
	return s.DefaultStrategy.GenerateIDToken(withIDTokenAlg(ctx, alg), lifespan, r)
}
