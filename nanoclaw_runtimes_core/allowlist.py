"""The mount allowlist that guards additional mounts (``~/.config/nanoclaw/mount-allowlist.json``).

::

    {"allowedRoots": [{"path": "~/projects", "allowReadWrite": true, "description": "..."}],
     "blockedPatterns": ["password"], "nonMainReadOnly": true}

A missing, unreadable or invalid allowlist (duplicate keys included) blocks
every additional mount, as in NanoClaw. The built-in blocked patterns always
apply.
"""

from __future__ import annotations

import os
from pathlib import Path

from .config import jsonfile
from .record import Record
from .safefs import SafeDir, UnsafeEntry
from .settings.values import from_json

BUILTIN_BLOCKED_PATTERNS: tuple[str, ...] = (
    ".ssh",
    ".gnupg",
    ".gpg",
    ".aws",
    ".azure",
    ".gcloud",
    ".kube",
    ".docker",
    "credentials",
    ".env",
    ".netrc",
    ".npmrc",
    ".pypirc",
    "id_rsa",
    "id_ed25519",
    "private_key",
    ".secret",
)
"""Never mountable, whatever the allowlist says (substring of any component of the real path)."""


class AllowedRoot(Record):
    """A folder under which additional mounts may come (``allowedRoots`` entry)."""

    path: str
    allow_read_write: bool = False
    description: str = ""


class _AllowlistFile(Record):
    allowed_roots: tuple[AllowedRoot, ...]
    blocked_patterns: tuple[str, ...] = ()
    non_main_read_only: bool = True


class Allowlist(Record):
    """A loaded mount allowlist. When ``error`` is set, every additional mount is blocked."""

    path: Path
    allowed_roots: tuple[AllowedRoot, ...] = ()
    blocked_patterns: tuple[str, ...] = BUILTIN_BLOCKED_PATTERNS
    """The built-in patterns followed by the user's."""
    non_main_read_only: bool = True
    error: str | None = None


def display(path: Path) -> str:
    """``path`` with the home folder written as ``~``."""
    try:
        return "~/" + path.relative_to(Path.home()).as_posix()
    except ValueError:
        return str(path)


def load_allowlist(path: str | Path, *, base: Path) -> Allowlist:
    """Read the allowlist at ``path`` (``~`` expanded; relative to ``base``). Never raises for a
    bad file: ``error`` says why every additional mount is blocked."""
    real = Path(path).expanduser()
    if not real.is_absolute():
        real = base / real
    shown = display(real)
    blocked = f"so additional mounts are blocked; fix {shown} (see docs/configuration.md)"
    try:
        with SafeDir.open(real.parent) as folder:
            data = folder.read(real.name, jsonfile.MAX_BYTES)
    except FileNotFoundError:
        data = None
    except (UnsafeEntry, OSError) as exc:
        return Allowlist(path=real, error=f"the mount allowlist cannot be read ({exc}), {blocked}")
    if data is None:
        return Allowlist(
            path=real,
            error=f"there is no mount allowlist at {shown}, so additional mounts are blocked; "
            "create it (see docs/configuration.md) or set NANOCLAW_MOUNT_ALLOWLIST",
        )
    document, problems = jsonfile.parse(data, shown)
    if problems or document is None:
        details = "; ".join(
            f"{p.location}: {p.message}" if p.location else p.message for p in problems
        )
        return Allowlist(path=real, error=f"the mount allowlist is invalid ({details}), {blocked}")
    if isinstance(document, dict):
        document = {k: v for k, v in document.items() if not k.startswith("$")}
    parsed, issues = from_json(document, _AllowlistFile, path="$")
    semantic = _semantic_problems(parsed) if parsed is not None else []
    if issues or semantic or parsed is None:
        details = "; ".join(
            [f"{where.removeprefix('$.')}: {msg}" for where, msg in issues] + semantic
        )
        return Allowlist(path=real, error=f"the mount allowlist is invalid ({details}), {blocked}")
    return Allowlist(
        path=real,
        allowed_roots=parsed.allowed_roots,
        blocked_patterns=BUILTIN_BLOCKED_PATTERNS + parsed.blocked_patterns,
        non_main_read_only=parsed.non_main_read_only,
    )


def _semantic_problems(parsed: _AllowlistFile) -> list[str]:
    problems = []
    for i, root in enumerate(parsed.allowed_roots):
        if not root.path.startswith("~") and not os.path.isabs(root.path):
            problems.append(
                f"allowedRoots[{i}].path: {root.path!r} must be absolute or start with ~"
            )
    for i, pattern in enumerate(parsed.blocked_patterns):
        if not pattern.strip():
            problems.append(f"blockedPatterns[{i}]: must not be empty (it would match everything)")
    return problems


def blocked_by(real: Path, patterns: tuple[str, ...]) -> str | None:
    """The first blocked pattern ``real`` matches (case-insensitive), or None."""
    text = real.as_posix().lower()
    parts = [part.lower() for part in real.parts]
    for pattern in patterns:
        needle = pattern.lower()
        if any(needle in part for part in parts) or needle in text:
            return pattern
    return None


def allowed_root(real: Path, roots: tuple[AllowedRoot, ...]) -> AllowedRoot | None:
    """The allowed root ``real`` lies under, or None."""
    for root in roots:
        try:
            root_real = Path(root.path).expanduser().resolve(strict=True)
        except (OSError, RuntimeError):
            continue  # a root that does not exist allows nothing
        if real == root_real or root_real in real.parents:
            return root
    return None
