package onetime

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"errors"
)

// What a token carries (Mint's data: a PKCE verifier, the email address
// being verified) is sealed with AES-256-GCM under a key derived from the
// raw token, which never reaches Redis: a reader of Redis learns neither
// the token nor its data, and whoever holds the token holds the key.

func sealKey(token []byte) []byte {
	h := sha256.New()
	h.Write([]byte("tiercache/onetime seal key\x00"))
	h.Write(token)
	return h.Sum(nil)
}

func seal(token []byte, purpose string, data []byte) []byte {
	if len(data) == 0 {
		return nil
	}
	block, _ := aes.NewCipher(sealKey(token)) // a 32-byte key never fails
	gcm, _ := cipher.NewGCM(block)
	out := make([]byte, gcm.NonceSize(), gcm.NonceSize()+len(data)+gcm.Overhead())
	_, _ = rand.Read(out) // crypto/rand.Read never fails (Go 1.24+).
	return gcm.Seal(out, out, data, []byte(purpose))
}

var errUnseal = errors.New("onetime: sealed data does not open")

func unseal(token []byte, purpose string, sealed []byte) ([]byte, error) {
	if len(sealed) == 0 {
		return nil, nil
	}
	block, _ := aes.NewCipher(sealKey(token))
	gcm, _ := cipher.NewGCM(block)
	if len(sealed) < gcm.NonceSize()+gcm.Overhead() {
		return nil, errUnseal
	}
	out, err := gcm.Open(nil, sealed[:gcm.NonceSize()], sealed[gcm.NonceSize():], []byte(purpose))
	if err != nil {
		return nil, errUnseal
	}
	return out, nil
}
