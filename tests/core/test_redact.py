"""Redaction of secret values."""

from nanoclaw_runtimes_core.redact import REDACTED, Redactor


def test_secrets_are_replaced_longest_first_and_short_values_kept() -> None:
    redact = Redactor(["sk-abc", "sk-abcdef", "ab", ""])
    assert redact("key sk-abcdef and sk-abc; ab") == f"key {REDACTED} and {REDACTED}; ab"
    assert redact.bytes(b"x sk-abcdef") == b"x " + REDACTED.encode()
    assert bool(redact) and not Redactor(["ab"])
