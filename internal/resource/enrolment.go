package resource

import (
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
)

// TOTPEnrolmentDue reports a second-factor record that holds no factor yet
// but says the user must set up TOTP at the next sign-in: what a sign-up
// under AuthConfig twoFactor.defaultMethod totp leaves, since an
// authenticator app can only be paired by its owner. Sign-in paths treat it
// like twoFactor.required for that user; enrolling replaces it.
func TOTPEnrolmentDue(tf store.TwoFactor) bool {
	return !tf.Enabled && tf.Method == MethodTOTP && len(tf.Secret) == 0
}

// TOTPEnrolmentMarker is the record TOTPEnrolmentDue recognises.
func TOTPEnrolmentMarker(userID string, now time.Time) store.TwoFactor {
	return store.TwoFactor{UserID: userID, Method: MethodTOTP, Enabled: false, UpdatedAt: now.UTC()}
}
