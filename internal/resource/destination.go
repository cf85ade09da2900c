package resource

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
)

// ErrDestinationTaken: another account holds the phone number or e-mail
// address.
var ErrDestinationTaken = errors.New("another account uses this phone number or e-mail address")

// VerificationBinding binds a verification code to the user, the channel
// (MethodSMS or MethodEmail) and the destination it was sent to: the code
// proves that destination for that user and nothing else. The JSON API and
// the hosted pages bind alike, so a code sent by one may be entered in the
// other.
func VerificationBinding(userID, channel, dest string) string {
	sum := sha256.Sum256([]byte("verify\x00" + userID + "\x00" + channel + "\x00" + dest))
	return "verify:" + hex.EncodeToString(sum[:])
}

// DestinationLookups is how many answers to "does another account hold
// this destination?" a user gets per hour, over every surface that gives
// one (GET /auth/mfa/bindable, POST /auth/verification-codes, the hosted
// method page).
const DestinationLookups = 30

// ErrTooManyLookups: the user spent the DestinationLookups budget.
var ErrTooManyLookups = errors.New("too many destination look-ups; try again later")

// SpendDestinationLookup counts one look-up of userID against the hourly
// budget before the answer is computed, so a refusal is the same whatever
// the destination; ErrTooManyLookups once the budget is spent.
func SpendDestinationLookup(ctx context.Context, st store.Store, userID string, now time.Time) error {
	n, err := st.HitCounter(ctx, "api:bindable:"+userID, time.Hour, now)
	if err != nil {
		return fmt.Errorf("count destination look-up: %w", err)
	}
	if n > DestinationLookups {
		return ErrTooManyLookups
	}
	return nil
}

// DestinationTakenByOther reports whether a user other than userID ("" for
// nobody) holds dest on channel (MethodSMS or MethodEmail). An e-mail
// address belongs to at most one user (the store keeps it unique, verified
// or not); a phone number counts only where it was verified, since
// unverified numbers prove nothing and may be typos. Several users may hold
// one number verified (the admin API can set phoneVerified): then at least
// one of them is another user.
func DestinationTakenByOther(ctx context.Context, st store.Store, channel, dest, userID string) (bool, error) {
	if channel == MethodEmail {
		u, err := st.FindUser(ctx, dest)
		if errors.Is(err, store.ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("find user by e-mail: %w", err)
		}
		// FindUser may have matched an id rather than the address.
		return u.Email == dest && u.ID != userID, nil
	}
	u, err := st.FindUserByPhone(ctx, dest)
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

// SetVerifiedDestination makes dest the user's phone number (MethodSMS) or
// e-mail address (MethodEmail), marked verified, in the record's columns and
// its resource document alike. A concurrent write to the user is retried;
// a destination another account holds is ErrDestinationTaken and changes
// nothing. The caller has checked the verification code.
func SetVerifiedDestination(ctx context.Context, st store.Store, userID, channel, dest string) (store.User, error) {
	if channel != MethodSMS && channel != MethodEmail {
		return store.User{}, fmt.Errorf("verify destination: unknown channel %q", channel)
	}
	if taken, err := DestinationTakenByOther(ctx, st, channel, dest, userID); err != nil {
		return store.User{}, err
	} else if taken {
		return store.User{}, ErrDestinationTaken
	}
	for range 3 {
		rec, err := st.GetUser(ctx, userID)
		if err != nil {
			return store.User{}, fmt.Errorf("get user %q: %w", userID, err)
		}
		u, err := UserFromStore(rec)
		if err != nil {
			return store.User{}, err
		}
		if channel == MethodSMS {
			u.PhoneNumber, u.PhoneVerified = dest, true
		} else {
			u.Email, u.EmailVerified = dest, true
		}
		next, err := ToStoreUser(u, "", &rec)
		if err != nil {
			return store.User{}, err
		}
		out, _, err := st.PutUser(ctx, next, rec.Version)
		if errors.Is(err, store.ErrConflict) {
			cur, gerr := st.GetUser(ctx, userID)
			if gerr == nil && cur.Version != rec.Version {
				continue // someone else wrote the user meanwhile: read again
			}
			return store.User{}, ErrDestinationTaken // the e-mail address, taken meanwhile
		}
		if err != nil {
			return store.User{}, fmt.Errorf("put user %q: %w", userID, err)
		}
		return out, nil
	}
	return store.User{}, fmt.Errorf("put user %q: %w", userID, store.ErrConflict)
}

// SignUpBinding binds a sign-up's code to the destination it was sent to.
// There is no user yet: whoever holds the code holds the destination. The
// JSON API and the hosted page bind alike.
func SignUpBinding(channel, dest string) string {
	sum := sha256.Sum256([]byte("sign-up\x00" + channel + "\x00" + dest))
	return "sign-up:" + hex.EncodeToString(sum[:])
}
