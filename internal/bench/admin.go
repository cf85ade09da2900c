package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
)

// adminAPI talks to Gatehouse's resource API with HTTP Basic.
type adminAPI struct {
	base, user, pass string
	client           *http.Client
}

func (a *adminAPI) send(ctx context.Context, method, path string, body any) (response, error) {
	var rd *bytes.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return response{}, fmt.Errorf("encode %s: %w", path, err)
		}
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return response{}, err
	}
	req.SetBasicAuth(a.user, a.pass)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return do(a.client, req, method+" "+path)
}

// put creates or replaces a resource and fails unless the server took it.
func (a *adminAPI) put(ctx context.Context, typ, id string, body any) error {
	path := "/" + typ + "/" + url.PathEscape(id)
	r, err := a.send(ctx, http.MethodPut, path, body)
	if err != nil {
		return err
	}
	if r.status != http.StatusOK && r.status != http.StatusCreated {
		return fmt.Errorf("PUT %s: %w", path, httpFailure(r.status, "admin API", r.body))
	}
	return nil
}

// get reads a resource into out; found is false on 404.
func (a *adminAPI) get(ctx context.Context, typ, id string, out any) (found bool, err error) {
	path := "/" + typ + "/" + url.PathEscape(id)
	r, err := a.send(ctx, http.MethodGet, path, nil)
	if err != nil {
		return false, err
	}
	switch r.status {
	case http.StatusNotFound:
		return false, nil
	case http.StatusOK:
	default:
		return false, fmt.Errorf("GET %s: %w", path, httpFailure(r.status, "admin API", r.body))
	}
	if out != nil {
		if err := json.Unmarshal(r.body, out); err != nil {
			return true, fmt.Errorf("GET %s: decode: %w", path, err)
		}
	}
	return true, nil
}
