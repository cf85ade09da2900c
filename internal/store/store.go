package store

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors. Backends wrap them with context; callers test with errors.Is.
var (
	// ErrNotFound: no record with that key.
	ErrNotFound = errors.New("not found")
	// ErrConflict: a version mismatch (optimistic concurrency), a duplicate
	// unique value, or a conditional update that lost its race (a used code, a
	// replayed TOTP step, an already-invalidated token).
	ErrConflict = errors.New("conflict")
	// ErrUnavailable: the database cannot serve now, and a retry later may
	// succeed. The connection is down or refused, the pool or the server
	// is out of connections, the disk is full or read-only, a lock or a
	// statement timed out, or the caller's deadline passed first. Every
	// surface answers it alike: 503 with Retry-After (RetryAfter).
	ErrUnavailable = errors.New("storage unavailable")
	// ErrNoChangeFeed: the store cannot tell of other processes' writes
	// (ChangeFeed on SQLite).
	ErrNoChangeFeed = errors.New("no change feed")
)

// The kinds of Change: the resources that servers cache.
const (
	ChangeClient     = "Client"
	ChangeAuthConfig = "AuthConfig"
)

// Change is a committed write of a cached resource by any process sharing
// the database.
type Change struct {
	Kind string // ChangeClient or ChangeAuthConfig
	ID   string
}

// ChangeFeed is implemented by stores whose writes can be heard by every
// process sharing the database (PostgreSQL's LISTEN/NOTIFY), so that caches
// can live long and still follow a change made elsewhere at once.
type ChangeFeed interface {
	// WatchChanges calls fn with each change until ctx ends, reconnecting
	// when the feed breaks. live(true) says every change is heard from now
	// on; live(false) that changes may be missed until the next live(true).
	// Writes made before a live(true) were not heard: what a caller cached
	// before it may be old. It returns nil when ctx ends, and
	// ErrNoChangeFeed at once when the store cannot. Calls of live and fn
	// come from one goroutine.
	WatchChanges(ctx context.Context, live func(bool), fn func(Change)) error
}

// RetryAfter is the wait every surface advises (the Retry-After header)
// when it answers 503 because storage is unavailable or the server is
// shedding load.
const RetryAfter = 2 * time.Second

// Unavailable reports whether err means "try again later": storage is
// unavailable, or the request's deadline passed (also while it waited for
// something other than the database, such as a password-hashing slot).
func Unavailable(err error) bool {
	return errors.Is(err, ErrUnavailable) || errors.Is(err, context.DeadlineExceeded)
}

// Page selects one page of a listing. Page is 1-based; Count is the page size.
type Page struct {
	Count int
	Page  int
}

// Offset is the number of records before this page.
func (p Page) Offset() int {
	if p.Page < 1 {
		return 0
	}
	return (p.Page - 1) * p.Count
}

// User is an account that signs in. Doc is the Aidbox-shaped resource as JSON,
// owned by internal/resource, with write-only fields removed; the columns
// beside it are the ones the server searches on or must keep apart from the
// document (the password hash).
type User struct {
	ID            string
	Email         string // lower-cased; "" when unset; unique when set
	PhoneNumber   string // E.164; "" when unset; not unique (see FindUserByPhone)
	EmailVerified bool
	PhoneVerified bool
	PasswordHash  string // argon2id PHC string; "" means no password login
	Inactive      bool
	Doc           []byte
	Version       int64 // 1 on create, +1 on every write
	CreatedAt     time.Time
	UpdatedAt     time.Time
	// Factors is set when the read that returned the user read them in the
	// same statement (GetUserWithFactors, FindUserWithFactors), nil
	// otherwise. It is a snapshot for deciding a sign-in; writes ignore it.
	Factors *UserFactors
}

// UserFactors are a user's second factors as a sign-in decides from them.
type UserFactors struct {
	// TwoFactor is the built-in factor; Enabled is false (UserID set) when
	// the user has none.
	TwoFactor TwoFactor
	Passkeys  int // registered passkeys (WebAuthn credentials)
}

