package config

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/gatehouse/gatehouse/internal/secret"
)

const (
	masterKeyFile = "master.key"
	adminHashFile = "admin-password.hash"
)

// DecodeMasterKey accepts 32 bytes as base64 (standard or URL, padded or
// not) or as 64 hex characters.
func DecodeMasterKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if b, err := hex.DecodeString(s); err == nil && len(b) == secret.MasterKeyLen {
		return b, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == secret.MasterKeyLen {
			return b, nil
		}
	}
	return nil, errors.New("masterKey: want 32 bytes as base64 or 64 hex characters")
}

// EnsureDataDir creates the data directory (0700).
func (c *Config) EnsureDataDir() error {
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir %q: %w", c.DataDir, err)
	}
	return nil
}

// LoadMasterKey returns the configured master key, or the one in the data
// dir, generating it (0600) on the first start.
func (c *Config) LoadMasterKey(logger *slog.Logger) ([]byte, error) {
	if c.MasterKey != "" {
		return DecodeMasterKey(c.MasterKey)
	}
	path := filepath.Join(c.DataDir, masterKeyFile)
	raw, err := os.ReadFile(path)
	if err == nil {
		k, err := DecodeMasterKey(string(raw))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		return k, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read master key: %w", err)
	}
	k := secret.RandomBytes(secret.MasterKeyLen)
	if err := writeNew(path, base64.StdEncoding.EncodeToString(k)+"\n"); err != nil {
		return nil, err
	}
	logger.Info("generated master key", "path", path)
	return k, nil
}

// AdminPasswordHash returns the argon2id hash of the bootstrap admin
// password. A configured password is hashed in memory. Without one, a hash
// kept in the data dir is used; on the very first start a password is
// generated, its hash saved (0600), and the password returned once in
// generated so the caller can print it.
func (c *Config) AdminPasswordHash(hash func(string) (string, error)) (phc, generated string, err error) {
	if c.Admin.Password != "" {
		phc, err = hash(c.Admin.Password)
		return phc, "", err
	}
	path := filepath.Join(c.DataDir, adminHashFile)
	raw, err := os.ReadFile(path)
	if err == nil {
		phc = strings.TrimSpace(string(raw))
		if !secret.IsPHC(phc) {
			return "", "", fmt.Errorf("%s does not hold an argon2id hash", path)
		}
		return phc, "", nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", "", fmt.Errorf("read admin password hash: %w", err)
	}
	generated = secret.RandomBase32(15)
	if phc, err = hash(generated); err != nil {
		return "", "", err
	}
	if err := writeNew(path, phc+"\n"); err != nil {
		return "", "", err
	}
	return phc, generated, nil
}

// writeNew creates path with mode 0600, refusing to overwrite.
func writeNew(path, content string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

// ParseLevel maps a level name to slog.Level.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("log.level %q: want debug, info, warn or error", s)
	}
	return l, nil
}
