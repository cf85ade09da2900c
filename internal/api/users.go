package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/store"
)

var errDestinationTaken = &apiError{Status: http.StatusConflict, Code: "destination_taken",
	Desc: "Another account already uses this phone number or e-mail address."}

// takenByOther reports whether a user other than userID ("" for nobody)
// holds a destination; the rule is resource.DestinationTakenByOther's.
func (h *Handler) takenByOther(ctx context.Context, channel, dest, userID string) (bool, error) {
	return resource.DestinationTakenByOther(ctx, h.Store, channel, dest, userID)
}

// spendLookup spends one of the user's destination look-ups
// (resource.SpendDestinationLookup): every answer that may say "taken"
// shares one budget.
func (h *Handler) spendLookup(ctx context.Context, userID string) error {
	err := resource.SpendDestinationLookup(ctx, h.Store, userID, h.now())
	if errors.Is(err, resource.ErrTooManyLookups) {
		return &apiError{Status: http.StatusTooManyRequests, Code: "too_many_requests",
			Desc: "Too many look-ups. Try again later.", RetryAfter: time.Hour}
	}
	return err
}

// setVerified makes dest the user's verified phone number or e-mail address
// (resource.SetVerifiedDestination), answering a taken one as a 409.
func (h *Handler) setVerified(ctx context.Context, userID, channel, dest string) (store.User, error) {
	u, err := resource.SetVerifiedDestination(ctx, h.Store, userID, channel, dest)
	if errors.Is(err, resource.ErrDestinationTaken) {
		return store.User{}, errDestinationTaken
	}
	return u, err
}

// userView is the User resource as the API shows it: no password, the
// two-factor status read from the factor record.
func (h *Handler) userView(ctx context.Context, rec store.User) (resource.User, error) {
	u, err := resource.UserFromStore(rec)
	if err != nil {
		return resource.User{}, err
	}
	if u.TwoFactor, err = resource.TwoFactorStatus(ctx, h.Store, rec.ID); err != nil {
		return resource.User{}, err
	}
	return u.Public(), nil
}
