// Package audit records security-relevant events: each one is stored through
// the Store (so admins can list it) and logged with slog. Event details never
// carry secrets.
package audit
