package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"strings"
	"testing"
)

// Every refusal here happens before the tool sends a single request.
func TestBadInvocationsAreRefusedBeforeAnyLoad(t *testing.T) {
	noEnv := func(string) string { return "" }
	tests := []struct {
		name string
		args []string
		env  func(string) string
		want string
	}{
		{"a remote server without --allow-remote", []string{"--url", "http://192.0.2.1:8080", "--admin-password", "x"}, noEnv, "--allow-remote"},
		{"an unknown scenario", []string{"--admin-password", "x", "--scenarios", "token-cc,lgoin"}, noEnv, `unknown scenario "lgoin"`},
		{"no admin password in flags or environment", nil, noEnv, "admin"},
		{"argon2 parallelism 0", []string{"--admin-password", "x", "--argon-p", "0"}, noEnv, "--argon-p"},
		{"a stray argument", []string{"--admin-password", "x", "login"}, noEnv, "unexpected arguments"},
		{"a negative duration", []string{"--duration", "-1s"}, func(k string) string {
			if k == "GATEHOUSE_ADMIN_PASSWORD" {
				return "from-env"
			}
			return ""
		}, "--duration"},
	}
	for _, tc := range tests {
		t.Run(tc.name+" is refused", func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(context.Background(), tc.args, &out, &errOut, tc.env)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.want)
			}
			if out.Len() != 0 {
				t.Fatalf("printed a report: %s", out.String())
			}
		})
	}
}

func TestHelpListsTheScenarios(t *testing.T) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"-h"}, &out, &errOut, func(string) string { return "" })
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{"token-cc-jwt", "login-password", "--pid", "--allow-remote", "--json"} {
		if !strings.Contains(errOut.String(), strings.TrimPrefix(want, "-")) {
			t.Errorf("help lacks %q:\n%s", want, errOut.String())
		}
	}
}
