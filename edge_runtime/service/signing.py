"""Ed25519 keys and signatures for model rollout, through ``cryptography`` (the ``edgewatch[fleet]`` extra).

``cryptography`` is imported only when a signature is made or checked (a gateway without fleet rollout
never loads it): about 20 ms and 16 MB installed here; PyNaCl was 19 ms and 6 MB with cffi. It was chosen
for being the PyCA's maintained library already present in most Python installs (Debian ships it). Keys are
PEM files: the private key PKCS#8 (mode 0600), the public key SubjectPublicKeyInfo.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import os
from pathlib import Path
from typing import Any


class SigningError(ValueError):
    """A key cannot be read or made, or ``cryptography`` is missing; one line saying why."""


def _ed25519() -> Any:
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise SigningError("signed model rollout needs the fleet extra (module 'cryptography' is missing): "
                           "pip install 'edgewatch[fleet]'") from None
    return ed25519


def _serialization() -> Any:
    _ed25519()
    from cryptography.hazmat.primitives import serialization

    return serialization


def generate_keypair(private_path: Path, public_path: Path) -> str:
    """Write a new key pair (the private key mode 0600, never overwriting a file; a missing folder is made, 0700,
    as ``fit -o`` makes one); return its key id."""
    ed = _ed25519()
    ser = _serialization()
    key = ed.Ed25519PrivateKey.generate()
    priv = key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())
    pub = key.public_key().public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo)
    for path in (private_path, public_path):
        if path.exists():
            raise SigningError(f"{path} exists: not overwritten (remove it first)")
    for folder in (private_path.parent, public_path.parent):
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(folder))
    private_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    public_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(priv)
    public_path.write_bytes(pub)
    return key_id(key.public_key())


def _read(path: str | os.PathLike[str], what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SigningError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None


def load_private_key(path: str | os.PathLike[str]) -> Any:
    ser, ed = _serialization(), _ed25519()
    try:
        key = ser.load_pem_private_key(_read(path, "private key"), password=None)
    except (ValueError, TypeError) as exc:
        raise SigningError(f"{path}: not an unencrypted PEM private key ({str(exc)[:120]})") from None
    if not isinstance(key, ed.Ed25519PrivateKey):
        raise SigningError(f"{path}: not an Ed25519 key (make one with `edgewatch-train keygen`)")
    return key


def load_public_key(path: str | os.PathLike[str]) -> Any:
    ser, ed = _serialization(), _ed25519()
    try:
        key = ser.load_pem_public_key(_read(path, "public key"))
    except (ValueError, TypeError) as exc:
        raise SigningError(f"{path}: not a PEM public key ({str(exc)[:120]})") from None
    if not isinstance(key, ed.Ed25519PublicKey):
        raise SigningError(f"{path}: not an Ed25519 public key")
    return key


def key_id(public_key: Any) -> str:
    """A short name for a public key: the first 16 hex digits of the SHA-256 of its raw 32 bytes."""
    ser = _serialization()
    raw = public_key.public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def sign(private_key: Any, data: bytes) -> str:
    """The Ed25519 signature of ``data``, base64."""
    return base64.b64encode(private_key.sign(data)).decode()


def verify(public_key: Any, data: bytes, signature: str) -> bool:
    """True when ``signature`` (base64) is ``data`` signed by ``public_key``'s private key."""
    from cryptography.exceptions import InvalidSignature

    try:
        raw = base64.b64decode(signature, validate=True)
    except ValueError:
        return False
    try:
        public_key.verify(raw, data)
    except InvalidSignature:
        return False
    return True
