package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// state is what a run must remember for the next one against the same
// server: the server never shows a secret again, so re-using what exists
// needs a copy here. The file is written 0600; it holds only credentials of
// the bench's own throwaway clients and users.
type state struct {
	Server string `json:"server"`
	Prefix string `json:"prefix"`
	// Password of every seeded user; PasswordHash is its PHC as seeded
	// with passwordHash (empty when the users were seeded with password).
	Password     string `json:"password"`
	PasswordHash string `json:"passwordHash,omitempty"`
	// SeededUsers is how many password-only users are known to exist
	// with Password.
	SeededUsers int                   `json:"seededUsers"`
	Clients     map[string]string     `json:"clients"` // client id → secret
	TOTP        map[string]*totpState `json:"totp"`    // user id → enrolment
}

type totpState struct {
	Secret     string    `json:"secret"`
	EnrolledAt time.Time `json:"enrolledAt"`
	// LastStep is the newest TOTP step whose code the server accepted (or
	// may have accepted) for this user: the next login needs a later one.
	LastStep int64 `json:"lastStep"`
}

// defaultStatePath is <user cache dir>/gatehouse-bench/<host_port>-<prefix>.json.
func defaultStatePath(serverURL, prefix string) (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	host := serverURL
	if i := strings.Index(host, "://"); i >= 0 {
		host = host[i+3:]
	}
	host = strings.NewReplacer(":", "_", "/", "_", "[", "", "]", "").Replace(host)
	return filepath.Join(dir, "gatehouse-bench", host+"-"+prefix+".json"), nil
}

// loadState reads path; a missing file, or one for another server or
// prefix, is a fresh state.
func loadState(path, server, prefix string) (*state, error) {
	fresh := &state{Server: server, Prefix: prefix, Clients: map[string]string{}, TOTP: map[string]*totpState{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fresh, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state %s: %w", path, err)
	}
	var s state
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("read state %s: %w (delete it to start over)", path, err)
	}
	if s.Server != server || s.Prefix != prefix {
		return fresh, nil
	}
	if s.Clients == nil {
		s.Clients = map[string]string{}
	}
	if s.TOTP == nil {
		s.TOTP = map[string]*totpState{}
	}
	return &s, nil
}

// save writes the state atomically with mode 0600.
func (s *state) save(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	b, err := json.MarshalIndent(s, "", " ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".state-*")
	if err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write state: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}
