package signin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/gatehouse/gatehouse/internal/policy"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

// States of a sign-in, as Clerk names them (the JSON API shows them as is).
const (
	StatusComplete          = "complete"
	StatusNeedsSecondFactor = "needs_second_factor"
	StatusNeedsEnrollment   = "needs_enrollment"
	// StatusNeedsStepUp: a signed-in session must prove one more factor
	// (only that one: not the password again) before the client may have
	// it.
	StatusNeedsStepUp = "needs_step_up"
)

// Authentication methods (RFC 8176) and the acr values derived from them.
const (
	AMRPassword    = "pwd"
	AMROTP         = "otp"
	AMRMFA         = "mfa"
	AMRHardwareKey = "hwk" // a proof of possession of a hardware-bound key: a passkey

	ACRPassword = "urn:gatehouse:acr:pwd"
	ACRMFA      = "urn:gatehouse:acr:mfa"
	// ACRPhishingResistant is a sign-in whose methods include a passkey
	// (amr hwk): a credential bound to the origin, which a look-alike site
	// cannot relay.
	ACRPhishingResistant = "urn:gatehouse:acr:phr"
)

// TTLs of a parked sign-in: the hosted pages give a person time to find
// the phone; an app that draws its own screens gets the mfa_token's.
const (
	BrowserTTL = 10 * time.Minute
	APITTL     = twofactor.MFATokenTTL
)

// Errors of the engine. Every refusal of an answer is ErrInvalidCode,
// whatever the reason (wrong, reused, malformed, locked), so no surface can
// tell an attacker more than another.
var (
	ErrInvalidCode   = twofactor.ErrInvalidCode
	ErrInvalidTicket = twofactor.ErrInvalidMFAToken
	ErrNotPreparable = errors.New("this strategy needs no prepare step")
	ErrNotOffered    = errors.New("this strategy is not available for this sign-in")
	ErrTooManySends  = twofactor.ErrTooManySends
	ErrNoDelivery    = twofactor.ErrNoWebhook
	// ErrUnmetLevel: the level a client or request asks for cannot be
	// reached by this user (no factor of theirs reaches it, and none that
	// does can be set up in the sign-in) — OpenID Connect's
	// unmet_authentication_requirements.
	ErrUnmetLevel = errors.New("the requested authentication level cannot be met")
)

// Engine runs sign-ins. Store, TwoFactor and Policy are required.
type Engine struct {
	Store     store.Store
	TwoFactor *twofactor.Service
	Policy    *policy.Resolver
	// Factors are the deployment's own, offered after the built-in ones.
	Factors []Factor
	Logger  *slog.Logger
	Now     func() time.Time
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now().UTC()
	}
	return time.Now().UTC()
}

