package api

import (
	"github.com/gatehouse/gatehouse/internal/signin"
)

// The sign-in API serves the engine's factors (package signin): these
// names keep the API's vocabulary for the programs that embed it.
type (
	// Factor is a second factor of the engine's registry (signin.Factor).
	Factor   = signin.Factor
	SignIn   = signin.SignIn
	Offer    = signin.Offer
	Prepared = signin.Prepared
	Proof    = signin.Proof
)

// Strategies of the built-in factors and destinations of the code factors.
const (
	StrategyTOTP       = signin.StrategyTOTP
	StrategyPhoneCode  = signin.StrategyPhoneCode
	StrategyEmailCode  = signin.StrategyEmailCode
	StrategyBackupCode = signin.StrategyBackupCode
	DestinationPhone   = signin.DestinationPhone
	DestinationEmail   = signin.DestinationEmail
)

// Errors a Factor returns.
var (
	ErrInvalidCode   = signin.ErrInvalidCode
	ErrNotPreparable = signin.ErrNotPreparable
	ErrNotOffered    = signin.ErrNotOffered
	ErrTooManySends  = signin.ErrTooManySends
)
