package signin_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/gatehouse/gatehouse/internal/signin"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

func TestPasswordless(t *testing.T) {
	for _, b := range gormstoretest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			tests := []struct {
				name     string
				verify   func(context.Context) ([]string, error)
				wantErr  error
				wantAMR  []string
				failures int
			}{
				{"a passkey with user verification is two factors and phishing-resistant",
					func(context.Context) ([]string, error) { return []string{"hwk", "user"}, nil }, nil, []string{"hwk", "user", "mfa"}, 0},
				{"a passkey without user verification is one factor and refused",
					func(context.Context) ([]string, error) { return []string{"hwk"}, nil }, signin.ErrInvalidCode, nil, 1},
				{"a refused answer counts on the user's attempt counter",
					func(context.Context) ([]string, error) { return nil, signin.ErrInvalidCode }, signin.ErrInvalidCode, nil, 1},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					e := newEnv(t, b.Open(t))
					u := e.user(t, "pl-user")
					res, err := e.eng.Passwordless(ctx, signin.PasswordlessInput{User: u, Strategy: "passkey", Verify: tc.verify})
					if !errors.Is(err, tc.wantErr) {
						t.Fatalf("err = %v, want %v", err, tc.wantErr)
					}
					if tc.wantErr == nil {
						if !slices.Equal(res.AMR, tc.wantAMR) || res.ACR != signin.ACRPhishingResistant || res.UserID != u.ID || !res.AuthTime.Equal(e.clock.Now()) {
							t.Errorf("result = %+v", res)
						}
					}
					tf, err := e.st.GetTwoFactor(ctx, u.ID)
					if err != nil || tf.Failures != tc.failures {
						t.Errorf("attempt counter = %+v, %v; want %d failures", tf, err, tc.failures)
					}
				})
			}

			t.Run("five refusals lock the user out of a passwordless sign-in too", func(t *testing.T) {
				e := newEnv(t, b.Open(t))
				u := e.user(t, "pl-locked")
				wrong := func(context.Context) ([]string, error) { return nil, signin.ErrInvalidCode }
				for range 5 {
					if _, err := e.eng.Passwordless(ctx, signin.PasswordlessInput{User: u, Strategy: "passkey", Verify: wrong}); !errors.Is(err, signin.ErrInvalidCode) {
						t.Fatal(err)
					}
				}
				asked := false
				_, err := e.eng.Passwordless(ctx, signin.PasswordlessInput{User: u, Strategy: "passkey", Verify: func(context.Context) ([]string, error) {
					asked = true
					return []string{"hwk", "user"}, nil
				}})
				if !errors.Is(err, signin.ErrInvalidCode) || asked {
					t.Fatalf("a locked user: err %v, verified %v", err, asked)
				}
			})
		})
	}
}
