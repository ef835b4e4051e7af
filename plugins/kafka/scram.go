package kafka

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// scramClient is the client side of SCRAM (RFC 5802) for sarama's
// SCRAM-SHA-256/512 SASL mechanisms, so no extra module is needed.
type scramClient struct {
	newHash    func() hash.Hash
	user, pass string
	nonce      string
	firstBare  string
	serverSig  []byte
	step       int
	done       bool
}

func newSCRAM(h func() hash.Hash) *scramClient { return &scramClient{newHash: h} }

func (c *scramClient) Begin(user, pass, authzID string) error {
	var raw [18]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return err
	}
	c.user, c.pass, c.nonce = user, pass, base64.RawStdEncoding.EncodeToString(raw[:])
	c.step, c.done = 0, false
	return nil
}

func (c *scramClient) Done() bool { return c.done }

func (c *scramClient) Step(challenge string) (string, error) {
	c.step++
	switch c.step {
	case 1:
		name := strings.NewReplacer("=", "=3D", ",", "=2C").Replace(c.user)
		c.firstBare = "n=" + name + ",r=" + c.nonce
		return "n,," + c.firstBare, nil
	case 2:
		attrs := scramAttrs(challenge)
		nonce, salt64, iter := attrs["r"], attrs["s"], attrs["i"]
		if !strings.HasPrefix(nonce, c.nonce) || len(nonce) == len(c.nonce) {
			return "", errors.New("scram: server nonce does not extend ours")
		}
		salt, err := base64.StdEncoding.DecodeString(salt64)
		if err != nil {
			return "", fmt.Errorf("scram: salt: %v", err)
		}
		n, err := strconv.Atoi(iter)
		if err != nil || n < 1 {
			return "", fmt.Errorf("scram: iteration count %q", iter)
		}
		salted, err := pbkdf2.Key(c.newHash, c.pass, salt, n, c.newHash().Size())
		if err != nil {
			return "", err
		}
		withoutProof := "c=biws,r=" + nonce
		authMsg := c.firstBare + "," + challenge + "," + withoutProof
		clientKey := c.hmac(salted, "Client Key")
		h := c.newHash()
		h.Write(clientKey)
		sig := c.hmac(h.Sum(nil), authMsg)
		for i := range clientKey {
			clientKey[i] ^= sig[i]
		}
		c.serverSig = c.hmac(c.hmac(salted, "Server Key"), authMsg)
		return withoutProof + ",p=" + base64.StdEncoding.EncodeToString(clientKey), nil
	case 3:
		attrs := scramAttrs(challenge)
		if e, ok := attrs["e"]; ok {
			return "", fmt.Errorf("scram: server refused: %s", e)
		}
		v, err := base64.StdEncoding.DecodeString(attrs["v"])
		if err != nil || subtle.ConstantTimeCompare(v, c.serverSig) != 1 {
			return "", errors.New("scram: server signature does not verify")
		}
		c.done = true
		return "", nil
	}
	return "", errors.New("scram: unexpected extra step")
}

func (c *scramClient) hmac(key []byte, msg string) []byte {
	m := hmac.New(c.newHash, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

func scramAttrs(s string) map[string]string {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok && len(k) == 1 {
			out[k] = v
		}
	}
	return out
}
