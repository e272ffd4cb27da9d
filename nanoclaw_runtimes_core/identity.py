"""Who a sandbox is on the host: never root.

When ``nanoclaw-runtimes`` runs as an ordinary user, its sandboxes act as that
user. When it runs as root, they act as an unprivileged user instead
(``NANOCLAW_SANDBOX_USER``, default uid and gid 1000000000), so a file a
sandbox leaves behind (a setuid binary, say) grants nothing: it belongs to an
account that owns nothing else. VMs map their guest users ``0..65535`` onto
``uid..uid+65535``; their read-write folders belong to ``uid``.
"""

from __future__ import annotations

import os

from .errors import ConfigError
from .models import SandboxUser

DEFAULT_SANDBOX_ID = 1_000_000_000
GUEST_ID_RANGE = 65536
SETTING = "NANOCLAW_SANDBOX_USER"


def sandbox_user(value: str) -> SandboxUser:
    """The sandbox's host identity for this process; ``value`` is ``NANOCLAW_SANDBOX_USER``.

    Raises :class:`~nanoclaw_runtimes_core.errors.ConfigError` for a value that
    names root, an unknown user or is not ``uid[:gid]``.
    """
    if os.geteuid() != 0:
        return SandboxUser(uid=os.getuid(), gid=os.getgid(), source="invoking user")
    text = value.strip()
    if not text:
        return SandboxUser(uid=DEFAULT_SANDBOX_ID, gid=DEFAULT_SANDBOX_ID, source="default")
    uid_text, _, gid_text = text.partition(":")
    try:
        if uid_text.isdigit():
            uid = int(uid_text)
            gid = int(gid_text) if gid_text else uid
        else:
            import pwd  # only for a user given by name

            entry = pwd.getpwnam(uid_text)
            uid = entry.pw_uid
            gid = int(gid_text) if gid_text else entry.pw_gid
    except KeyError:
        raise ConfigError([f"{SETTING}: no user named {uid_text!r} on this host"]) from None
    except ValueError:
        raise ConfigError([f"{SETTING}: expected uid[:gid] or a user name, got {text!r}"]) from None
    if uid == 0 or gid == 0:
        raise ConfigError(
            [f"{SETTING}: {text!r} is root; sandboxes must act as an unprivileged user"]
        )
    if uid + GUEST_ID_RANGE > 2**32 - 2 or gid + GUEST_ID_RANGE > 2**32 - 2:
        raise ConfigError([f"{SETTING}: {text!r} leaves no room for a VM's {GUEST_ID_RANGE} ids"])
    return SandboxUser(uid=uid, gid=gid, source=SETTING)
