package api

import (
	"errors"
	"net/http"
	"strings"

	"github.com/gatehouse/gatehouse/internal/account"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/signin"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

// StatusCreated is the sign-up answer's status when it does not sign in.
const StatusCreated = "created"

var (
	errSignUpDisabled = &apiError{Status: http.StatusForbidden, Code: "sign_up_disabled",
		Desc: "Sign-up is not enabled for this application (AuthConfig signUp.enabled)."}
	errUsernameTaken = &apiError{Status: http.StatusConflict, Code: "username_taken",
		Desc: "This username is taken."}
)

// signUpClient authenticates the client and checks that its AuthConfig
// lets people sign up.
func (c *call) signUpClient() (resource.Client, resource.AuthConfig, error) {
	cl, err := c.authClient()
	if err != nil {
		return resource.Client{}, resource.AuthConfig{}, err
	}
	ac, err := c.h.authConfig(c.r.Context(), cl)
	if err != nil {
		return resource.Client{}, resource.AuthConfig{}, err
	}
	if !ac.SignUpEnabled() {
		return resource.Client{}, resource.AuthConfig{}, errSignUpDisabled
	}
	return cl, ac, nil
}

// defaultMethodOf is the method new users get, "" when the AuthConfig
// sets none (AuthConfig.DefaultMethod answers totp then, for enrolment
// pages; a sign-up must tell "unset" apart).
func defaultMethodOf(ac resource.AuthConfig) string {
	if ac.TwoFactor == nil {
		return ""
	}
	return ac.TwoFactor.DefaultMethod
}

// signUpCode is POST /auth/sign-up/verification-code: {client_id, channel,
// destination}. It sends the code a sign-up must present; at most
// twofactor.SendLimit codes per destination and hour.
func (h *Handler) signUpCode(c *call) error {
	ctx := c.r.Context()
	cl, ac, err := c.signUpClient()
	if err != nil {
		return err
	}
	channel, dest, err := channelDestination(c.p, store.User{})
	if err != nil {
		return err
	}
	if err := h.SignUps.SpendCodeSend(ctx, remoteAddr(c.r)); errors.Is(err, account.ErrThrottled) {
		return errTooManySends
	} else if err != nil {
		return err
	}
	// No user yet: the payload names the destination only. An empty user
	// id makes the send limit count every code to the destination.
	u := store.User{}
	if channel == twofactor.MethodSMS {
		u.PhoneNumber = dest
	} else {
		u.Email = dest
	}
	sent, err := h.TwoFactor.SendCode(ctx, twofactor.SendInput{
		User: u, Purpose: twofactor.PurposeVerify, Channel: channel, Destination: dest,
		BindingID: resource.SignUpBinding(channel, dest), Webhook: webhookOf(ac), Meta: c.meta(cl.ID),
	})
	if err != nil {
		return sendCodeError(err)
	}
	return c.json(http.StatusAccepted, map[string]any{
		"channel": channel, "destination": twofactor.MaskDestination(dest), "expires_at": sent.ExpiresAt,
	})
}

// signUp is POST /auth/sign-up: {client_id, username, password,
// phone_number | email, verification_code, given_name?, family_name?,
// sign_in?, scope?}. The user is created with the destination verified and,
// per the AuthConfig's twoFactor.defaultMethod, SMS or e-mail codes on
// (recovery codes in the answer, once) or a TOTP enrolment due at the
// first sign-in. With sign_in true the answer also signs the user in.
func (h *Handler) signUp(c *call) error {
	ctx := c.r.Context()
	cl, ac, err := c.signUpClient()
	if err != nil {
		return err
	}
	in, err := c.signUpInput(ac)
	if err != nil {
		return err
	}
	m := c.meta(cl.ID)
	if in.verify {
		// The code proves the destination before anything is told, the
		// username included: the code is bound to the destination and its
		// attempts are counted, so nobody probes usernames without one.
		_, err = h.TwoFactor.VerifyCode(ctx, twofactor.VerifyCodeInput{
			BindingID: resource.SignUpBinding(in.channel, in.dest), Code: c.p.get("verification_code"), Meta: m,
		})
		if errors.Is(err, twofactor.ErrInvalidCode) {
			return errInvalidCode
		}
		if err != nil {
			return err
		}
	}
	hash, err := resource.HashWriteOnly(ctx, h.Hasher, in.password)
	if err != nil {
		return err
	}
	created, codes, err := h.SignUps.Create(ctx, account.NewAccount{
		User: in.user, PasswordHash: hash, Channel: in.channel, Destination: in.dest,
		Method: defaultMethodOf(ac), Webhook: webhookOf(ac), Meta: m,
	})
	switch {
	case errors.Is(err, account.ErrUsernameTaken):
		return errUsernameTaken
	case errors.Is(err, account.ErrDestinationTaken):
		return errDestinationTaken
	case err != nil:
		return enableError(err)
	}

	view, err := h.userView(ctx, created)
	if err != nil {
		return err
	}
	body := map[string]any{"status": StatusCreated, "user": view}
	if codes != nil {
		body["recovery_codes"] = codes
	}
	if !c.p.flag("sign_in") {
		return c.json(http.StatusCreated, body)
	}
	return h.signUpSignIn(c, cl, ac, created, codes != nil, body)
}

// signUpSignIn signs a new user in. With SMS or e-mail codes on, the
// sign-up itself proved password and destination: tokens with pwd, otp,
// mfa. With a TOTP enrolment due (or a second factor required) the answer
// is needs_enrollment with an mfa_token, and the app enrols at once.
func (h *Handler) signUpSignIn(c *call, cl resource.Client, ac resource.AuthConfig, u store.User, twoFactorOn bool, body map[string]any) error {
	ctx := c.r.Context()
	amr := []string{"pwd"}
	if twoFactorOn {
		amr = signin.MFAMethods([]string{"otp"})
	} else {
		s, step, err := h.SignIn.Begin(ctx, signin.BeginInput{User: u, Client: cl, FirstFactorAt: h.now(), Meta: c.meta(cl.ID)})
		if errors.Is(err, signin.ErrUnmetLevel) {
			return errUnmetLevel
		}
		if err != nil {
			return err
		}
		if step.Status != StatusComplete {
			token, exp, err := h.SignIn.Park(ctx, s, signin.APITTL)
			if err != nil {
				return err
			}
			body["status"] = StatusNeedsEnrollment
			body["mfa_token"] = token
			body["expires_at"] = exp
			body["enrollable"] = h.SignIn.Enrollable(s)
			return c.json(http.StatusCreated, body)
		}
	}
	tokens, err := h.issue(c, cl, u.ID, amr)
	if err != nil {
		return err
	}
	for k, v := range tokens {
		body[k] = v
	}
	body["status"] = StatusComplete
	return c.json(http.StatusCreated, body)
}

type signUpInput struct {
	user     resource.User
	password string
	channel  string
	dest     string
	verify   bool // the destination is proven by verification_code
}

// signUpInput reads and checks the new account's fields.
func (c *call) signUpInput(ac resource.AuthConfig) (signUpInput, error) {
	var in signUpInput
	username := strings.TrimSpace(c.p.get("username"))
	if username == "" {
		return in, missing("username")
	}
	if resource.ValidateID(username) != nil {
		return in, badRequest("username must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' and '-'.")
	}
	in.password = c.p.get("password")
	if in.password == "" {
		return in, missing("password")
	}
	if err := ac.CheckNewPassword(in.password); err != nil {
		return in, badRequest(err.Error() + ".")
	}
	channel, dest, err := destinationParam(c.p.get("phone_number"), c.p.get("email"))
	if err != nil {
		return in, badRequest("Give phone_number or email (one of them), as the verification code was sent to.")
	}
	// A phone number is always proven; an address unless the AuthConfig
	// says signUp.verifyEmail: false.
	in.verify = channel == twofactor.MethodSMS || ac.SignUpVerifiesEmail()
	if in.verify && strings.TrimSpace(c.p.get("verification_code")) == "" {
		return in, missing("verification_code")
	}
	switch m := defaultMethodOf(ac); {
	case m == twofactor.MethodSMS && channel != twofactor.MethodSMS:
		return in, badRequest("This application turns on SMS codes for new accounts: sign up with phone_number.")
	case m == twofactor.MethodEmail && channel != twofactor.MethodEmail:
		return in, badRequest("This application turns on e-mail codes for new accounts: sign up with email.")
	}
	in.channel, in.dest = channel, dest
	in.user = resource.User{ResourceType: resource.TypeUser, ID: username}
	if channel == twofactor.MethodSMS {
		in.user.PhoneNumber, in.user.PhoneVerified = dest, true
	} else {
		in.user.Email, in.user.EmailVerified = dest, in.verify
	}
	given, family := strings.TrimSpace(c.p.get("given_name")), strings.TrimSpace(c.p.get("family_name"))
	if given != "" || family != "" {
		in.user.Name = &resource.HumanName{GivenName: given, FamilyName: family}
	}
	if err := in.user.Validate(c.r.Context(), resource.Options{}); err != nil {
		var ve *resource.ValidationError
		if errors.As(err, &ve) && len(ve.Problems) > 0 {
			return in, badRequest(ve.Problems[0].Path + ": " + ve.Problems[0].Message)
		}
		return in, badRequest("The account is not valid.")
	}
	return in, nil
}
