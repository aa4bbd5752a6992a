"""Ed25519 keys and signatures (cryptography)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from edge_runtime.service.signing import (
    SigningError,
    generate_keypair,
    key_id,
    load_private_key,
    load_public_key,
    sign,
    verify,
)


def test_sign_and_verify(tmp_path: Path) -> None:
    kid = generate_keypair(tmp_path / "k.key", tmp_path / "k.pub")
    assert stat.S_IMODE((tmp_path / "k.key").stat().st_mode) == 0o600
    priv, pub = load_private_key(tmp_path / "k.key"), load_public_key(tmp_path / "k.pub")
    assert key_id(pub) == kid
    sig = sign(priv, b"manifest")
    assert verify(pub, b"manifest", sig)
    assert not verify(pub, b"manifest!", sig)
    assert not verify(pub, b"manifest", "not base64 at all!")
    generate_keypair(tmp_path / "o.key", tmp_path / "o.pub")
    assert not verify(load_public_key(tmp_path / "o.pub"), b"manifest", sig)


def test_bad_key_files_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "junk.pub").write_text("hello")
    with pytest.raises(SigningError, match="not a PEM public key"):
        load_public_key(tmp_path / "junk.pub")
    with pytest.raises(SigningError, match="cannot read"):
        load_private_key(tmp_path / "missing.key")
    generate_keypair(tmp_path / "k.key", tmp_path / "k.pub")
    with pytest.raises(SigningError, match="exists"):
        generate_keypair(tmp_path / "k.key", tmp_path / "k2.pub")
