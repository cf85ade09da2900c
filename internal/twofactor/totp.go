package twofactor

import (
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
	"github.com/pquerna/otp/totp"
	"github.com/skip2/go-qrcode"

	"github.com/gatehouse/gatehouse/internal/store"
)

// TOTP parameters: the defaults every authenticator app reads from a QR code.
const (
	Period     = 30 // seconds per step
	Digits     = 6
	SecretSize = 20 // bytes, 160 bits as RFC 4226 recommends
	qrSize     = 256
)

// Enrollment is what the enrolment page shows, plus the sealed pending
// secret the caller keeps in the browser session until the code is confirmed.
type Enrollment struct {
	Secret    string // base32, no padding: shown as text (#totp-secret)
	URI       string // otpauth://totp/... (#otpauth-uri)
	QR        string // data:image/png;base64,... of URI (#qr)
	Issuer    string
	Account   string
	Pending   string // Secret sealed for this user with its expiry; see OpenPending
	ExpiresAt time.Time
}

// AccountLabel is the account name in the otpauth URI: the e-mail address
// when the user has one, as authenticator apps list it, else the user id.
func AccountLabel(u store.User) string {
	if u.Email != "" {
		return u.Email
	}
	return u.ID
}

// BeginTOTP starts an enrolment with a fresh 20-byte secret. Nothing is
// stored: the caller keeps Pending (sealed) and passes the secret to
// ConfirmTOTP with the user's first code.
func (s *Service) BeginTOTP(user store.User, issuer string) (Enrollment, error) {
	key, err := totp.Generate(totp.GenerateOpts{
		Issuer:      issuerOrDefault(issuer),
		AccountName: AccountLabel(user),
		Period:      Period,
		SecretSize:  SecretSize,
		Digits:      otp.DigitsSix,
		Algorithm:   otp.AlgorithmSHA1,
	})
	if err != nil {
		return Enrollment{}, fmt.Errorf("generate totp secret: %w", err)
	}
	return s.enrollment(user, issuer, key.Secret(), s.now().Add(PendingTTL))
}

// ResumeTOTP rebuilds the enrolment page from a pending secret (after a wrong
// code, or a reload), keeping the same secret and expiry.
func (s *Service) ResumeTOTP(user store.User, issuer, pending string) (Enrollment, error) {
	secret, exp, err := s.openPending(user.ID, pending)
	if err != nil {
		return Enrollment{}, err
	}
	return s.enrollment(user, issuer, secret, exp)
}

func (s *Service) enrollment(user store.User, issuer, secret string, exp time.Time) (Enrollment, error) {
	issuer = issuerOrDefault(issuer)
	account := AccountLabel(user)
	uri := OTPAuthURI(issuer, account, secret)
	png, err := qrcode.Encode(uri, qrcode.Medium, qrSize)
	if err != nil {
		return Enrollment{}, fmt.Errorf("encode qr code: %w", err)
	}
	return Enrollment{
		Secret:    secret,
		URI:       uri,
		QR:        "data:image/png;base64," + base64.StdEncoding.EncodeToString(png),
		Issuer:    issuer,
		Account:   account,
		Pending:   s.sealPending(user.ID, secret, exp),
		ExpiresAt: exp,
	}, nil
}

func issuerOrDefault(issuer string) string {
	if strings.TrimSpace(issuer) == "" {
		return DefaultIssuer
	}
	return issuer
}

// OTPAuthURI builds the Key URI of Google Authenticator's format with the
// parameters in Aidbox's order. The label's parts are percent-encoded, and a
// colon inside them becomes a space: the format forbids one there, and apps
// would split the label at it. The issuer parameter keeps the exact name.
func OTPAuthURI(issuer, account, secret string) string {
	return "otpauth://totp/" + labelEscape(issuer) + ":" + labelEscape(account) +
		"?secret=" + url.QueryEscape(secret) +
		"&issuer=" + queryEscape(issuer) +
		"&algorithm=SHA1&digits=6&period=30"
}

func labelEscape(s string) string {
	return url.PathEscape(strings.ReplaceAll(s, ":", " "))
}

// queryEscape writes spaces as %20: some authenticator apps show a '+' literally.
func queryEscape(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}

type pendingTOTP struct {
	Secret  string `json:"s"`
	Expires int64  `json:"e"`
}

func pendingAD(userID string) []byte { return []byte("totp-pending\x00" + userID) }

func (s *Service) sealPending(userID, secret string, exp time.Time) string {
	b, _ := json.Marshal(pendingTOTP{Secret: secret, Expires: exp.Unix()})
	return base64.RawURLEncoding.EncodeToString(s.Sealer.Seal(b, pendingAD(userID)))
}

// OpenPending returns the secret of a pending enrolment sealed for userID;
// ErrPendingExpired when it is expired, tampered with or someone else's.
func (s *Service) OpenPending(userID, pending string) (string, error) {
	secret, _, err := s.openPending(userID, pending)
	return secret, err
}

func (s *Service) openPending(userID, pending string) (string, time.Time, error) {
	raw, err := base64.RawURLEncoding.DecodeString(pending)
	if err != nil {
		return "", time.Time{}, ErrPendingExpired
	}
	b, err := s.Sealer.Open(raw, pendingAD(userID))
	if err != nil {
		return "", time.Time{}, ErrPendingExpired
	}
	var p pendingTOTP
	if err := json.Unmarshal(b, &p); err != nil || !validSecret(p.Secret) {
		return "", time.Time{}, ErrPendingExpired
	}
	exp := time.Unix(p.Expires, 0).UTC()
	if !s.now().Before(exp) {
		return "", time.Time{}, ErrPendingExpired
	}
	return p.Secret, exp, nil
}

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

func validSecret(secret string) bool {
	b, err := b32.DecodeString(secret)
	return err == nil && len(b) >= 10
}

// Step is the TOTP time step containing t.
func Step(t time.Time) int64 {
	u := t.Unix()
	if u < 0 {
		return (u - Period + 1) / Period
	}
	return u / Period
}

// codeAt is the 6-digit code of a step.
func codeAt(secret string, step int64) (string, error) {
	code, err := hotp.GenerateCodeCustom(secret, uint64(step), hotp.ValidateOpts{
		Digits:    otp.DigitsSix,
		Algorithm: otp.AlgorithmSHA1,
	})
	if err != nil {
		return "", fmt.Errorf("generate totp code: %w", err)
	}
	return code, nil
}

// matchStep compares code with every step of the window [now-past, now+1]
// (all of them, in constant time each) and returns the matching step. When
// two steps share a code (one in a million per pair), the oldest one still
// newer than lastStep wins, so the other stays usable.
func matchStep(secret, code string, now time.Time, past int, lastStep int64) (int64, bool, error) {
	cur := Step(now)
	var found int64
	ok := false
	for step := cur - int64(past); step <= cur+1; step++ {
		want, err := codeAt(secret, step)
		if err != nil {
			return 0, false, err
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			if !ok || (found <= lastStep && step > found) {
				found, ok = step, true
			}
		}
	}
	return found, ok, nil
}

func secretAD(userID string) []byte { return []byte(userID) }

func (s *Service) openSecret(tf store.TwoFactor) (string, error) {
	b, err := s.Sealer.Open(tf.Secret, secretAD(tf.UserID))
	if err != nil {
		return "", fmt.Errorf("open totp secret of %q: %w", tf.UserID, err)
	}
	return string(b), nil
}
