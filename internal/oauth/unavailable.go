package oauth

import (
	"errors"
	"strconv"

	"github.com/gatehouse/gatehouse/internal/store"
)

// retryAfter is the Retry-After of every 503 of these endpoints: the wait
// every surface advises when storage cannot serve.
var retryAfter = strconv.Itoa(int(store.RetryAfter.Seconds()))

// unavailable is this surface's one test for "answer 503 and let the client
// retry": a failure of the database (storageError marks every store error
// the endpoints pass through fosite), or storage that cannot serve now or
// a deadline that passed anywhere else (store.Unavailable).
func unavailable(err error) bool {
	var se *storageError
	return errors.As(err, &se) || store.Unavailable(err)
}
