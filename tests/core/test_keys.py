"""Identity key pairs and the secure-mode Config fields."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

import udptcp
from udptcp.core.keys import Identity


def test_generate_gives_a_raw_x25519_public_key() -> None:
    identity = udptcp.Identity.generate()
    assert isinstance(identity.public_key, bytes) and len(identity.public_key) == 32
    # It is the public half of the private key: a DH with it agrees from both sides.
    other = X25519PrivateKey.generate()
    ours = identity.private_key.exchange(other.public_key())
    theirs = other.exchange(X25519PublicKey.from_public_bytes(identity.public_key))
    assert ours == theirs
    assert udptcp.Identity.generate().public_key != identity.public_key


def test_from_private_bytes_round_trips() -> None:
    identity = Identity.generate()
    again = Identity.from_private_bytes(identity.private_bytes())
    assert again == identity and again.public_key == identity.public_key
    with pytest.raises(ValueError, match="32 bytes"):
        Identity.from_private_bytes(b"short")


def test_repr_shows_the_public_key_only() -> None:
    identity = Identity.generate()
    text = repr(identity)
    assert identity.public_key.hex() in text
    assert identity.private_bytes().hex() not in text


def test_save_writes_mode_0600_and_load_reads_it_back(tmp_path: Path) -> None:
    identity = Identity.generate()
    path = tmp_path / "server.key"
    identity.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert Identity.load(path) == identity
    # An existing, wider file is narrowed before the key goes in.
    wide = tmp_path / "wide.key"
    wide.write_text("old")
    os.chmod(wide, 0o644)
    identity.save(str(wide))
    assert stat.S_IMODE(os.stat(wide).st_mode) == 0o600
    assert Identity.load(wide) == identity


def test_load_refuses_other_files(tmp_path: Path) -> None:
    path = tmp_path / "not.key"
    path.write_text("hello\nworld\n")
    with pytest.raises(ValueError):
        Identity.load(path)


def test_config_checks_key_lengths_and_hides_the_psk() -> None:
    with pytest.raises(ValueError, match="peer_key"):
        udptcp.Config(peer_key=b"x" * 31)
    with pytest.raises(ValueError, match="psk"):
        udptcp.Config(psk=b"x" * 33)
    with pytest.raises(TypeError):
        udptcp.Config(identity=b"x" * 32)  # type: ignore[arg-type]
    config = udptcp.Config(psk=bytearray(b"k" * 32))
    assert config.psk == b"k" * 32 and type(config.psk) is bytes
    assert "kkkk" not in repr(config)
