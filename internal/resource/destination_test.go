package resource

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

func TestSetVerifiedDestination(t *testing.T) {
	ctx := context.Background()
	for _, be := range gormstoretest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			st := be.Open(t)
			put := func(u User) {
				t.Helper()
				rec, err := ToStoreUser(u, "", nil)
				if err != nil {
					t.Fatal(err)
				}
				if _, _, err := st.PutUser(ctx, rec, 0); err != nil {
					t.Fatal(err)
				}
			}
			put(User{ID: "ann", Email: "ann@example.com", Name: &HumanName{GivenName: "Ann"}})
			put(User{ID: "bob", Email: "bob@example.com", PhoneNumber: "+14155550100", PhoneVerified: true})
			put(User{ID: "cy", PhoneNumber: "+14155550111"})

			t.Run("a phone number becomes verified in the columns and in the document", func(t *testing.T) {
				rec, err := SetVerifiedDestination(ctx, st, "ann", MethodSMS, "+14155550199")
				if err != nil {
					t.Fatal(err)
				}
				if rec.PhoneNumber != "+14155550199" || !rec.PhoneVerified || rec.Email != "ann@example.com" {
					t.Fatalf("record %+v", rec)
				}
				var doc User
				if err := json.Unmarshal(rec.Doc, &doc); err != nil {
					t.Fatal(err)
				}
				if doc.PhoneNumber != "+14155550199" || !doc.PhoneVerified || doc.Name == nil || doc.Name.GivenName != "Ann" {
					t.Fatalf("document %s", rec.Doc)
				}
			})
			t.Run("an e-mail address becomes the user's, verified", func(t *testing.T) {
				rec, err := SetVerifiedDestination(ctx, st, "cy", MethodEmail, "cy@example.com")
				if err != nil || rec.Email != "cy@example.com" || !rec.EmailVerified {
					t.Fatalf("%+v, %v", rec, err)
				}
			})
			for _, tc := range []struct {
				name, user, channel, dest string
			}{
				{"another account's verified phone number is refused", "ann", MethodSMS, "+14155550100"},
				{"another account's e-mail address is refused", "ann", MethodEmail, "bob@example.com"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					before, _ := st.GetUser(ctx, tc.user)
					_, err := SetVerifiedDestination(ctx, st, tc.user, tc.channel, tc.dest)
					if !errors.Is(err, ErrDestinationTaken) {
						t.Fatalf("err = %v", err)
					}
					after, _ := st.GetUser(ctx, tc.user)
					if after.Version != before.Version {
						t.Fatal("the refused change was written")
					}
				})
			}
			t.Run("an unverified number elsewhere does not hold the destination", func(t *testing.T) {
				if taken, err := DestinationTakenByOther(ctx, st, MethodSMS, "+14155550111", "bob"); err != nil || taken {
					t.Fatalf("taken %v, %v", taken, err)
				}
				if _, err := SetVerifiedDestination(ctx, st, "bob", MethodSMS, "+14155550111"); err != nil {
					t.Fatal(err)
				}
				if taken, err := DestinationTakenByOther(ctx, st, MethodSMS, "+14155550111", "bob"); err != nil || taken {
					t.Fatalf("the holder itself: taken %v, %v", taken, err)
				}
				if taken, err := DestinationTakenByOther(ctx, st, MethodSMS, "+14155550111", "cy"); err != nil || !taken {
					t.Fatalf("another user: taken %v, %v", taken, err)
				}
			})
			t.Run("a number several accounts verified is taken for each of them", func(t *testing.T) {
				for _, id := range []string{"dan", "eve"} {
					put(User{ID: id, PhoneNumber: "+14155550177", PhoneVerified: true})
				}
				for _, id := range []string{"dan", "eve", "ann"} {
					if taken, err := DestinationTakenByOther(ctx, st, MethodSMS, "+14155550177", id); err != nil || !taken {
						t.Fatalf("%s: taken %v, %v", id, taken, err)
					}
				}
			})
			t.Run("a missing user is not found", func(t *testing.T) {
				if _, err := SetVerifiedDestination(ctx, st, "nobody", MethodSMS, "+14155550122"); !errors.Is(err, store.ErrNotFound) {
					t.Fatalf("err = %v", err)
				}
			})
			t.Run("bindings differ by user, channel and destination", func(t *testing.T) {
				b := VerificationBinding("ann", MethodSMS, "+1")
				for _, other := range []string{
					VerificationBinding("bob", MethodSMS, "+1"),
					VerificationBinding("ann", MethodEmail, "+1"),
					VerificationBinding("ann", MethodSMS, "+2"),
				} {
					if other == b {
						t.Fatal("two uses share a binding")
					}
				}
			})
		})
	}
}
