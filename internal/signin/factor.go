package signin

import (
	"context"
	"encoding/json"
	"time"

	"github.com/gatehouse/gatehouse/internal/policy"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

// SignIn is a sign-in that passed the first factor and may owe a second.
// Factors receive it; they must not keep it.
type SignIn struct {
	// Token is the parked ticket (zero until Park, or Open set it).
	Token      twofactor.MFAToken
	User       store.User
	Client     resource.Client
	AuthConfig resource.AuthConfig
	// TwoFactor is the user's built-in factor; Enabled is false when the
	// user has none.
	TwoFactor     store.TwoFactor
	Meta          twofactor.Meta
	Policy        policy.Policy
	FirstFactorAt time.Time
	// PriorAMR is what a signed-in session already proved when this
	// sign-in is a step-up (nil otherwise); the result accumulates it.
	PriorAMR []string
	// RequiredACR is the level a step-up must reach ("" outside a
	// step-up): only factors that reach it are offered.
	RequiredACR string
	// PriorFactors are the strategies the signed-in session already
	// proved, when this sign-in is a step-up.
	PriorFactors []string
	// Binding names this sign-in for the codes sent to it: the ticket's
	// id once parked; before that (the password grant) this user at this
	// client; on the hosted pages the browser session.
	Binding string
}

// Offer is one way to finish a sign-in, as the "factors" list shows it.
type Offer struct {
	Strategy      string `json:"strategy"`
	DestinationID string `json:"destination_id,omitempty"`
	Destination   string `json:"destination,omitempty"` // masked: +1•••••4567, a•••@example.com
}

// Prepared describes what a prepare call sent.
type Prepared struct {
	Strategy      string    `json:"strategy"`
	DestinationID string    `json:"destination_id,omitempty"`
	Destination   string    `json:"destination,omitempty"` // masked
	ExpiresAt     time.Time `json:"expires_at,omitzero"`
	// Options are what the browser needs to answer a challenge-response
	// factor (a passkey's request options, {"publicKey": …}); nil for codes.
	Options json.RawMessage `json:"options,omitempty"`
}

// Proof is how a factor was proven.
type Proof struct {
	// AMR are the authentication method references (RFC 8176) to add to
	// "pwd", e.g. otp.
	AMR []string
	// RecoveryCodesRemaining is set when a recovery code was spent.
	RecoveryCodesRemaining *int
	// Strategy, when set, names what proved it when the factor's own
	// strategy does not (the one code box of a built-in factor: totp, a
	// code by SMS or e-mail, or backup_code).
	Strategy string
}

// Factor is one second-factor strategy. The built-in totp, phone_code,
// email_code and backup_code are Factors; a deployment registers its own
// (a face check by a vendor's SDK, a hardware token of its own) in
// Engine.Factors and every surface offers it:
//
//   - Offers lists the ways this factor can finish the sign-in for s.User
//     (none: the factor does not apply). A user with any offer must pass a
//     second factor.
//   - Prepare starts a challenge (sends a code, opens a vendor session)
//     for one of the offers; ErrNotPreparable when nothing needs starting.
//   - Attempt checks the answer (a code, or whatever token the client
//     obtained from the vendor). Every refusal is ErrInvalidCode. The
//     engine counts the attempt and locks the user out after too many, on
//     the counter every factor shares: a factor does not limit guesses
//     itself.
//
// Errors other than the exported ones are failures of the service.
type Factor interface {
	Strategy() string
	Offers(ctx context.Context, s *SignIn) ([]Offer, error)
	Prepare(ctx context.Context, s *SignIn, destinationID string) (Prepared, error)
	Attempt(ctx context.Context, s *SignIn, code string) (Proof, error)
}

// Input kinds of a factor's answer on the hosted pages.
const (
	InputCode = "code" // digits: inputmode numeric, one-time-code autofill
	InputText = "text" // anything else the user types or pastes
	// InputPasskey: the page asks the browser for a passkey with the
	// prepared Options and submits the browser's answer (JSON) as the code.
	InputPasskey = "passkey"
)

// Description is how the hosted pages show a factor.
type Description struct {
	Label string // "Authenticator app", shown on the switch link
	// Prompt is the sentence above the input.
	Prompt string
	Input  string // InputCode or InputText
	// NeedsSend: the page prepares the factor when it shows (sends a code)
	// and offers to send again.
	NeedsSend bool
}

// Describer is implemented by a factor that says how the hosted pages show
// it. Without it the pages use the strategy as label and a text input.
type Describer interface {
	Describe() Description
}

func describe(f Factor) Description {
	if d, ok := f.(Describer); ok {
		return d.Describe()
	}
	return Description{Label: f.Strategy(), Prompt: "Enter the answer for " + f.Strategy() + ".", Input: InputText}
}

// guarded marks the built-in factors: package twofactor counts and locks
// their attempts itself, on the same counter Guard uses, inside the
// statements that spend the code.
type guarded interface{ guarded() bool }
