package fleet

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/sluicehq/sluice/agent/config"
)

// A plugin package is signed over its name and the sha256 of its content,
// after a fixed domain string, so that a signature made for one package
// cannot be replayed for another name or for any other use of the key:
//
//	"sluice-plugin-package-v1\x00" + name + "\x00" + sha256(content)
//
// The signature travels as the 64 raw bytes of the ed25519 signature (the
// OpAMP DownloadableFile.signature field); on disk beside the package it
// is base64 text (NAME.wasm.sig).
const signatureDomain = "sluice-plugin-package-v1\x00"

// Package verification errors, wrapped with the package name.
var (
	ErrUnsigned      = errors.New("package is not signed")
	ErrHashMismatch  = errors.New("content does not match the offered sha256")
	ErrBadSignature  = errors.New("signature does not verify with any trusted key")
	ErrNoTrustedKeys = errors.New("agent.opamp.trusted_keys is empty, so no package is trusted")
)

func signedMessage(name string, digest [sha256.Size]byte) []byte {
	msg := make([]byte, 0, len(signatureDomain)+len(name)+1+sha256.Size)
	msg = append(msg, signatureDomain...)
	msg = append(msg, name...)
	msg = append(msg, 0)
	return append(msg, digest[:]...)
}

// SignPackage returns the signature of the package name with content.
func SignPackage(key ed25519.PrivateKey, name string, content []byte) []byte {
	return ed25519.Sign(key, signedMessage(name, sha256.Sum256(content)))
}

// VerifyPackage checks that content hashes to wantSHA256 (when it is not
// nil) and that sig is a signature of name and content by one of trusted.
// The error says which check failed.
func VerifyPackage(trusted []ed25519.PublicKey, name string, content, wantSHA256, sig []byte) error {
	digest := sha256.Sum256(content)
	if wantSHA256 != nil && string(wantSHA256) != string(digest[:]) {
		return fmt.Errorf("package %s: %w (offered %x, got %x)", name, ErrHashMismatch, wantSHA256, digest)
	}
	if len(sig) == 0 {
		return fmt.Errorf("package %s: %w", name, ErrUnsigned)
	}
	if len(trusted) == 0 {
		return fmt.Errorf("package %s: %w", name, ErrNoTrustedKeys)
	}
	msg := signedMessage(name, digest)
	for _, k := range trusted {
		if len(sig) == ed25519.SignatureSize && ed25519.Verify(k, msg, sig) {
			return nil
		}
	}
	return fmt.Errorf("package %s: %w (%d keys tried)", name, ErrBadSignature, len(trusted))
}

// GenerateKey returns a new key pair as the text `sluice fleet keygen`
// prints: the public key for agent.opamp.trusted_keys and the private key
// (its 32-byte seed) for `sluice fleet sign`, both base64.
func GenerateKey() (public, private string, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", "", err
	}
	return base64.StdEncoding.EncodeToString(pub), base64.StdEncoding.EncodeToString(priv.Seed()), nil
}

// ParsePrivateKey decodes a private key as GenerateKey writes it.
func ParsePrivateKey(s string) (ed25519.PrivateKey, error) {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, errors.New("private key is not base64")
	}
	if len(raw) != ed25519.SeedSize {
		return nil, fmt.Errorf("private key decodes to %d bytes, an ed25519 seed has %d", len(raw), ed25519.SeedSize)
	}
	return ed25519.NewKeyFromSeed(raw), nil
}

// ParsePublicKey decodes a public key as GenerateKey writes it.
func ParsePublicKey(s string) (ed25519.PublicKey, error) { return config.ParsePublicKey(s) }

// EncodeSignature and DecodeSignature convert a signature to and from the
// text of a NAME.wasm.sig file.
func EncodeSignature(sig []byte) string { return base64.StdEncoding.EncodeToString(sig) + "\n" }

// DecodeSignature parses the text of a NAME.wasm.sig file.
func DecodeSignature(text []byte) ([]byte, error) {
	sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(text)))
	if err != nil {
		return nil, errors.New("signature is not base64")
	}
	if len(sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("signature decodes to %d bytes, an ed25519 signature has %d", len(sig), ed25519.SignatureSize)
	}
	return sig, nil
}
