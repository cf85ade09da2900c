// Package api is the JSON API for apps that draw their own screens: sign-in
// with a second factor, self-service authenticators, verification codes and
// sign-up. It speaks JSON (and form-encoded bodies) with OAuth-style errors
// ({"error","error_description"}), answers CORS only for the origins a
// Client lists in allowed_origins, and leaves every rule about codes,
// lockouts and tokens to internal/twofactor and internal/oauth.
//
// A sign-in runs like Clerk's: POST /auth/sign-in checks the password and
// either completes (tokens) or answers needs_second_factor with an
// mfa_token and the factors the user has; /auth/sign-in/prepare sends a
// code for phone_code or email_code; /auth/sign-in/attempt checks a code
// and completes. The mfa_token is bound to the user and the client, lasts
// five minutes and completes once; codes share the lockout counter of the
// hosted pages. A sign-in that needs a factor the user has not set up
// (twoFactor.required, or a sign-up under defaultMethod totp) answers
// needs_enrollment and enrols through /auth/sign-in/enroll.
//
// Second factors are pluggable: each strategy is a Factor, and a deployment
// can add its own (Handler.Factors) next to the built-in totp, phone_code,
// email_code and backup_code.
package api
