package web

// Enrolment grace on the hosted pages: the in-login enrolment of a
// required second factor says how long it may still wait and offers
// "Not now" while the engine's grace lasts (signin.Engine.Grace).

import (
	"errors"
	"net/http"
	"time"

	"github.com/gatehouse/gatehouse/internal/signin"
)

// PathLoginTwoFactorSkip takes the "Not now" of an in-login enrolment.
const PathLoginTwoFactorSkip = "/auth/login/two-factor/skip"

var msgGraceOver = tr("The time to set up two-step verification later is over. Set it up now to continue.")

// graceView is the enrolment's "you may skip this" line.
type graceView struct {
	Days  int // whole days left, rounded up
	Until string
}

func (h *Handler) graceView(r *http.Request, s *signin.SignIn) (*graceView, error) {
	if s.TwoFactor.Enabled {
		return nil, nil
	}
	ends, ok, err := h.SignIn.Grace(r.Context(), s)
	if err != nil || !ok {
		return nil, err
	}
	days := int((ends.Sub(h.now()) + 24*time.Hour - 1) / (24 * time.Hour))
	return &graceView{Days: days, Until: ends.UTC().Format(dateLayout)}, nil
}

// skipEnrolmentSubmit finishes the sign-in without the required second
// factor while its grace lasts; after it, the enrolment shows again.
func (h *Handler) skipEnrolmentSubmit(w http.ResponseWriter, r *http.Request) {
	sess := h.loadSession(w, r)
	if sess == nil {
		return
	}
	if !h.parseForm(w, r, sess.ValidCSRF) {
		return
	}
	p, user, f, s, ok := h.secondFactorStep(w, r, sess)
	if !ok {
		return
	}
	if p.Enrolled || sess.PendingStepUp() != nil {
		http.Redirect(w, r, PathLoginTwoFactor, http.StatusSeeOther)
		return
	}
	res, err := h.SignIn.SkipEnrolment(r.Context(), s)
	if errors.Is(err, signin.ErrGraceOver) {
		h.renderFlowEnrolment(w, r, sess, user, f, s, msgGraceOver)
		return
	}
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	h.finishLogin(w, r, sess, user, res.AMR, "", p.PasswordAt)
}
