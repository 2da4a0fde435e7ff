package collect

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"sort"
	"strings"
)

// Safe mode (安全模式) of message push: WeChat encrypts the message with the app's
// EncodingAESKey and signs the ciphertext, so the body cannot be swapped under a
// captured URL. The format, as WeChat's sample code (WXBizMsgCrypt) and the SDKs
// implement it:
//
//	key        = base64(EncodingAESKey + "="), 32 bytes; IV = key[:16]
//	plaintext  = random(16) | len(message) as 4 bytes big-endian | message | appid
//	Encrypt    = base64(AES-256-CBC(key, IV, PKCS#7(plaintext, 32-byte blocks)))
//	msg_signature = hex(sha1(sort(token, timestamp, nonce, Encrypt) joined))
//
// The envelope is <xml><Encrypt>…</Encrypt></xml> or {"Encrypt": …}, and the message
// inside is XML or JSON as chosen in the console.
//
// https://developers.weixin.qq.com/miniprogram/dev/framework/server-ability/message-push.html
const pushBlock = 32 // WeChat pads to 32 bytes, not AES's 16

// errDecrypt is every failure to open a safe-mode envelope: one answer, so a prober
// learns nothing about which check failed.
var errDecrypt = errors.New("collect: safe-mode push does not decrypt for this app")

// MsgSignature is the safe-mode signature over token, timestamp, nonce and the Encrypt
// field.
func MsgSignature(token, timestamp, nonce, encrypt string) string {
	parts := []string{token, timestamp, nonce, encrypt}
	sort.Strings(parts)
	sum := sha1.Sum([]byte(strings.Join(parts, "")))
	return hex.EncodeToString(sum[:])
}

// checkMsgSignature compares got with the expected msg_signature in constant time.
func checkMsgSignature(token, timestamp, nonce, encrypt, got string) bool {
	want := MsgSignature(token, timestamp, nonce, encrypt)
	return subtle.ConstantTimeCompare([]byte(want), []byte(strings.ToLower(got))) == 1
}

// EncryptPush seals message for appID the way WeChat does in safe mode, with random as
// the 16 leading random bytes. It is the inverse of decryptPush, for tests and local
// stand-ins of WeChat.
func EncryptPush(key []byte, appID string, message, random []byte) (string, error) {
	if len(key) != 32 || len(random) != 16 {
		return "", errors.New("collect: encrypt push: want a 32-byte key and 16 random bytes")
	}
	n := 20 + len(message) + len(appID)
	pad := pushBlock - n%pushBlock
	plain := make([]byte, 0, n+pad)
	plain = append(plain, random...)
	plain = binary.BigEndian.AppendUint32(plain, uint32(len(message)))
	plain = append(plain, message...)
	plain = append(plain, appID...)
	for range pad {
		plain = append(plain, byte(pad))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return "", err
	}
	cipher.NewCBCEncrypter(block, key[:16]).CryptBlocks(plain, plain)
	return base64.StdEncoding.EncodeToString(plain), nil
}

// decryptPush opens a safe-mode Encrypt field and returns the message inside, checking
// the padding, the length prefix and that the trailing appid is appID's (a message
// sealed for another app with the same key is not this app's). Any failure is
// errDecrypt.
func decryptPush(key []byte, appID, encrypt string) ([]byte, error) {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(encrypt))
	if err != nil || len(raw) == 0 || len(raw)%aes.BlockSize != 0 {
		return nil, errDecrypt
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, errDecrypt
	}
	plain := make([]byte, len(raw))
	cipher.NewCBCDecrypter(block, key[:16]).CryptBlocks(plain, raw)
	pad := int(plain[len(plain)-1])
	if pad < 1 || pad > pushBlock || pad > len(plain) {
		return nil, errDecrypt
	}
	for _, b := range plain[len(plain)-pad:] {
		if int(b) != pad {
			return nil, errDecrypt
		}
	}
	plain = plain[:len(plain)-pad]
	if len(plain) < 20 {
		return nil, errDecrypt
	}
	size := binary.BigEndian.Uint32(plain[16:20])
	if uint64(size) > uint64(len(plain)-20) {
		return nil, errDecrypt
	}
	msg, app := plain[20:20+size], plain[20+size:]
	if subtle.ConstantTimeCompare(app, []byte(appID)) != 1 {
		return nil, errDecrypt
	}
	return msg, nil
}
