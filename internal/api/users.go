package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

var errDestinationTaken = &apiError{Status: http.StatusConflict, Code: "destination_taken",
	Desc: "Another account already uses this phone number or e-mail address."}

// takenByOther reports whether a user other than userID ("" for nobody)
// holds a destination. An e-mail address belongs to at most one user (the
// store keeps it unique, verified or not); a phone number counts only where
// it was verified, since unverified numbers prove nothing and may be typos.
// Several users may hold one number verified (set through the admin API):
// then at least one of them is another user.
func (h *Handler) takenByOther(ctx context.Context, channel, dest, userID string) (bool, error) {
	if channel == twofactor.MethodEmail {
		u, err := h.Store.FindUser(ctx, dest)
		if errors.Is(err, store.ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("find user by e-mail: %w", err)
		}
		// FindUser may have matched an id rather than the address.
		return u.Email == dest && u.ID != userID, nil
	}
	u, err := h.Store.FindUserByPhone(ctx, dest)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return false, nil
	case errors.Is(err, store.ErrConflict):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("find user by phone: %w", err)
	}
	return u.ID != userID, nil
}

// setVerified makes dest the user's phone number or e-mail address, marked
// verified, in the record's columns and its resource document alike. A
// concurrent write to the user is retried; a destination another account
// holds is errDestinationTaken and changes nothing.
func (h *Handler) setVerified(ctx context.Context, userID, channel, dest string) (store.User, error) {
	if taken, err := h.takenByOther(ctx, channel, dest, userID); err != nil {
		return store.User{}, err
	} else if taken {
		return store.User{}, errDestinationTaken
	}
	for range 3 {
		rec, err := h.Store.GetUser(ctx, userID)
		if err != nil {
			return store.User{}, fmt.Errorf("get user %q: %w", userID, err)
		}
		u, err := resource.UserFromStore(rec)
		if err != nil {
			return store.User{}, err
		}
		if channel == twofactor.MethodSMS {
			u.PhoneNumber, u.PhoneVerified = dest, true
		} else {
			u.Email, u.EmailVerified = dest, true
		}
		next, err := resource.ToStoreUser(u, "", &rec)
		if err != nil {
			return store.User{}, err
		}
		out, _, err := h.Store.PutUser(ctx, next, rec.Version)
		if errors.Is(err, store.ErrConflict) {
			cur, gerr := h.Store.GetUser(ctx, userID)
			if gerr == nil && cur.Version != rec.Version {
				continue // someone else wrote the user meanwhile: read again
			}
			return store.User{}, errDestinationTaken
		}
		if err != nil {
			return store.User{}, fmt.Errorf("put user %q: %w", userID, err)
		}
		return out, nil
	}
	return store.User{}, fmt.Errorf("put user %q: %w", userID, store.ErrConflict)
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
