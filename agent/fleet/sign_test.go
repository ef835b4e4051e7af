package fleet

import (
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"testing"
)

func mustKey(t *testing.T) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pubText, privText, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ParsePublicKey(pubText)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := ParsePrivateKey(privText)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

func TestVerifyPackage(t *testing.T) {
	pub, priv := mustKey(t)
	otherPub, otherPriv := mustKey(t)
	content := []byte("\x00asm\x01\x00\x00\x00 a plugin")
	sum := sha256.Sum256(content)
	good := SignPackage(priv, "order-parse", content)
	tampered := append([]byte(nil), content...)
	tampered[len(tampered)-1] ^= 1
	tamperedSum := sha256.Sum256(tampered)

	cases := []struct {
		name    string
		trusted []ed25519.PublicKey
		pkg     string
		content []byte
		hash    []byte
		sig     []byte
		want    error // nil: accepted
	}{
		{"good signature", []ed25519.PublicKey{pub}, "order-parse", content, sum[:], good, nil},
		{"good signature, second trusted key", []ed25519.PublicKey{otherPub, pub}, "order-parse", content, sum[:], good, nil},
		{"no hash offered still checks the signature", []ed25519.PublicKey{pub}, "order-parse", content, nil, good, nil},
		{"unsigned", []ed25519.PublicKey{pub}, "order-parse", content, sum[:], nil, ErrUnsigned},
		{"signed by a key not trusted", []ed25519.PublicKey{pub}, "order-parse", content, sum[:], SignPackage(otherPriv, "order-parse", content), ErrBadSignature},
		{"wrong key trusted", []ed25519.PublicKey{otherPub}, "order-parse", content, sum[:], good, ErrBadSignature},
		{"no trusted keys", nil, "order-parse", content, sum[:], good, ErrNoTrustedKeys},
		{"tampered content, offered hash of the original", []ed25519.PublicKey{pub}, "order-parse", tampered, sum[:], good, ErrHashMismatch},
		{"tampered content with its own hash, old signature", []ed25519.PublicKey{pub}, "order-parse", tampered, tamperedSum[:], good, ErrBadSignature},
		{"truncated content", []ed25519.PublicKey{pub}, "order-parse", content[:len(content)-3], nil, good, ErrBadSignature},
		{"truncated signature", []ed25519.PublicKey{pub}, "order-parse", content, sum[:], good[:40], ErrBadSignature},
		{"signature of another package name", []ed25519.PublicKey{pub}, "order-stats", content, sum[:], good, ErrBadSignature},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := VerifyPackage(tc.trusted, tc.pkg, tc.content, tc.hash, tc.sig)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestSignatureText(t *testing.T) {
	_, priv := mustKey(t)
	sig := SignPackage(priv, "p", []byte("x"))
	back, err := DecodeSignature([]byte(EncodeSignature(sig)))
	if err != nil || string(back) != string(sig) {
		t.Fatalf("round trip: %v", err)
	}
	for _, bad := range []string{"", "not base64!", "AAAA"} {
		if _, err := DecodeSignature([]byte(bad)); err == nil {
			t.Errorf("DecodeSignature(%q) accepted", bad)
		}
	}
	if _, err := ParsePrivateKey("AAAA"); err == nil {
		t.Error("short private key accepted")
	}
	if _, err := ParsePublicKey("AAAA"); err == nil {
		t.Error("short public key accepted")
	}
}

func FuzzDecodeSignature(f *testing.F) {
	f.Add([]byte("AAAA"))
	f.Add([]byte(EncodeSignature(make([]byte, 64))))
	f.Fuzz(func(t *testing.T, text []byte) {
		sig, err := DecodeSignature(text)
		if err == nil && len(sig) != ed25519.SignatureSize {
			t.Fatalf("accepted a %d-byte signature", len(sig))
		}
	})
}
