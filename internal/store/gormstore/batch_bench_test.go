package gormstore_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

// benchToken is a client_credentials access token of the size the token
// endpoint stores: no subject, a session of a few hundred bytes.
func benchToken(signature string) store.OAuthRequest {
	now := time.Now().UTC()
	return store.OAuthRequest{
		Kind:          store.KindAccessToken,
		Signature:     signature,
		RequestID:     "req-" + signature,
		ClientID:      "svc",
		RequestedAt:   now,
		ExpiresAt:     now.Add(time.Hour),
		Active:        true,
		Scopes:        []string{"api"},
		GrantedScopes: []string{"api"},
		Form:          "grant_type=client_credentials",
		Session: []byte(`{"id_token_claims":{"jti":"","iss":"","sub":"","aud":null,"nonce":"","exp":"0001-01-01T00:00:00Z",` +
			`"iat":"0001-01-01T00:00:00Z","rat":"0001-01-01T00:00:00Z","auth_time":"0001-01-01T00:00:00Z","at_hash":"","acr":"",` +
			`"amr":null,"c_hash":"","ext":null},"headers":{"extra":{}},"expires_at":{"access_token":"` + now.Format(time.RFC3339Nano) +
			`"},"username":"","subject":"","client_id":"svc","grant_type":"client_credentials"}`),
	}
}

// BenchmarkCreateOAuthRequestParallel is the token endpoint's write on
// SQLite: many clients each storing a token outside any transaction.
func BenchmarkCreateOAuthRequestParallel(b *testing.B) {
	s := gormstoretest.OpenSQLite(b)
	var seq atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if err := s.CreateOAuthRequest(ctx, benchToken(fmt.Sprintf("sig-%043d", seq.Add(1)))); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkOAuthInsertBatchShapes compares the two ways a batch of tokens
// could be written under one turn of the writer lock: one multi-row INSERT,
// or BEGIN, one INSERT per row, COMMIT. ns/op is per row.
func BenchmarkOAuthInsertBatchShapes(b *testing.B) {
	for _, n := range []int{1, 8, 32, 64} {
		b.Run(fmt.Sprintf("multi-row INSERT of %d", n), func(b *testing.B) {
			s := gormstoretest.OpenSQLite(b)
			ctx := context.Background()
			seq := 0
			for b.Loop() {
				rs := make([]store.OAuthRequest, n)
				for i := range rs {
					seq++
					rs[i] = benchToken(fmt.Sprintf("sig-%043d", seq))
				}
				if err := s.CreateOAuthRequests(ctx, rs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/row")
		})
		b.Run(fmt.Sprintf("transaction of %d INSERTs", n), func(b *testing.B) {
			s := gormstoretest.OpenSQLite(b)
			ctx := context.Background()
			seq := 0
			for b.Loop() {
				err := s.InTx(ctx, func(ctx context.Context) error {
					for range n {
						seq++
						if err := s.CreateOAuthRequest(ctx, benchToken(fmt.Sprintf("sig-%043d", seq))); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/row")
		})
	}
}
