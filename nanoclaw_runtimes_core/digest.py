"""SHA-256 without loading OpenSSL: ``hashlib`` links libcrypto at import (several
milliseconds, on every run); the interpreter's own SHA-256 module gives the same digests."""

from __future__ import annotations

from typing import Any


def _sha256() -> Any:
    try:
        from _sha2 import sha256  # type: ignore[import-not-found,unused-ignore]  # Python 3.12+

        return sha256
    except ImportError:
        pass
    try:
        from _sha256 import sha256  # type: ignore[import-not-found,unused-ignore]  # 3.10, 3.11

        return sha256
    except ImportError:  # an interpreter built without them
        from hashlib import sha256

        return sha256


_SHA256 = _sha256()


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of ``data`` in hex, as ``hashlib.sha256(data).hexdigest()`` gives it."""
    return str(_SHA256(data).hexdigest())
