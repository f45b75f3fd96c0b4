"""Encryption of personal data at rest, per case (crypto-shredding), and sealed disclosures.

Envelope encryption with PyNaCl (libsodium, XSalsa20-Poly1305 secret boxes):
- every case gets its own random 32-byte **data key**; the case's personal data is stored only as
  a secret box under that key;
- the data key is stored only wrapped (a secret box) under the **master key** from the settings;
- erasure deletes the wrapped data key: the stored ciphertext can then never be opened again,
  by anyone, including from backups taken before the erasure.
Disclosures to an agency are libsodium **sealed boxes** for its X25519 public key: only the
holder of the matching private key can open them, and the sender cannot either.
"""

from __future__ import annotations

import base64
import hashlib

import nacl.utils
from nacl.exceptions import CryptoError
from nacl.public import PublicKey, SealedBox
from nacl.secret import SecretBox


class KeyDestroyed(Exception):
    """The case's data key was destroyed (erasure): its personal data is gone for good."""


def new_data_key() -> bytes:
    return nacl.utils.random(SecretBox.KEY_SIZE)


def wrap_key(master_key: bytes, data_key: bytes) -> bytes:
    return bytes(SecretBox(master_key).encrypt(data_key))


def unwrap_key(master_key: bytes, wrapped: bytes | None) -> bytes:
    if wrapped is None:
        raise KeyDestroyed("the case's data key was destroyed")
    return bytes(SecretBox(master_key).decrypt(wrapped))


def encrypt(data_key: bytes, plaintext: bytes) -> bytes:
    return bytes(SecretBox(data_key).encrypt(plaintext))


def decrypt(data_key: bytes, ciphertext: bytes) -> bytes:
    try:
        return bytes(SecretBox(data_key).decrypt(ciphertext))
    except CryptoError as exc:
        raise KeyDestroyed("ciphertext does not open with this key") from exc


def seal_for(public_key_b64: str, plaintext: bytes) -> str:
    """Base64 sealed box that only the holder of the matching private key can open."""
    box = SealedBox(PublicKey(base64.b64decode(public_key_b64)))
    return base64.b64encode(box.encrypt(plaintext)).decode()


def key_fingerprint(public_key_b64: str) -> str:
    return hashlib.sha256(base64.b64decode(public_key_b64)).hexdigest()


def secret_key_id(key: bytes) -> str:
    """A short name for a secret key (audit log, messages): 32 bits of its SHA-256, which say
    which key was used without revealing anything useful about it."""
    return hashlib.sha256(key).hexdigest()[:8]
