package oauth

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v3"

	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

// FuzzDPoPProof sends arbitrary DPoP headers to the proof check: it never
// panics, and every refusal is a DPoP error (invalid_dpop_proof or
// use_dpop_nonce), which the endpoints answer with 400 or 401.
func FuzzDPoPProof(f *testing.F) {
	e := newEnv(f, gormstoretest.Open(f))
	key := newClientKey(f, jose.ES256, "")
	nonce := e.p.dpopNonce(e.clock.Now())
	good := key.proof(f, dpopClaims("POST", PathToken, nonce, e.clock.Now()), dpopTyp)
	parts := strings.Split(good, ".")
	for _, s := range []string{good, parts[0] + "." + parts[1] + ".", parts[0] + ".." + parts[2], "a.b.c", "..", "",
		"eyJhbGciOiJub25lIiwidHlwIjoiZHBvcCtqd3QifQ.e30.", strings.Repeat("A", 9000),
		key.proof(f, map[string]any{"jti": 1, "htm": []int{1}, "htu": nil, "iat": "x"}, dpopTyp)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		r := httptest.NewRequest("POST", testIssuer+PathToken, nil)
		r.Header.Set("DPoP", header)
		_, err := e.p.checkDPoP(context.Background(), r, testIssuer+PathToken, "")
		var de *dpopError
		if err != nil && !errors.As(err, &de) {
			t.Fatalf("%q: refused with %T %v, not a DPoP error", header, err, err)
		}
	})
}
