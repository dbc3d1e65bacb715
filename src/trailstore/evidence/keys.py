"""Ed25519 keys (the ``cryptography`` package) for signing checkpoints: PEM files, made once
with ``trailstore keygen``; the private key stays with the writers, the public key goes to
whoever verifies."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from trailstore.errors import ConfigurationError

SigningKey = Ed25519PrivateKey | str | os.PathLike[str]


def generate_key_pair(private_path: Path, public_path: Path) -> str:
    """Write a new private key (mode 0600, never overwriting a file) and its public key;
    return the key's ID."""
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for path, data, mode in ((private_path, private_pem, 0o600), (public_path, public_pem, 0o644)):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
    return key_id(key.public_key())


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short name of a public key: the first 16 hex digits of the SHA-256 of its raw bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_signing_key(key: SigningKey) -> Ed25519PrivateKey:
    """An Ed25519 private key, given as one or as the path of an unencrypted PEM file."""
    if isinstance(key, Ed25519PrivateKey):
        return key
    try:
        loaded = serialization.load_pem_private_key(_read(key, "signing key"), password=None)
    except (ValueError, TypeError) as exc:  # not PEM, or encrypted
        raise ConfigurationError(f"{key} is not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(loaded, Ed25519PrivateKey):
        raise ConfigurationError(f"{key} is not an Ed25519 private key")
    return loaded


def load_public_key(key: Ed25519PublicKey | str | os.PathLike[str]) -> Ed25519PublicKey:
    """An Ed25519 public key, given as one or as the path of a PEM file."""
    if isinstance(key, Ed25519PublicKey):
        return key
    try:
        loaded = serialization.load_pem_public_key(_read(key, "public key"))
    except ValueError as exc:
        raise ConfigurationError(f"{key} is not a PEM public key: {exc}") from exc
    if not isinstance(loaded, Ed25519PublicKey):
        raise ConfigurationError(f"{key} is not an Ed25519 public key")
    return loaded


def signature_holds(public_key: Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    try:
        public_key.verify(signature, data)
    except InvalidSignature:
        return False
    return True


def _read(path: str | os.PathLike[str], what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read the {what} {path}: {exc}") from exc
