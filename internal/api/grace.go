package api

import (
	"errors"
	"net/http"

	"github.com/gatehouse/gatehouse/internal/signin"
)

// PathSignInEnrollSkip finishes a sign-in whose required enrolment is
// still within its grace period: {mfa_token, client_id, scope?}.
const PathSignInEnrollSkip = "/auth/sign-in/enroll/skip"

var errGraceOver = &apiError{Status: http.StatusForbidden, Code: "enrollment_required",
	Desc: "The grace period for setting up a second factor is over: enrol one to continue."}

func (h *Handler) enrollSkip(c *call) error {
	s, err := c.openSignIn()
	if err != nil {
		return err
	}
	res, err := h.SignIn.SkipEnrolment(c.r.Context(), s)
	switch {
	case errors.Is(err, signin.ErrGraceOver):
		return errGraceOver
	case errors.Is(err, signin.ErrInvalidTicket):
		return errInvalidMFAToken
	case err != nil:
		return err
	}
	return h.complete(c, s.Client, res.UserID, res.AMR, nil)
}