func (e *Engine) log() *slog.Logger {
	if e.Logger != nil {
		return e.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Step is where a sign-in stands after Begin.
type Step struct {
	Status string
	// Result is set when Status is StatusComplete.
	Result *Result
	// Skippable is set with StatusNeedsEnrollment while the enrolment's
	// grace period lasts (until GraceEndsAt): SkipEnrolment finishes the
	// sign-in without it.
	Skippable   bool
	GraceEndsAt time.Time
}

// Result is a finished sign-in.
type Result struct {
	UserID   string
	AMR      []string
	ACR      string
	AuthTime time.Time
	// Strategy proved the second factor ("" for a password alone):
	// backup_code for a recovery code, whatever box it was typed in.
	Strategy string
	// RecoveryCodesRemaining is set when a recovery code was spent.
	RecoveryCodesRemaining *int
	// RememberedDevice is the id of the remembered browser that stood in
	// for the second factor ("" when a factor was proven, or none owed).
	RememberedDevice string
}

// BeginInput is a first factor that was just proven.
type BeginInput struct {
	User   store.User
	Client resource.Client // the zero Client when the sign-in names none
	// FirstFactorAt is when the password was checked; auth_time of the result.
	FirstFactorAt time.Time
	Meta          twofactor.Meta
	// DeviceToken is the remembered-browser token the browser sent (""
	// for none); ACRValues and MaxAge are the parked authorization
	// request's acr_values and max_age (nil: none), which a remembered
	// browser must not be used to satisfy beyond what it proved.
	DeviceToken string
	ACRValues   []string
	MaxAge      *time.Duration
}

// Begin decides what a proven first factor leads to: complete (no second
// factor applies), a second factor (the user has one, offered by every
// factor that applies), or an enrolment (the policy requires a second
// factor the user has not set up, or the account was created with a TOTP
// enrolment due). It stores nothing: Park does, when the surface must
// carry the sign-in over to another request.
func (e *Engine) Begin(ctx context.Context, in BeginInput) (*SignIn, Step, error) {
	pol, err := e.Policy.For(ctx, in.Client)
	if err != nil {
		return nil, Step{}, err
	}
	tf, err := e.factorOf(ctx, in.User)
	if err != nil {
		return nil, Step{}, err
	}
	s := &SignIn{User: in.User, Client: in.Client, AuthConfig: pol.AuthConfig, TwoFactor: tf, Meta: in.Meta,
		Policy: pol, FirstFactorAt: in.FirstFactorAt.UTC(), Binding: twofactor.PasswordGrantBinding(in.Client.ID, in.User.ID)}
	// A recovery code is only ever offered beside a factor, so the other
	// offers decide (and the count of recovery codes is not read here).
	offers, err := e.offers(ctx, s, false)
	if err != nil {
		return nil, Step{}, err
	}
	switch {
	case len(offers) > 0:
		d, ok, err := e.deviceSkips(ctx, s, in)
		if err != nil {
			return nil, Step{}, err
		}
		if ok {
			res := e.rememberedResult(s, d)
			return s, Step{Status: StatusComplete, Result: &res}, nil
		}
		return s, Step{Status: StatusNeedsSecondFactor}, nil
	case pol.SecondFactorRequired() || resource.TOTPEnrolmentDue(tf):
		if !e.canEnrol(s) {
			return s, Step{}, ErrUnmetLevel
		}
		ends, skippable, err := e.grace(ctx, s, Stronger(RequestedACR(in.ACRValues), pol.RequiredACR()))
		if err != nil {
			return nil, Step{}, err
		}
		return s, Step{Status: StatusNeedsEnrollment, Skippable: skippable, GraceEndsAt: ends}, nil
	}
	res := e.result(s, "", nil)
	return s, Step{Status: StatusComplete, Result: &res}, nil
}

// canEnrol reports whether s's user can set up a factor the policy allows
// inside the sign-in: only a user without a built-in factor (one per user),
// and only when the policy allows one of the enrollable factors.
func (e *Engine) canEnrol(s *SignIn) bool {
	return !s.TwoFactor.Enabled && len(e.Enrollable(s)) > 0
}

// StepUpInput is a signed-in browser session and what an authorization
// request asks of it.
type StepUpInput struct {
	User   store.User
	Client resource.Client
	// AMR and AuthTime are what the session proved, and when its first
	// factor was.
	AMR      []string
	AuthTime time.Time
	// Factors are the strategies the session proved (second factors).
	Factors []string
	// ACR is the level the request asks for (acr_values); "" for none.
	ACR     string
	Binding string // the browser session's id
	Meta    twofactor.Meta
}

// MayNeedStepUp reports, without reading anything, whether a session that
// proved amr might owe a step-up for client at the requested level: below
// mfa the user's factors and the client's policy decide (StepUp reads
// them); at mfa or above only a stronger level than the session's, asked
// by the request or the client's required_acr.
func MayNeedStepUp(amr []string, client resource.Client, requested string) bool {
	if !Satisfies(amr, ACRMFA) || len(client.TwoFactorMethods()) > 0 {
		return true
	}
	var required string
	if a := client.Auth; a != nil && a.AuthorizationCode != nil {
		required = a.AuthorizationCode.RequiredACR
	}
	return !Satisfies(amr, Stronger(requested, required))
}

// StepUp decides whether a signed-in session is enough for in.Client: the
// level required is the strongest of the request's acr_values, the
// client's required_acr and mfa when the policy requires a second factor
// (or the account has an enrolment due); a user who has a factor of their
// own proves it too. Complete when the session meets it; needs_step_up,
// with the factors that reach the level (and that the policy allows), when
// the user has one; needs_enrollment when the user can set one up;
// ErrUnmetLevel otherwise. The step-up's result accumulates the session's
// amr and keeps its auth_time.
func (e *Engine) StepUp(ctx context.Context, in StepUpInput) (*SignIn, Step, error) {
	pol, err := e.Policy.For(ctx, in.Client)
	if err != nil {
		return nil, Step{}, err
	}
	tf, err := e.factorOf(ctx, in.User)
	if err != nil {
		return nil, Step{}, err
	}
	required := Stronger(in.ACR, pol.RequiredACR())
	if pol.SecondFactorRequired() || resource.TOTPEnrolmentDue(tf) {
		required = Stronger(required, ACRMFA)
	}
	s := &SignIn{User: in.User, Client: in.Client, AuthConfig: pol.AuthConfig, TwoFactor: tf, Meta: in.Meta,
		Policy: pol, FirstFactorAt: in.AuthTime.UTC(), PriorAMR: slices.Clone(in.AMR), PriorFactors: slices.Clone(in.Factors),
		RequiredACR: required, Binding: in.Binding}
	complete := func() (*SignIn, Step, error) {
		res := Result{UserID: in.User.ID, AMR: slices.Clone(in.AMR), ACR: ACRFor(in.AMR), AuthTime: s.FirstFactorAt.Truncate(time.Second)}
		return s, Step{Status: StatusComplete, Result: &res}, nil
	}
	if Satisfies(in.AMR, ACRMFA) && s.restricted() && pol.Methods() != nil && !slices.ContainsFunc(in.Factors, pol.Allows) {
		// Two factors, but not one this client accepts (an SMS code for
		// an app that takes TOTP or a passkey only): that factor is owed.
		required = Stronger(required, ACRMFA)
		s.RequiredACR = required
		offers, err := e.offers(ctx, s, false)
		if err != nil {
			return nil, Step{}, err
		}
		if len(offers) == 0 {
			return s, Step{}, ErrUnmetLevel
		}
		return s, Step{Status: StatusNeedsStepUp}, nil
	}
	if Satisfies(in.AMR, required) && Satisfies(in.AMR, ACRMFA) {
		return complete()
	}
	offers, err := e.offers(ctx, s, false)
	if err != nil {
		return nil, Step{}, err
	}
	if asked := Stronger(in.ACR, pol.RequiredACR()); len(offers) == 0 && !Satisfies(in.AMR, required) && Level(asked) < Level(ACRMFA) {
		// Only the policy asks for the factor the user has not set up:
		// while its grace lasts, the session is enough.
		if _, ok, err := e.grace(ctx, s, asked); err != nil {
			return nil, Step{}, err
		} else if ok {
			return complete()
		}
	}
	switch {
	case len(offers) > 0 && (!Satisfies(in.AMR, required) || !s.restricted()):
		// Below the level, or below mfa with a factor of one's own.
		return s, Step{Status: StatusNeedsStepUp}, nil
	case Satisfies(in.AMR, required):
		return complete()
	case Level(required) <= Level(ACRMFA) && e.canEnrol(s):
		return s, Step{Status: StatusNeedsEnrollment}, nil
	}
	return s, Step{}, ErrUnmetLevel
}

// Park stores s as an unfinished sign-in for ttl and returns the ticket
// that names it (the API's mfa_token; the hosted pages keep it in the
// server-side browser session). The ticket is sealed: only this service
// (any of its processes) can open it, and only for s's client.
func (e *Engine) Park(ctx context.Context, s *SignIn, ttl time.Duration) (string, time.Time, error) {
	token, t, err := e.TwoFactor.IssueMFATokenFor(ctx, s.User.ID, s.Client.ID, ttl)
	if err != nil {
		return "", time.Time{}, err
	}
	s.Token = t
	s.Binding = t.ID
	return token, t.ExpiresAt, nil
}

// ResumeInput names a sign-in whose state a surface keeps itself: the
// hosted pages keep it in the server-side browser session record, whose
// rotation at the end of the sign-in is the compare-and-set that lets the
// sign-in complete once.
type ResumeInput struct {
	User          store.User
	Client        resource.Client
	FirstFactorAt time.Time
	Binding       string // the browser session's id
	Meta          twofactor.Meta
	// PriorAMR and RequiredACR continue a step-up (StepUp's SignIn): what
	// the session proved and the level the step-up must reach.
	PriorAMR    []string
	RequiredACR string
}

// Resume rebuilds a sign-in from state the surface kept.
func (e *Engine) Resume(ctx context.Context, in ResumeInput) (*SignIn, error) {
	pol, err := e.Policy.For(ctx, in.Client)
	if err != nil {
		return nil, err
	}
	tf, err := e.factorOf(ctx, in.User)
	if err != nil {
		return nil, err
	}
	return &SignIn{User: in.User, Client: in.Client, AuthConfig: pol.AuthConfig, TwoFactor: tf, Meta: in.Meta,
		Policy: pol, FirstFactorAt: in.FirstFactorAt.UTC(), Binding: in.Binding,
		PriorAMR: slices.Clone(in.PriorAMR), RequiredACR: in.RequiredACR}, nil
}

// Open returns the parked sign-in a ticket names for client c: genuine,
// unexpired, c's, not completed, its user still active.
// ErrInvalidTicket otherwise; other errors are storage failures.
func (e *Engine) Open(ctx context.Context, ticket string, c resource.Client) (*SignIn, error) {
	t, err := e.TwoFactor.OpenMFAToken(ctx, ticket, c.ID)
	if err != nil {
		return nil, err
	}
	user, err := e.Store.GetUserWithFactors(ctx, t.UserID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && user.Inactive) {
		return nil, ErrInvalidTicket
	}
	if err != nil {
		return nil, fmt.Errorf("get user %q: %w", t.UserID, err)
	}
	pol, err := e.Policy.For(ctx, c)
	if err != nil {
		return nil, err
	}
	tf, err := e.factorOf(ctx, user)
	if err != nil {
		return nil, err
	}
	return &SignIn{Token: t, User: user, Client: c, AuthConfig: pol.AuthConfig, TwoFactor: tf,
		Policy: pol, FirstFactorAt: t.IssuedAt, Binding: t.ID}, nil
}

// factorOf is u's built-in factor record: as read with u
// (Store.GetUserWithFactors), or read now.
func (e *Engine) factorOf(ctx context.Context, u store.User) (store.TwoFactor, error) {
	if u.Factors != nil {
		return u.Factors.TwoFactor, nil
	}
	return e.TwoFactorOf(ctx, u.ID)
}

// TwoFactorOf is the user's built-in factor record; the zero record when
// there is none.
func (e *Engine) TwoFactorOf(ctx context.Context, userID string) (store.TwoFactor, error) {
	tf, err := e.Store.GetTwoFactor(ctx, userID)
	if errors.Is(err, store.ErrNotFound) {
		return store.TwoFactor{UserID: userID}, nil
	}
	if err != nil {
		return store.TwoFactor{}, fmt.Errorf("get second factor of %q: %w", userID, err)
	}
	return tf, nil
}

// Offers lists every factor's offers for s, built-ins first.
func (e *Engine) Offers(ctx context.Context, s *SignIn) ([]Offer, error) {
	return e.offers(ctx, s, true)
}

// OffersBesideRecovery is Offers without backup_code: what the hosted
// pages list, whose code box takes a recovery code anyway.
func (e *Engine) OffersBesideRecovery(ctx context.Context, s *SignIn) ([]Offer, error) {
	return e.offers(ctx, s, false)
}

func (e *Engine) offers(ctx context.Context, s *SignIn, recovery bool) ([]Offer, error) {
	var out []Offer
	for _, f := range e.factors() {
		if !recovery && f.Strategy() == StrategyBackupCode {
			continue
		}
		if !e.usable(s, f.Strategy()) {
			continue
		}
		o, err := f.Offers(ctx, s)
		if err != nil {
			return nil, fmt.Errorf("offers of %s: %w", f.Strategy(), err)
		}
		out = append(out, o...)
	}
	return out, nil
}

// restricted reports whether the policy's methods apply to s: when a
// second factor is required (by the policy or by the level a step-up must
// reach). A user who passes a second factor nobody asked for proves any
// factor of their own.
func (s *SignIn) restricted() bool {
	return s.Policy.SecondFactorRequired() || Level(s.RequiredACR) >= Level(ACRMFA)
}

// usable reports whether strategy may finish s: a method the policy allows
// (when it applies) and a factor that reaches the level s must reach.
func (e *Engine) usable(s *SignIn, strategy string) bool {
	if s.restricted() && !s.Policy.Allows(strategy) {
		return false
	}
	if Level(s.RequiredACR) <= Level(ACRMFA) {
		return true
	}
	f := e.Factor(strategy)
	return f != nil && Level(factorACR(f)) >= Level(s.RequiredACR)
}

// Usable reports whether strategy may finish s under its policy and
// level (the hosted page asks it whether its code box takes recovery
// codes).
func (e *Engine) Usable(s *SignIn, strategy string) bool { return e.usable(s, strategy) }

// Leveled is implemented by a factor whose success reaches another level
// than mfa: ACRPhishingResistant for a factor that proves amr hwk. The
// factor of strategy passkey reaches it without saying so.
type Leveled interface {
	ACR() string
}

func factorACR(f Factor) string {
	if l, ok := f.(Leveled); ok {
		return l.ACR()
	}
	if f.Strategy() == StrategyPasskey {
		return ACRPhishingResistant
	}
	return ACRMFA
}

// BuiltinStrategy is the strategy of the user's built-in factor tf.
func BuiltinStrategy(tf store.TwoFactor) string {
	switch tf.Method {
	case twofactor.MethodSMS:
		return StrategyPhoneCode
	case twofactor.MethodEmail:
		return StrategyEmailCode
	}
	return StrategyTOTP
}

// Strategies are the distinct strategies of offers, in order.
func Strategies(offers []Offer) []string {
	var out []string
	for _, o := range offers {
		if !slices.Contains(out, o.Strategy) {
			out = append(out, o.Strategy)
		}
	}
	return out
}

// Describe is how the hosted pages show strategy's factor.
func (e *Engine) Describe(strategy string) (Description, bool) {
	f := e.Factor(strategy)
	if f == nil {
		return Description{}, false
	}
	return describe(f), true
}

// Factor is the registered factor of strategy, or nil.
func (e *Engine) Factor(strategy string) Factor {
	for _, f := range e.factors() {
		if f.Strategy() == strategy {
			return f
		}
	}
	return nil
}

// offered resolves strategy for s: a factor that has an offer for s. The
// empty strategy is the user's default: their built-in code factor, which
// also takes a recovery code (what the hosted page's one box and the
// password grant's `otp` accept), else the first offer.
func (e *Engine) offered(ctx context.Context, s *SignIn, strategy string) (Factor, error) {
	if strategy == "" {
		if s.TwoFactor.Enabled && e.usable(s, BuiltinStrategy(s.TwoFactor)) {
			return anyCodeFactor{e}, nil
		}
		offers, err := e.Offers(ctx, s)
		if err != nil {
			return nil, err
		}
		if len(offers) == 0 {
			return nil, ErrNotOffered
		}
		strategy = offers[0].Strategy
	}
	f := e.Factor(strategy)
	if f == nil || !e.usable(s, strategy) {
		return nil, ErrNotOffered
	}
	o, err := f.Offers(ctx, s)
	if err != nil {
		return nil, fmt.Errorf("offers of %s: %w", strategy, err)
	}
	if len(o) == 0 {
		return nil, ErrNotOffered
	}
	return f, nil
}

// Prepare starts strategy's challenge for s (sends a code). The empty
// strategy prepares the default one.
func (e *Engine) Prepare(ctx context.Context, s *SignIn, strategy, destinationID string) (Prepared, error) {
	f, err := e.offered(ctx, s, strategy)
	if err != nil {
		return Prepared{}, err
	}
	return f.Prepare(ctx, s, destinationID)
}

// Attempt checks answer with strategy (the empty strategy: the default)
// under the user's one attempt counter and lockout, and on success
// completes s's ticket, when it has one, exactly once however many
// attempts race on however many processes. Every refusal is
// ErrInvalidCode; a ticket completed meanwhile is ErrInvalidTicket.
func (e *Engine) Attempt(ctx context.Context, s *SignIn, strategy, answer string) (Result, error) {
	f, err := e.offered(ctx, s, strategy)
	if err != nil {
		return Result{}, err
	}
	var proof Proof
	attempt := func(ctx context.Context) (twofactor.Result, error) {
		p, err := f.Attempt(ctx, s, answer)
		proof = p
		return twofactor.Result{AMR: p.AMR}, err
	}
	if g, ok := f.(guarded); ok && g.guarded() {
		_, err = attempt(ctx)
	} else {
		_, err = e.TwoFactor.Guard(ctx, s.User.ID, f.Strategy(), s.Meta, attempt)
	}
	if err != nil {
		return Result{}, err
	}
	strategy = f.Strategy()
	if proof.Strategy != "" {
		strategy = proof.Strategy
	}
	res := e.result(s, strategy, proof.AMR)
	res.RecoveryCodesRemaining = proof.RecoveryCodesRemaining
	if err := e.complete(ctx, s); err != nil {
		return Result{}, err
	}
	return res, nil
}

// Complete finishes s after a step that proved the second factor outside
// Attempt (an enrolment confirmed with the new factor's first code), with
// the methods that step proved.
func (e *Engine) Complete(ctx context.Context, s *SignIn, strategy string, methods []string) (Result, error) {
	if err := e.complete(ctx, s); err != nil {
		return Result{}, err
	}
	return e.result(s, strategy, methods), nil
}

func (e *Engine) complete(ctx context.Context, s *SignIn) error {
	if s.Token.ID == "" {
		return nil
	}
	return e.TwoFactor.CompleteMFAToken(ctx, s.Token)
}

// result is the finished sign-in: pwd, then what the second factor
// proved, then mfa when it proved anything.
func (e *Engine) result(s *SignIn, strategy string, methods []string) Result {
	at := s.FirstFactorAt
	if at.IsZero() {
		at = e.now()
	}
	r := Result{UserID: s.User.ID, AMR: []string{AMRPassword}, ACR: ACRPassword, AuthTime: at.Truncate(time.Second), Strategy: strategy}
	switch {
	case len(s.PriorAMR) > 0:
		// A step-up: what the session proved, then this factor.
		r.AMR = Accumulate(s.PriorAMR, methods)
	case strategy == "" && len(methods) == 0:
		return r
	default:
		r.AMR = MFAMethods(methods)
	}
	r.ACR = ACRFor(r.AMR)
	return r
}

// MFAMethods is the amr of a password and a second factor that proved
// methods: pwd, the methods, mfa.
func MFAMethods(methods []string) []string {
	out := []string{AMRPassword}
	for _, m := range methods {
		if m != AMRPassword && m != AMRMFA && !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	return append(out, AMRMFA)
}

// Enrollable lists the factors a user without one may set up during the
// sign-in: TOTP always, and codes to a verified phone or address when the
// policy can deliver them.
func (e *Engine) Enrollable(s *SignIn) []Offer {
	var out []Offer
	add := func(o Offer) {
		if e.usable(s, o.Strategy) {
			out = append(out, o)
		}
	}
	add(Offer{Strategy: StrategyTOTP})
	if !s.Policy.CanDeliverCodes() {
		return out
	}
	if s.User.PhoneNumber != "" && s.User.PhoneVerified && s.Policy.CanDeliver(resource.MethodSMS) {
		add(Offer{Strategy: StrategyPhoneCode, DestinationID: DestinationPhone, Destination: twofactor.MaskDestination(s.User.PhoneNumber)})
	}
	if s.User.Email != "" && s.User.EmailVerified {
		add(Offer{Strategy: StrategyEmailCode, DestinationID: DestinationEmail, Destination: twofactor.MaskDestination(s.User.Email)})
	}
	return out
}

// Strategies lists every registered factor's strategy, built-ins first.
func (e *Engine) Strategies() []string {
	var out []string
	for _, f := range e.factors() {
		out = append(out, f.Strategy())
	}
	return out
}

// Refresh reads s's user factor again after an enrolment changed it; the
// factors read with the user are no longer theirs, so factors read their own.
func (e *Engine) Refresh(ctx context.Context, s *SignIn) error {
	tf, err := e.TwoFactorOf(ctx, s.User.ID)
	if err != nil {
		return err
	}
	s.TwoFactor = tf
	s.User.Factors = nil
	return nil
}

// Validate checks the registry: every strategy named, none twice.
func (e *Engine) Validate() error {
	seen := map[string]bool{}
	for _, f := range e.factors() {
		st := f.Strategy()
		if st == "" || seen[st] {
			return fmt.Errorf("factor strategy %q is empty or used twice", st)
		}
		seen[st] = true
	}
	return nil
}