// Client is an OAuth client. SecretHash is "" for public clients.
type Client struct {
	ID         string
	SecretHash string
	Doc        []byte
	Version    int64
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// AuthConfig holds per-application login settings (two-factor, theme).
type AuthConfig struct {
	ID        string
	Doc       []byte
	Version   int64
	CreatedAt time.Time
	UpdatedAt time.Time
}

// OAuthKind names the kind of token or grant an OAuthRequest record stands for.
type OAuthKind string

const (
	KindAuthorizeCode OAuthKind = "authorize_code"
	KindAccessToken   OAuthKind = "access_token"
	KindRefreshToken  OAuthKind = "refresh_token"
	KindPKCE          OAuthKind = "pkce"
	KindOIDC          OAuthKind = "oidc"
	// KindRefreshGrace is stored under a rotated refresh token's signature,
	// with the same request id: the pair its rotation issued (sealed by the
	// oauth package), kept until ExpiresAt, the end of the grace period.
	KindRefreshGrace OAuthKind = "refresh_grace"
	// KindPushed is a pushed authorization request (RFC 9126) under the
	// SHA-256 of its request_uri; Form holds its authorization parameters.
	// It is used once (deleted when an authorization request names it) and
	// refused after ExpiresAt.
	KindPushed OAuthKind = "par"
	// KindClientAssertion is a used client assertion (private_key_jwt)
	// under the SHA-256 of its jti, kept until the assertion's exp so it
	// cannot be replayed.
	KindClientAssertion OAuthKind = "jti"
	// KindDPoPProof is a used DPoP proof under the SHA-256 of its key's
	// thumbprint and jti, kept while its iat would still be accepted.
	KindDPoPProof OAuthKind = "dpop"
)

// OAuthRequest is a persisted fosite request, keyed by (Kind, Signature). The
// signature is fosite's, never the token itself.
type OAuthRequest struct {
	Kind            OAuthKind
	Signature       string
	RequestID       string
	ClientID        string
	Subject         string
	RequestedAt     time.Time
	ExpiresAt       time.Time // when the record may be purged
	Active          bool
	Scopes          []string
	GrantedScopes   []string
	Audience        []string
	GrantedAudience []string
	Form            string // url-encoded, sanitized (no secrets)
	Session         []byte // JSON of the oauth package's session type
	// Holder is what the read found of the user Subject names
	// (GetOAuthRequests, and GetOAuthRequest of a code or refresh token): a
	// code or refresh token is redeemed only for an active user, and this
	// way no read of the user follows.
	Holder HolderState
}

// HolderState is whether the user an OAuth record was issued to still
// exists and is active, as read with the record.
type HolderState uint8

const (
	HolderUnread   HolderState = iota // the read did not look (a write, a list)
	HolderActive                      // the user exists and is active
	HolderInactive                    // the user is disabled, deleted, or there is none
)

// BrowserSession is the server-side half of a browser login. The cookie names
// it; ID is the SHA-256 (hex) of the cookie value, so a database dump does not
// yield usable session ids.
type BrowserSession struct {
	ID        string
	UserID    string // "" until a password has been accepted
	AuthTime  time.Time
	AMR       []string
	State     []byte // JSON owned by internal/web: pending login, pending enrolment, CSRF
	CreatedAt time.Time
	UpdatedAt time.Time
	ExpiresAt time.Time
}

// SigningKey is a JWT signing key. PrivateKey is sealed (AES-256-GCM) with a
// key derived from the master secret.
type SigningKey struct {
	ID         string // kid
	Algorithm  string // ES256
	PrivateKey []byte
	PublicJWK  []byte
	CreatedAt  time.Time
	RetiredAt  time.Time // zero while it is the active signer
	NotAfter   time.Time // zero: published until further notice; else drop from JWKS after
}

// Consent records the scopes a user granted a client that is not first-party.
type Consent struct {
	UserID    string
	ClientID  string
	Scopes    []string
	GrantedAt time.Time
}

// AuditEvent is one entry of the audit log.
type AuditEvent struct {
	ID         string
	Time       time.Time
	Type       string // e.g. login.success, two_factor.enabled, admin.write
	UserID     string
	ClientID   string
	RemoteAddr string
	RequestID  string
	Detail     map[string]string
}

// AuditFilter selects audit events; empty fields match everything.
type AuditFilter struct {
	UserID string
	Type   string
}

// MethodNone is the Method of a record that holds no built-in factor, only
// the attempt counter (EnsureTwoFactor).
const MethodNone = "none"

// TwoFactor is a user's second factor. There is at most one per user.
type TwoFactor struct {
	UserID      string
	Method      string // totp | sms | email
	Enabled     bool
	Secret      []byte // sealed TOTP seed (AES-256-GCM, user id as associated data)
	Destination string // phone or email for sms/email
	LastStep    int64  // last accepted TOTP time step; replay guard
	EnrolledAt  time.Time
	Failures    int       // wrong codes in a row (reserved attempts)
	LockedUntil time.Time // zero when not locked
	Lockouts    int       // lockouts since the last success; drives the doubling
	UpdatedAt   time.Time
}

// FactorAttempt is the outcome of reserving a code attempt.
type FactorAttempt struct {
	Allowed  bool
	Failures int // failures counted including this attempt
	// LockedUntil is set when the attempt was refused: the end of the lock
	// in force, or of the stale reservation that stands in for one (see
	// ReserveFactorAttempt).
	LockedUntil time.Time
}

// RecoveryCode is one single-use recovery code, stored as a keyed hash.
type RecoveryCode struct {
	UserID string
	Hash   string
	UsedAt time.Time // zero while unused
}

// OneTimeCode is an SMS/email/verification code, stored hashed and bound to
// what it was sent for (a login attempt, an mfa token, a verification).
type OneTimeCode struct {
	ID          string
	UserID      string
	Purpose     string // login | verify
	Channel     string // sms | email
	Destination string
	BindingID   string
	CodeHash    string
	CreatedAt   time.Time
	ExpiresAt   time.Time
	UsedAt      time.Time
}

// RememberedDevice is a browser on which a user chose, after passing a
// second factor, not to be asked for it again until ExpiresAt. The browser
// holds a random token in a cookie; only its hash is stored.
type RememberedDevice struct {
	ID         string
	UserID     string
	TokenHash  string // hex SHA-256 of the cookie's token; unique
	Strategy   string // the second factor proven when the device was remembered
	Label      string // what the browser said it was (User-Agent, cut short)
	CreatedAt  time.Time
	LastUsedAt time.Time // zero until the device first skips a second factor
	ExpiresAt  time.Time
}

// WebAuthnCredential is a registered passkey (a WebAuthn public key
// credential). Nothing in it is secret: the private key never leaves the
// authenticator. ID is the credential id, base64url without padding.
type WebAuthnCredential struct {
	ID              string
	UserID          string
	PublicKey       []byte // COSE key
	AttestationType string
	AttestationFmt  string
	AAGUID          []byte
	SignCount       uint32
	Transports      []string // usb, nfc, ble, hybrid, internal
	Attachment      string   // platform | cross-platform | ""
	UserPresent     bool
	UserVerified    bool
	BackupEligible  bool
	BackupState     bool
	Name            string
	CreatedAt       time.Time
	LastUsedAt      time.Time // zero until first used
}

// WebAuthnChallenge is the server-side half of a WebAuthn ceremony: the
// challenge sent to the browser and the session data to check the answer
// against. Challenge is the base64url challenge (the key); BindingID names
// what it was issued for (a parked sign-in, a browser session, a token
// family); Purpose is login, register or passwordless.
type WebAuthnChallenge struct {
	Challenge string
	UserID    string // "" for a passwordless (discoverable) login
	BindingID string
	Purpose   string
	Session   []byte // JSON of the webauthn library's SessionData
	CreatedAt time.Time
	ExpiresAt time.Time
}

// CounterLimit is one key of ReserveCounters and the most hits a window of
// it may hold (at least 1).
type CounterLimit struct {
	Key string
	Max int
}

// CounterReservation is what ReserveCounters did with one key.
type CounterReservation struct {
	Hits     int  // the count in the window, this attempt included when Reserved
	Reserved bool // false: the key was at its limit and nothing was counted
}

// Store is everything Gatehouse persists. Every method honours a transaction
// carried in ctx (see BeginTx / InTx). Times come back in UTC.
type Store interface {
	Ping(ctx context.Context) error
	// CheckWrites makes one small committed write (it rewrites a probe row),
	// so that readiness reflects whether writes work, not only whether the
	// database answers: a full or read-only disk fails it.
	CheckWrites(ctx context.Context) error
	Close() error

	// InTx runs fn in one transaction; fn's ctx carries it. Nested calls join it.
	InTx(ctx context.Context, fn func(ctx context.Context) error) error
	// BeginTx/CommitTx/RollbackTx serve callers (fosite) that need the three
	// steps apart. Rollback after Commit is a no-op.
	BeginTx(ctx context.Context) (context.Context, error)
	CommitTx(ctx context.Context) error
	RollbackTx(ctx context.Context) error

	// Users. Put creates or replaces; ifVersion > 0 requires the stored
	// version to match (ErrConflict otherwise, also when the record is
	// missing). Put assigns Version, CreatedAt and UpdatedAt and returns the
	// stored record and whether it was created. A duplicate Email is ErrConflict.
	GetUser(ctx context.Context, id string) (User, error)
	// FindUser looks a login name up by id, then by e-mail (case-insensitive).
	FindUser(ctx context.Context, login string) (User, error)
	// GetUserWithFactors and FindUserWithFactors are GetUser and FindUser
	// that fill User.Factors in the same statement: a sign-in reads the
	// user and what it decides from in one round trip, not three.
	GetUserWithFactors(ctx context.Context, id string) (User, error)
	FindUserWithFactors(ctx context.Context, login string) (User, error)
	// FindUserByPhone returns the user who holds phone verified, matched
	// exactly (E.164 as stored, no normalisation). Unverified numbers
	// identify no one: anybody can type anybody's number. No verified holder
	// (or "") is ErrNotFound; several verified holders is ErrConflict.
	//
	// Several verified holders can exist: the sign-up and verification API
	// refuses a number another account verified, but the admin API may set
	// phoneVerified on any user, two verifications racing can both pass
	// that check, and each holder did prove the number. So phone numbers are
	// not unique in the store, and callers that need one owner treat
	// ErrConflict as "taken".
	FindUserByPhone(ctx context.Context, phone string) (User, error)
	ListUsers(ctx context.Context, p Page) ([]User, int, error)
	PutUser(ctx context.Context, u User, ifVersion int64) (User, bool, error)
	DeleteUser(ctx context.Context, id string) error // also its sessions, second factor, codes, consents, passkeys

	GetClient(ctx context.Context, id string) (Client, error)
	ListClients(ctx context.Context, p Page) ([]Client, int, error)
	PutClient(ctx context.Context, c Client, ifVersion int64) (Client, bool, error)
	DeleteClient(ctx context.Context, id string) error

	GetAuthConfig(ctx context.Context, id string) (AuthConfig, error)
	// FindAuthConfig returns the AuthConfig with id preferredID; without
	// one, the only AuthConfig when exactly one exists; otherwise
	// ErrNotFound. It is one statement: the look-up every login page makes
	// for a client that names no AuthConfig.
	FindAuthConfig(ctx context.Context, preferredID string) (AuthConfig, error)
	ListAuthConfigs(ctx context.Context, p Page) ([]AuthConfig, int, error)
	PutAuthConfig(ctx context.Context, a AuthConfig, ifVersion int64) (AuthConfig, bool, error)
	DeleteAuthConfig(ctx context.Context, id string) error

	// OAuth requests (fosite storage).
	CreateOAuthRequest(ctx context.Context, r OAuthRequest) error
	// CreateOAuthRequests stores several records in one statement: all of
	// them, or none (ErrConflict when a (kind, signature) is taken).
	CreateOAuthRequests(ctx context.Context, rs []OAuthRequest) error
	// GetOAuthRequest reads one record; a code or refresh token with its
	// Holder.
	GetOAuthRequest(ctx context.Context, kind OAuthKind, signature string) (OAuthRequest, error)
	// GetOAuthRequests reads the records of the given kinds stored under one
	// signature (an authorization code's own record and its PKCE and OpenID
	// records), with their Holder, in one statement. Missing kinds are
	// simply absent.
	GetOAuthRequests(ctx context.Context, signature string, kinds []OAuthKind) ([]OAuthRequest, error)
	DeleteOAuthRequest(ctx context.Context, kind OAuthKind, signature string) error
	// DeleteOAuthRequests deletes the records of the given kinds under one
	// signature in one statement and returns how many there were.
	DeleteOAuthRequests(ctx context.Context, signature string, kinds []OAuthKind) (int64, error)
	// DeactivateOAuthRequest flips Active from true to false atomically:
	// ErrConflict if it was already inactive, ErrNotFound if missing. Exactly
	// one of many concurrent callers succeeds.
	DeactivateOAuthRequest(ctx context.Context, kind OAuthKind, signature string) error
	// RedeemAuthorizeCode is DeactivateOAuthRequest of the code under
	// signature, which in the same statement retires the records of the
	// kinds retire under that signature (its PKCE and OpenID records):
	// inactive, and due for the purge at retireAt. They are retired even
	// when the code was not redeemed (ErrConflict, ErrNotFound).
	RedeemAuthorizeCode(ctx context.Context, signature string, retire []OAuthKind, retireAt time.Time) error
	DeactivateOAuthRequestsByRequestID(ctx context.Context, kind OAuthKind, requestID string) error
	DeleteOAuthRequestsByRequestID(ctx context.Context, kind OAuthKind, requestID string) error
	// DeactivateOAuthRequestsBySubject makes every token of a user inactive.
	DeactivateOAuthRequestsBySubject(ctx context.Context, subject string) error
	// DeactivateOtherOAuthRequests makes every token of a user inactive
	// except those of the family keepRequestID (the request id fosite
	// keeps across refreshes): the caller's own tokens survive, as the
	// caller's own browser session does.
	DeactivateOtherOAuthRequests(ctx context.Context, subject, keepRequestID string) error
	DeleteExpiredOAuthRequests(ctx context.Context, before time.Time) (int64, error)

	// Browser sessions.
	CreateBrowserSession(ctx context.Context, s BrowserSession) error
	GetBrowserSession(ctx context.Context, id string) (BrowserSession, error) // expired ones are ErrNotFound
	UpdateBrowserSession(ctx context.Context, s BrowserSession) error
	// ReplaceBrowserSession stores s (a new id, CreatedAt and all) in place
	// of the record oldID, in one statement, so that oldID names nothing
	// afterwards: the rotation at sign-in. ErrNotFound when oldID is gone;
	// ErrConflict when s.ID is taken.
	ReplaceBrowserSession(ctx context.Context, oldID string, s BrowserSession) error
	DeleteBrowserSession(ctx context.Context, id string) error
	// ListBrowserSessionsByUser returns the user's unexpired sessions, at
	// most limit of them (the newest), so that their ending can be told to
	// the clients they signed in to.
	ListBrowserSessionsByUser(ctx context.Context, userID string, limit int) ([]BrowserSession, error)
	// DeleteBrowserSessionsByUser ends every session of a user but exceptID ("" for none).
	DeleteBrowserSessionsByUser(ctx context.Context, userID, exceptID string) error
	DeleteExpiredBrowserSessions(ctx context.Context, before time.Time) (int64, error)

	// Signing keys.
	CreateSigningKey(ctx context.Context, k SigningKey) error
	ListSigningKeys(ctx context.Context) ([]SigningKey, error) // newest first
	// RetireSigningKey stops a key signing at retiredAt and keeps it published until notAfter.
	RetireSigningKey(ctx context.Context, id string, retiredAt, notAfter time.Time) error

	// Consents.
	GetConsent(ctx context.Context, userID, clientID string) (Consent, error)
	PutConsent(ctx context.Context, c Consent) error
	DeleteConsents(ctx context.Context, userID string) error

	// Audit log.
	AppendAudit(ctx context.Context, e AuditEvent) error
	ListAudit(ctx context.Context, f AuditFilter, p Page) ([]AuditEvent, int, error) // newest first

	// Counters are fixed-window counters for throttling (login failures per
	// account and per IP, code sends). HitCounter adds one to the window that
	// contains now and returns the new count.
	HitCounter(ctx context.Context, key string, window time.Duration, now time.Time) (int, error)
	GetCounter(ctx context.Context, key string, window time.Duration, now time.Time) (int, error)
	// GetCounters is GetCounter for several keys in one statement: the
	// counts come back in the order of keys.
	GetCounters(ctx context.Context, keys []string, window time.Duration, now time.Time) ([]int, error)
	ResetCounter(ctx context.Context, key string) error
	// ReserveCounters counts an attempt on every key before it is made, in
	// one statement: for each key whose window containing now holds fewer
	// than its Max hits, it adds one atomically (Reserved, and Hits the new
	// count); a key at its limit is left as it is (Hits its current count).
	// At most Max reservations of a key succeed per window, however many
	// run at once, on every process sharing the store. Keys may not repeat.
	ReserveCounters(ctx context.Context, limits []CounterLimit, window time.Duration, now time.Time) ([]CounterReservation, error)
	// ReleaseCounters gives one reservation of each key back, in the window
	// containing now, in one statement (never below zero; nothing for a
	// window that has passed or a key without a row).
	ReleaseCounters(ctx context.Context, keys []string, window time.Duration, now time.Time) error
	// DeleteStaleCounters purges counters whose window ended before before
	// (window start + window length < before): GetCounter at a now from
	// before on reads 0 for them anyway, and HitCounter starts them again at
	// 1. Callers that read a counter at a past time (GetCounter with an
	// earlier now) need before to lie that far behind the present.
	DeleteStaleCounters(ctx context.Context, before time.Time) (int64, error)

	// Second factors.
	GetTwoFactor(ctx context.Context, userID string) (TwoFactor, error)
	// PutTwoFactor creates or replaces a user's factor (enrolment, method change).
	PutTwoFactor(ctx context.Context, tf TwoFactor) error
	// EnableTwoFactor writes an enabled factor like PutTwoFactor unless the
	// user's stored factor is enabled already (ErrConflict, nothing written),
	// decided in the write itself: of enrolments racing each other the
	// first wins on any number of processes.
	EnableTwoFactor(ctx context.Context, tf TwoFactor) error
	// EnsureTwoFactor creates an empty, disabled record (Method "none") for
	// a user who has none, so that the attempt counter and lockout have a
	// row to count on for a factor of the deployment's own; an existing
	// record is left as it is. The user must exist (ErrNotFound otherwise).
	EnsureTwoFactor(ctx context.Context, userID string) error
	// DeleteTwoFactor removes the factor and the user's recovery codes.
	DeleteTwoFactor(ctx context.Context, userID string) error
	// AdvanceTOTPStep records step as the last accepted one if it is newer
	// than the stored one; ErrConflict otherwise (a replay). Atomic across processes.
	AdvanceTOTPStep(ctx context.Context, userID string, step int64) error
	// AcceptTOTPStep is AdvanceTOTPStep and, when the step is accepted,
	// ClearFactorFailures in the same atomic statement: a right, unused
	// code ends the attempt it reserved. A replay changes nothing
	// (ErrConflict); the caller gives its reservation back
	// (ReleaseFactorAttempt).
	AcceptTOTPStep(ctx context.Context, userID string, step int64) error
	// ReserveFactorAttempt counts an attempt before the code is checked:
	// allowed only while not locked at now and Failures < limit, in which case
	// Failures is incremented atomically and now is recorded as the time of
	// the latest reservation. At most limit attempts are ever allowed between
	// two resets (ClearFactorFailures, LockFactor, or the end of a stale
	// reservation below), however many run at once.
	//
	// The attempt that takes the last reservation is expected to end in
	// ClearFactorFailures (right code) or LockFactor (wrong code). If it
	// never does (its process died, the lock write failed), the factor would
	// refuse every attempt until an admin reset. So a factor at the limit
	// with no lock in force counts as locked until staleLock after its latest
	// reservation (after its last update, for a row with no timed
	// reservation: written by PutTwoFactor or by an earlier release):
	// refused attempts report that time in LockedUntil, and the
	// first attempt at or after it is allowed as the first of a new series
	// (Failures 1) and adds one to Lockouts, as the lock it stood for would
	// have. staleLock must be positive and longer than any code check takes;
	// pass the lock the caller would have set.
	ReserveFactorAttempt(ctx context.Context, userID string, now time.Time, limit int, staleLock time.Duration) (FactorAttempt, error)
	// ReleaseFactorAttempt gives one reservation back (Failures - 1, never
	// below 0) for an attempt that must not count: a replayed code, which
	// proves knowledge of a valid one. Nothing else changes; a lock in force
	// stays. ErrNotFound when the user has no record.
	ReleaseFactorAttempt(ctx context.Context, userID string) error
	// ClearFactorFailures resets Failures and Lockouts after a success.
	ClearFactorFailures(ctx context.Context, userID string) error
	// LockFactor sets LockedUntil, resets Failures to 0 and adds one to Lockouts.
	LockFactor(ctx context.Context, userID string, until time.Time) error

	// Recovery codes.
	ReplaceRecoveryCodes(ctx context.Context, userID string, hashes []string) error
	// UseRecoveryCode marks an unused code used: ErrNotFound when no unused code has that hash.
	UseRecoveryCode(ctx context.Context, userID, hash string, now time.Time) error
	CountRecoveryCodes(ctx context.Context, userID string) (int, error) // unused ones

	// One-time codes (sms, email, verification).
	CreateOneTimeCode(ctx context.Context, c OneTimeCode) error
	// ConsumeOneTimeCode marks the unexpired, unused code with that binding and
	// hash used; ErrNotFound otherwise. Exactly one concurrent caller wins.
	ConsumeOneTimeCode(ctx context.Context, bindingID, codeHash string, now time.Time) (OneTimeCode, error)
	// CountOneTimeCodes counts the codes created at or after since for
	// userID and destination ("" matches any), of the given purposes (none:
	// any purpose).
	CountOneTimeCodes(ctx context.Context, userID, destination string, since time.Time, purposes ...string) (int, error)
	// TrimOneTimeCodes deletes the user's codes of purpose beyond the
	// newest keep, used or not, and says how many went.
	TrimOneTimeCodes(ctx context.Context, userID, purpose string, keep int) (int64, error)
	// DeleteExpiredOneTimeCodes purges codes, used or not, whose ExpiresAt is
	// before before. CountOneTimeCodes counts only stored codes, so a purge
	// must not reach into a send-throttling window: pass a before no later
	// than now minus the longest window codes are counted over.
	DeleteExpiredOneTimeCodes(ctx context.Context, before time.Time) (int64, error)

	// Remembered devices. CreateRememberedDevice stores d and then keeps
	// only the newest keep records of d's user (the oldest go first).
	// FindRememberedDevice returns the unexpired device whose token hash
	// is tokenHash (ErrNotFound otherwise).
	CreateRememberedDevice(ctx context.Context, d RememberedDevice, keep int) error
	FindRememberedDevice(ctx context.Context, tokenHash string, now time.Time) (RememberedDevice, error)
	TouchRememberedDevice(ctx context.Context, id string, at time.Time) error
	// ListRememberedDevices lists the user's unexpired devices, newest first.
	ListRememberedDevices(ctx context.Context, userID string, now time.Time) ([]RememberedDevice, error)
	DeleteRememberedDevice(ctx context.Context, userID, id string) error // ErrNotFound when not the user's
	DeleteRememberedDevices(ctx context.Context, userID string) (int64, error)
	DeleteExpiredRememberedDevices(ctx context.Context, before time.Time) (int64, error)

	// MarkTwoFactorRequired records that a second factor became required
	// for userID at `at`, the first time it is called for that user, and
	// returns the stored time (the first one) on every call. The user must
	// exist (ErrNotFound).
	MarkTwoFactorRequired(ctx context.Context, userID string, at time.Time) (time.Time, error)

	// WebAuthn credentials (passkeys). Credential ids are unique over all
	// users (ErrConflict on a duplicate); the user must exist (ErrNotFound).
	CreateWebAuthnCredential(ctx context.Context, c WebAuthnCredential) error
	// GetWebAuthnCredential finds a credential by id, whoever owns it.
	GetWebAuthnCredential(ctx context.Context, id string) (WebAuthnCredential, error)
	ListWebAuthnCredentials(ctx context.Context, userID string) ([]WebAuthnCredential, error) // oldest first
	// RenameWebAuthnCredential sets the name of userID's credential id
	// (ErrNotFound when userID has no such credential).
	RenameWebAuthnCredential(ctx context.Context, userID, id, name string) error
	DeleteWebAuthnCredential(ctx context.Context, userID, id string) error
	// UseWebAuthnCredential records a verified assertion of userID's
	// credential id in one conditional statement: the sign counter must
	// move forward (signCount greater than the stored one), unless both are
	// zero (an authenticator that keeps no counter). A counter that stands
	// still or goes back — a cloned authenticator, or a replay racing the
	// original — is ErrConflict and changes nothing; a missing credential
	// is ErrNotFound.
	UseWebAuthnCredential(ctx context.Context, userID, id string, signCount uint32, backupState, userVerified bool, now time.Time) error

	// WebAuthn challenges. CreateWebAuthnChallenge stores one (ErrConflict
	// when the challenge exists). ConsumeWebAuthnChallenge deletes and
	// returns the unexpired challenge with that value, binding and purpose
	// in one statement: exactly one of concurrent callers gets it, every
	// other (and a later replay, a wrong binding, an expired challenge) gets
	// ErrNotFound.
	CreateWebAuthnChallenge(ctx context.Context, c WebAuthnChallenge) error
	ConsumeWebAuthnChallenge(ctx context.Context, challenge, bindingID, purpose string, now time.Time) (WebAuthnChallenge, error)
	DeleteExpiredWebAuthnChallenges(ctx context.Context, before time.Time) (int64, error)
}
