"""Secrets never reach logs, warnings or error messages: every text a run produces passes here."""

from __future__ import annotations

from collections.abc import Iterable

REDACTED = "[REDACTED]"
MIN_SECRET = 4
"""Shorter values are not secrets worth the false positives of replacing them."""
MIN_SETTING = 8
"""Configured environment values may be secrets (API keys) or plain words (``MODE=trusted``):
only values this long are replaced, so ordinary words in messages survive."""


class Redactor:
    """Replaces every known secret value in text (longest first, so a secret containing
    another is replaced whole). ``secrets`` are the ContainerInput's; ``settings`` the values
    of the sandbox's configured environment."""

    def __init__(self, secrets: Iterable[str] = (), settings: Iterable[str] = ()) -> None:
        values = {s for s in secrets if len(s) >= MIN_SECRET}
        values |= {s for s in settings if len(s) >= MIN_SETTING}
        self._values = sorted(values, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, REDACTED)
        return text

    def bytes(self, data: bytes) -> bytes:
        for value in self._values:
            raw = value.encode()
            if raw in data:
                data = data.replace(raw, REDACTED.encode())
        return data

    def __bool__(self) -> bool:
        return bool(self._values)
