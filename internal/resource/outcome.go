package resource

import (
	"errors"
	"strings"
)

// Issue codes (FHIR IssueType) used in OperationOutcome issues.
const (
	CodeInvalid      = "invalid"       // a value breaks a rule
	CodeStructure    = "structure"     // unknown field, wrong type, unparseable
	CodeRequired     = "required"      // a required value is missing
	CodeValue        = "value"         // a value is not one of the allowed ones
	CodeTooLong      = "too-long"      // a value or the body is too long
	CodeSecurity     = "security"      // refused for safety (private webhook address, forbidden scheme)
	CodeConflict     = "conflict"      // version mismatch, resource in use
	CodeDuplicate    = "duplicate"     // a unique value is already taken
	CodeNotFound     = "not-found"     // no such resource
	CodeLogin        = "login"         // authentication required or failed
	CodeForbidden    = "forbidden"     // authenticated but not allowed
	CodeTooCostly    = "too-costly"    // body too large, too many attempts
	CodeNotSupported = "not-supported" // media type or operation not supported
	CodeException    = "exception"     // a server-side failure
	CodeTransient    = "transient"     // storage unavailable or the server busy: retry after Retry-After
)

// Problem is one finding about a resource: where (a field path such as
// twoFactor.webhook.timeout), what kind (an issue code) and why.
type Problem struct {
	Path    string
	Code    string
	Message string
}

// ValidationError lists everything wrong with a resource. The admin API
// answers it with 422 and one OperationOutcome issue per problem.
type ValidationError struct {
	Problems []Problem
}

func (e *ValidationError) Error() string {
	parts := make([]string, 0, len(e.Problems))
	for _, p := range e.Problems {
		if p.Path != "" {
			parts = append(parts, p.Path+": "+p.Message)
		} else {
			parts = append(parts, p.Message)
		}
	}
	return "invalid resource: " + strings.Join(parts, "; ")
}

// Invalid returns a ValidationError with a single problem.
func Invalid(path, code, message string) *ValidationError {
	return &ValidationError{Problems: []Problem{{Path: path, Code: code, Message: message}}}
}

// problems collects findings during decoding and validation.
type problems struct{ list []Problem }

func (p *problems) add(path, code, msg string) {
	if len(p.list) < maxProblems {
		p.list = append(p.list, Problem{Path: path, Code: code, Message: msg})
	}
}

func (p *problems) full() bool { return len(p.list) >= maxProblems }

func (p *problems) err() error {
	if len(p.list) == 0 {
		return nil
	}
	return &ValidationError{Problems: p.list}
}

// OperationOutcome is the FHIR-style error body of the admin API.
type OperationOutcome struct {
	ResourceType string  `json:"resourceType" yaml:"resourceType"`
	Issue        []Issue `json:"issue" yaml:"issue"`
}

// Issue is one entry of an OperationOutcome. Expression holds field paths.
type Issue struct {
	Severity    string   `json:"severity" yaml:"severity"`
	Code        string   `json:"code" yaml:"code"`
	Diagnostics string   `json:"diagnostics,omitempty" yaml:"diagnostics,omitempty"`
	Expression  []string `json:"expression,omitempty" yaml:"expression,omitempty"`
}

// NewOutcome returns an outcome with one error issue.
func NewOutcome(code, diagnostics string, expression ...string) OperationOutcome {
	is := Issue{Severity: "error", Code: code, Diagnostics: diagnostics}
	if len(expression) > 0 && expression[0] != "" {
		is.Expression = expression
	}
	return OperationOutcome{ResourceType: "OperationOutcome", Issue: []Issue{is}}
}

// Outcome turns the problems into one issue each.
func (e *ValidationError) Outcome() OperationOutcome {
	o := OperationOutcome{ResourceType: "OperationOutcome", Issue: make([]Issue, 0, len(e.Problems))}
	for _, p := range e.Problems {
		is := Issue{Severity: "error", Code: p.Code, Diagnostics: p.Message}
		if is.Code == "" {
			is.Code = CodeInvalid
		}
		if p.Path != "" {
			is.Expression = []string{p.Path}
		}
		o.Issue = append(o.Issue, is)
	}
	return o
}

// Outcome describes the syntax error as a single structure issue.
func (e *SyntaxError) Outcome() OperationOutcome {
	return NewOutcome(CodeStructure, e.Error(), e.Path)
}

// OutcomeFromError builds the outcome for a decoding or validation error.
// ok is false for other errors, which callers report as a server failure
// without echoing their text.
func OutcomeFromError(err error) (o OperationOutcome, ok bool) {
	var ve *ValidationError
	if errors.As(err, &ve) {
		return ve.Outcome(), true
	}
	var se *SyntaxError
	if errors.As(err, &se) {
		return se.Outcome(), true
	}
	if errors.Is(err, ErrTooLarge) {
		return NewOutcome(CodeTooCostly, "the body exceeds 1 MiB"), true
	}
	return OperationOutcome{}, false
}
