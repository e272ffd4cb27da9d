"""A small on-disk cache for host probes, so each `nanoclaw-runtimes run` need not repeat them.

Probing bubblewrap (a trial sandbox as the sandbox user) or an engine's daemon
costs tens of milliseconds, paid by every run since each run is a new process.
The answer depends only on the host, so it is kept in
``$XDG_CACHE_HOME/nanoclaw-runtimes/`` (default ``~/.cache/...``) under a key
that changes when what it depends on changes: the boot, the user, the
executable's identity and the kernel knobs for user namespaces.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nanoclaw-runtimes"


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def host_key(executable: str | None) -> dict[str, Any]:
    """What a probe's answer depends on."""
    key: dict[str, Any] = {
        "boot": _read("/proc/sys/kernel/random/boot_id"),
        "uid": os.getuid(),
        "userns_clone": _read("/proc/sys/kernel/unprivileged_userns_clone"),
        "max_userns": _read("/proc/sys/user/max_user_namespaces"),
        "apparmor_userns": _read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"),
    }
    if executable:
        try:
            st = os.stat(executable)
            key["exe"] = [executable, st.st_ino, st.st_size, st.st_mtime_ns, st.st_mode]
        except OSError:
            key["exe"] = [executable]
    return key


def cached(
    name: str,
    key: dict[str, Any],
    compute: Callable[[], dict[str, Any]],
    *,
    keep: Callable[[dict[str, Any]], bool] = lambda value: True,
) -> dict[str, Any]:
    """``compute()``'s answer for ``key``, from the cache when it holds one for that key. An
    answer ``keep`` refuses (a failure the user may fix at any time) is not stored."""
    path = cache_dir() / f"{name}.json"
    try:
        stored = json.loads(path.read_text())
        if stored.get("key") == key and isinstance(stored.get("value"), dict):
            found: dict[str, Any] = stored["value"]
            return found
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    value = compute()
    if not keep(value):
        return value
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": key, "value": value}))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home: probe again next time
    return value
