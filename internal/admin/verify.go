package admin

import (
	"context"
	"errors"
	"fmt"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

// destinationCode is a verification code a User write carries (Freshcom's
// phoneVerificationCode or emailVerificationCode) and the destination it
// proves. The code is the one POST /User/{id}/$verification-codes or the
// user's own POST /auth/verification-codes sent: both bind it to the user
// id, the channel and the destination (resource.VerificationBinding).
type destinationCode struct {
	field   string // the write's field, named when the code is refused
	channel string // resource.MethodSMS | resource.MethodEmail
	dest    string
	try     *twofactor.VerifyAttempt
	spent   bool // in the current run of the write's transaction
}

// Refusals of a verification code, as the admin API words them.
const (
	msgCodeRefused = "the code is wrong, has expired or was used already; send a new one (POST /User/{id}/$verification-codes)"
	msgCodeLocked  = "too many tries at the code for this destination; wait ten minutes, then send a new one"
)

// beginDestinationCodes counts one try at each code u carries, before the
// write's transaction opens (twofactor.BeginVerifyCode), so that a try
// stays counted however the write ends: every try at a code goes against
// the same limit as the JSON API's. A malformed code, or one whose tries
// are spent, is refused here.
func (h *Handler) beginDestinationCodes(ctx context.Context, u resource.User, who actor) ([]*destinationCode, error) {
	wanted := []struct {
		field, channel, dest, code string
	}{
		{"phoneVerificationCode", resource.MethodSMS, u.PhoneNumber, u.PhoneVerificationCode},
		{"emailVerificationCode", resource.MethodEmail, u.Email, u.EmailVerificationCode},
	}
	var (
		out      []*destinationCode
		problems []resource.Problem
	)
	for _, w := range wanted {
		if w.code == "" {
			continue
		}
		if h.TwoFactor == nil {
			return nil, errors.New("verify destination code: the admin handler has no two-factor service")
		}
		try, err := h.TwoFactor.BeginVerifyCode(ctx, twofactor.VerifyCodeInput{
			UserID:    u.ID,
			BindingID: resource.VerificationBinding(u.ID, w.channel, w.dest),
			Code:      w.code,
			Meta:      twofactor.Meta{RemoteAddr: who.remote, RequestID: who.requestID},
		})
		switch {
		case errors.Is(err, twofactor.ErrLocked):
			problems = append(problems, resource.Problem{Path: w.field, Code: resource.CodeTooCostly, Message: msgCodeLocked})
		case errors.Is(err, twofactor.ErrInvalidCode):
			problems = append(problems, resource.Problem{Path: w.field, Code: resource.CodeInvalid, Message: msgCodeRefused})
		case err != nil:
			return nil, fmt.Errorf("verify %s of %q: %w", w.field, u.ID, err)
		default:
			out = append(out, &destinationCode{field: w.field, channel: w.channel, dest: w.dest, try: try})
		}
	}
	if len(problems) > 0 {
		// The other codes' tries are counted, not checked: nothing to audit.
		return nil, &resource.ValidationError{Problems: problems}
	}
	return out, nil
}

// spendDestinationCodes spends the codes inside the write's transaction
// and marks on u what they prove. Any refused code refuses the write (each
// named), and the rollback gives the others back unspent.
func spendDestinationCodes(ctx context.Context, codes []*destinationCode, u *resource.User) error {
	var problems []resource.Problem
	for _, c := range codes {
		c.spent = false
		_, err := c.try.Spend(ctx)
		switch {
		case errors.Is(err, twofactor.ErrInvalidCode):
			problems = append(problems, resource.Problem{Path: c.field, Code: resource.CodeInvalid, Message: msgCodeRefused})
			continue
		case err != nil:
			return fmt.Errorf("spend %s of %q: %w", c.field, u.ID, err)
		}
		c.spent = true
		if c.channel == resource.MethodSMS {
			u.PhoneVerified = true
		} else {
			u.EmailVerified = true
		}
	}
	if len(problems) > 0 {
		return &resource.ValidationError{Problems: problems}
	}
	return nil
}

// finishDestinationCodes audits the codes once the write has ended: each
// refusal, and, when the write committed, each proven destination.
func (h *Handler) finishDestinationCodes(ctx context.Context, codes []*destinationCode, committed bool, who actor, userID string, version int64) {
	for _, c := range codes {
		c.try.Finish(ctx, committed && c.spent)
		if committed && c.spent {
			h.record(ctx, audit.DestinationVerified, who, resource.TypeUser, userID, version, false, map[string]string{
				"channel": c.channel, "destination": twofactor.MaskDestination(c.dest), "by": "admin",
			})
		}
	}
}

// verifiedByCode names, for the admin.write event, the destinations the
// write proved with a code.
func verifiedByCode(codes []*destinationCode, detail map[string]string) {
	for _, c := range codes {
		if c.spent {
			detail[c.field] = "accepted"
		}
	}
}
