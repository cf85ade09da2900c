package twofactor

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/store"
)

// MFATokenTTL is how long an mfa_token stays usable after the password.
const MFATokenTTL = 5 * time.Minute

// MaxOpenMFATokens is how many unfinished sign-ins (mfa_tokens, and the
// hosted pages' pending second factors, which hold one) a user may have:
// issuing another drops the oldest, so a script that knows a password
// cannot fill the database, and the user's own newest attempt still works.
const MaxOpenMFATokens = 10

// PurposeMFAToken marks the one-time-code row that makes an mfa_token
// single-use. It holds no code anyone could type: its hash is derived from
// the token id alone.
const PurposeMFAToken = "mfa_token"

// ErrInvalidMFAToken is every refusal of an mfa_token: unknown, malformed,
// tampered with, expired, issued to another client, or already completed.
var ErrInvalidMFAToken = errors.New("invalid or expired mfa_token")

// MFAToken says that UserID passed the password for ClientID at IssuedAt and
// still owes a second factor.
type MFAToken struct {
	ID        string
	UserID    string
	ClientID  string
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// mfaTokenAD binds the sealed blob to its use, so no other sealed value of
// the server (TOTP secrets, pending enrolments) opens as an mfa_token.
var mfaTokenAD = []byte("mfa-token")

// maxMFATokenLen bounds the work done on a submitted token; real ones are
// about 250 characters.
const maxMFATokenLen = 1024

type sealedMFAToken struct {
	ID       string    `json:"i"`
	UserID   string    `json:"u"`
	ClientID string    `json:"c"`
	Issued   time.Time `json:"t"`
	Expires  time.Time `json:"e"`
}

// IssueMFAToken issues the token a password step hands to a client whose
// user still owes a second factor. The token is opaque to the client: an
// encrypted, authenticated record of user, client and times. A store row
// keyed by the token id makes it single-use (CompleteMFAToken).
func (s *Service) IssueMFAToken(ctx context.Context, userID, clientID string) (string, MFAToken, error) {
	if clientID == "" {
		return "", MFAToken{}, errors.New("an mfa_token needs a client")
	}
	return s.IssueMFATokenFor(ctx, userID, clientID, MFATokenTTL)
}

// IssueMFATokenFor is IssueMFAToken with its own lifetime, for a sign-in
// of the hosted pages (whose client may be none: clientID "").
func (s *Service) IssueMFATokenFor(ctx context.Context, userID, clientID string, ttl time.Duration) (string, MFAToken, error) {
	if userID == "" || ttl <= 0 {
		return "", MFAToken{}, errors.New("an mfa_token needs a user and a lifetime")
	}
	now := s.now()
	t := MFAToken{
		ID:        secret.RandomToken(16),
		UserID:    userID,
		ClientID:  clientID,
		IssuedAt:  now,
		ExpiresAt: now.Add(ttl),
	}
	err := s.Store.CreateOneTimeCode(ctx, store.OneTimeCode{
		ID:          secret.RandomToken(16),
		UserID:      userID,
		Purpose:     PurposeMFAToken,
		Destination: "client:" + clientID,
		BindingID:   t.ID,
		CodeHash:    s.mfaTokenHash(t),
		CreatedAt:   now,
		ExpiresAt:   t.ExpiresAt,
	})
	if err != nil {
		return "", MFAToken{}, fmt.Errorf("store mfa_token for %q: %w", userID, err)
	}
	if _, err := s.Store.TrimOneTimeCodes(ctx, userID, PurposeMFAToken, MaxOpenMFATokens); err != nil {
		// The new token is stored and works; the cap catches up next time.
		s.logger().WarnContext(ctx, "drop the oldest mfa_tokens", "user", userID, "err", err)
	}
	b, err := json.Marshal(sealedMFAToken{
		ID: t.ID, UserID: userID, ClientID: clientID, Issued: t.IssuedAt, Expires: t.ExpiresAt,
	})
	if err != nil {
		return "", MFAToken{}, fmt.Errorf("encode mfa_token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(s.Sealer.Seal(b, mfaTokenAD)), t, nil
}

// OpenMFAToken returns the token if it is genuine, unexpired, issued to
// clientID and not yet completed; ErrInvalidMFAToken otherwise. Opening
// spends nothing: the token stays usable until it expires or completes, so
// a wrong code can be corrected (the factor's lockout limits the guesses).
// Other errors are storage failures.
func (s *Service) OpenMFAToken(ctx context.Context, token, clientID string) (MFAToken, error) {
	if token == "" || len(token) > maxMFATokenLen {
		return MFAToken{}, ErrInvalidMFAToken
	}
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return MFAToken{}, ErrInvalidMFAToken
	}
	b, err := s.Sealer.Open(raw, mfaTokenAD)
	if err != nil {
		return MFAToken{}, ErrInvalidMFAToken
	}
	var st sealedMFAToken
	if err := json.Unmarshal(b, &st); err != nil || st.ID == "" || st.UserID == "" {
		return MFAToken{}, ErrInvalidMFAToken
	}
	t := MFAToken{
		ID: st.ID, UserID: st.UserID, ClientID: st.ClientID,
		IssuedAt: st.Issued.UTC(), ExpiresAt: st.Expires.UTC(),
	}
	if t.ClientID != clientID || !s.now().Before(t.ExpiresAt) {
		return MFAToken{}, ErrInvalidMFAToken
	}
	// The completion marker lives in the counter window of its completion,
	// which is at or after the window of the issue: reading from the issue's
	// window finds it whatever boundary lies between.
	n, err := s.Store.GetCounter(ctx, mfaTokenDoneKey(t.ID), mfaTokenDoneWindow, t.IssuedAt)
	if err != nil {
		return MFAToken{}, fmt.Errorf("check mfa_token completion: %w", err)
	}
	if n > 0 {
		return MFAToken{}, ErrInvalidMFAToken
	}
	return t, nil
}

// CompleteMFAToken spends the token after its second factor was proven.
// Exactly one of many concurrent completions succeeds; the others, and any
// later one, get ErrInvalidMFAToken and must issue nothing.
func (s *Service) CompleteMFAToken(ctx context.Context, t MFAToken) error {
	now := s.now()
	otc, err := s.Store.ConsumeOneTimeCode(ctx, t.ID, s.mfaTokenHash(t), now)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return ErrInvalidMFAToken
	case err != nil:
		return fmt.Errorf("consume mfa_token: %w", err)
	case otc.UserID != t.UserID || otc.Purpose != PurposeMFAToken || otc.Destination != "client:"+t.ClientID:
		return ErrInvalidMFAToken
	}
	// The marker only lets OpenMFAToken refuse a spent token early, before a
	// code is checked; the consumed row above is what enforces single use.
	if _, err := s.Store.HitCounter(ctx, mfaTokenDoneKey(t.ID), mfaTokenDoneWindow, now); err != nil {
		s.logger().ErrorContext(ctx, "mark mfa_token completed", "user", t.UserID, "err", err)
	}
	return nil
}

const mfaTokenDoneWindow = time.Hour

func mfaTokenDoneKey(id string) string { return "2fa:mfa-token-done:" + id }

// mfaTokenHash names the token's row. It covers user and client too, so an
// MFAToken altered in memory matches no row and cannot spend the real one.
func (s *Service) mfaTokenHash(t MFAToken) string {
	return secret.MAC(s.CodeKey, PurposeMFAToken, t.ID, t.UserID, t.ClientID)
}

// PasswordGrantBinding is the binding of the codes the token endpoint sends
// when a password grant owes a second factor. Freshcom's clients repeat the
// password request with `otp` and no mfa_token, so the code cannot be bound
// to the token: it is bound to this user signing in at this client, which
// both continuations (password + otp, or the mfa_token) can name.
func PasswordGrantBinding(clientID, userID string) string {
	// Length-prefixed so no pair of ids can name another pair's binding.
	return "password-grant:" + strconv.Itoa(len(clientID)) + ":" + clientID + ":" + userID
}

// VerifyMFAToken checks the second factor t still owes, with Verify's rules
// (replay guard, the user's shared lockout counter, recovery codes when
// in.AllowRecovery). An SMS/e-mail code is accepted whether it was sent for
// the token itself (BindingID t.ID, e.g. by the sign-in API's prepare step)
// or by the password grant that issued it (PasswordGrantBinding). in.UserID
// and in.BindingID are taken from t; in.ClientID defaults to t's client.
// The token is not spent: call CompleteMFAToken after a success.
func (s *Service) VerifyMFAToken(ctx context.Context, t MFAToken, in VerifyInput) (Result, error) {
	in.UserID = t.UserID
	in.BindingID = t.ID
	if in.ClientID == "" {
		in.ClientID = t.ClientID
	}
	return s.verify(ctx, in, []string{PasswordGrantBinding(t.ClientID, t.UserID)})
}
