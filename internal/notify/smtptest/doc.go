// Package smtptest runs a real SMTP server (github.com/emersion/go-smtp) on
// a loopback port for tests, and keeps every message it accepts so a test
// can read what was delivered. Only tests import it.
package smtptest
