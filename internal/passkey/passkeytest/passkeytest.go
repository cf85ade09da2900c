// Package passkeytest is a software authenticator for tests: it answers
// the creation and request options Gatehouse sends, as a browser with a
// platform authenticator would (packed "none" attestation, ES256 keys,
// resident credentials, user verification), so Go tests can drive every
// passkey path without a browser. The end-to-end browser test uses
// Chromium's own virtual authenticator instead. Encoding uses the CBOR
// package the webauthn library itself uses; verification is all the
// library's.
package passkeytest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/go-webauthn/webauthn/protocol/webauthncbor"
)

var b64 = base64.RawURLEncoding

// Credential is one key pair the authenticator holds.
type Credential struct {
	ID         []byte
	Key        *ecdsa.PrivateKey
	UserHandle []byte
	RPID       string
	SignCount  uint32
}

// Authenticator answers WebAuthn options. Origin is what its "browser"
// puts in clientDataJSON. UserVerified sets the UV flag; NoCounter keeps
// the sign counter at zero, as most passkey providers do.
type Authenticator struct {
	Origin       string
	UserVerified bool
	NoCounter    bool
	BackupState  bool

	mu    sync.Mutex
	Creds []*Credential
}

type creationOptions struct {
	PublicKey struct {
		Challenge string `json:"challenge"`
		RP        struct {
			ID string `json:"id"`
		} `json:"rp"`
		User struct {
			ID string `json:"id"`
		} `json:"user"`
		Exclude []struct {
			ID string `json:"id"`
		} `json:"excludeCredentials"`
	} `json:"publicKey"`
}

type requestOptions struct {
	PublicKey struct {
		Challenge string `json:"challenge"`
		RPID      string `json:"rpId"`
		Allow     []struct {
			ID string `json:"id"`
		} `json:"allowCredentials"`
	} `json:"publicKey"`
}

func (a *Authenticator) flags(attested bool) byte {
	f := byte(0x01) // UP
	if a.UserVerified {
		f |= 0x04
	}
	f |= 0x08 // BE: a synced passkey
	if a.BackupState {
		f |= 0x10
	}
	if attested {
		f |= 0x40
	}
	return f
}

func (a *Authenticator) clientData(typ, challenge string) []byte {
	b, _ := json.Marshal(map[string]any{"type": typ, "challenge": challenge, "origin": a.Origin, "crossOrigin": false})
	return b
}

// Create answers creation options with a new credential (the JSON a
// browser's PublicKeyCredential.toJSON() gives).
func (a *Authenticator) Create(options []byte) ([]byte, *Credential, error) {
	var o creationOptions
	if err := json.Unmarshal(options, &o); err != nil {
		return nil, nil, fmt.Errorf("creation options: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, ex := range o.PublicKey.Exclude {
		for _, c := range a.Creds {
			if b64.EncodeToString(c.ID) == ex.ID {
				return nil, nil, fmt.Errorf("InvalidStateError: credential %s is excluded", ex.ID)
			}
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	handle, err := b64.DecodeString(o.PublicKey.User.ID)
	if err != nil {
		return nil, nil, fmt.Errorf("user id: %w", err)
	}
	c := &Credential{ID: id, Key: key, UserHandle: handle, RPID: o.PublicKey.RP.ID}
	if !a.NoCounter {
		c.SignCount = 1
	}
	cose, err := webauthncbor.Marshal(map[int]any{1: 2, 3: -7, -1: 1, -2: pad32(key.X.Bytes()), -3: pad32(key.Y.Bytes())})
	if err != nil {
		return nil, nil, err
	}
	rpHash := sha256.Sum256([]byte(c.RPID))
	auth := append([]byte{}, rpHash[:]...)
	auth = append(auth, a.flags(true))
	auth = binary.BigEndian.AppendUint32(auth, c.SignCount)
	auth = append(auth, make([]byte, 16)...) // AAGUID
	auth = binary.BigEndian.AppendUint16(auth, uint16(len(id)))
	auth = append(auth, id...)
	auth = append(auth, cose...)
	att, err := webauthncbor.Marshal(map[string]any{"fmt": "none", "attStmt": map[string]any{}, "authData": auth})
	if err != nil {
		return nil, nil, err
	}
	out, err := json.Marshal(map[string]any{
		"id": b64.EncodeToString(id), "rawId": b64.EncodeToString(id), "type": "public-key",
		"authenticatorAttachment": "platform",
		"response": map[string]any{
			"clientDataJSON":    b64.EncodeToString(a.clientData("webauthn.create", o.PublicKey.Challenge)),
			"attestationObject": b64.EncodeToString(att),
			"transports":        []string{"internal", "hybrid"},
		},
		"clientExtensionResults": map[string]any{"credProps": map[string]any{"rk": true}},
	})
	if err != nil {
		return nil, nil, err
	}
	a.Creds = append(a.Creds, c)
	return out, c, nil
}

// Get answers request options with an assertion of the first held
// credential the options allow (any, for a discoverable request).
func (a *Authenticator) Get(options []byte) ([]byte, error) {
	var o requestOptions
	if err := json.Unmarshal(options, &o); err != nil {
		return nil, fmt.Errorf("request options: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range a.Creds {
		if c.RPID != o.PublicKey.RPID {
			continue
		}
		ok := len(o.PublicKey.Allow) == 0
		for _, al := range o.PublicKey.Allow {
			ok = ok || al.ID == b64.EncodeToString(c.ID)
		}
		if ok {
			if !a.NoCounter {
				c.SignCount++
			}
			return a.Assert(c, o.PublicKey.Challenge, c.SignCount)
		}
	}
	return nil, fmt.Errorf("NotAllowedError: no credential for %s", o.PublicKey.RPID)
}

// Assert signs an assertion of c for challenge with the given counter,
// whatever the options said (tests forge answers with it).
func (a *Authenticator) Assert(c *Credential, challenge string, count uint32) ([]byte, error) {
	rpHash := sha256.Sum256([]byte(c.RPID))
	auth := append([]byte{}, rpHash[:]...)
	auth = append(auth, a.flags(false))
	auth = binary.BigEndian.AppendUint32(auth, count)
	cd := a.clientData("webauthn.get", challenge)
	cdHash := sha256.Sum256(cd)
	digest := sha256.Sum256(append(append([]byte{}, auth...), cdHash[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, c.Key, digest[:])
	if err != nil {
		return nil, err
	}
	return json.Marshal(map[string]any{
		"id": b64.EncodeToString(c.ID), "rawId": b64.EncodeToString(c.ID), "type": "public-key",
		"authenticatorAttachment": "platform",
		"response": map[string]any{
			"clientDataJSON":    b64.EncodeToString(cd),
			"authenticatorData": b64.EncodeToString(auth),
			"signature":         b64.EncodeToString(sig),
			"userHandle":        b64.EncodeToString(c.UserHandle),
		},
		"clientExtensionResults": map[string]any{},
	})
}

// Challenge reads the challenge out of options.
func Challenge(options []byte) string {
	var o requestOptions
	_ = json.Unmarshal(options, &o)
	return o.PublicKey.Challenge
}

func pad32(b []byte) []byte {
	if len(b) >= 32 {
		return b
	}
	return append(make([]byte, 32-len(b)), b...)
}
