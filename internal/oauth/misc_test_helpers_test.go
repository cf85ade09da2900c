package oauth

import (
	"strconv"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

func itoa(n int) string { return strconv.Itoa(n) }

func clientWithPKCE() resource.Client {
	return resource.Client{
		ID:         "strict",
		GrantTypes: []string{"authorization_code"},
		Auth: &resource.ClientAuth{AuthorizationCode: &resource.GrantSettings{
			RedirectURI: resource.StringList{webRedirect},
			PKCE:        true,
		}},
	}
}

var gormstoreOpen = gormstoretest.Open

var backendsFor = gormstoretest.Backends

// backendName is the backend sub-test name forEachBackend put in t.Name().
func backendName(t *testing.T) string {
	parts := strings.Split(t.Name(), "/")
	if len(parts) < 2 {
		return ""
	}
	return parts[1]
}
