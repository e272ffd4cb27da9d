"""What runs in the guest: a fixed launcher that takes the environment from stdin.

``tart exec`` has no way to set the guest command's environment, and an
``env K=V`` command line would put the group's variables (API keys among them) in
the argv of a host process. So the launcher is a fixed ``sh`` script passed as
``/bin/sh -c SCRIPT``: it reads a length-prefixed environment block from its stdin
(``tart exec -i`` streams it), exports it, waits for the workspace share, enters it
and ``exec``s the agent, which reads the rest of the same stdin (the
ContainerInput). User text only ever reaches it as ``"$@"``, never as shell code.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence

LAUNCHER = """\
set -u
fail() { echo "nanoclaw launcher: $*" >&2; exit 125; }
IFS= read -r n || fail "no environment block on stdin"
case $n in ''|*[!0-9]*) fail "bad environment block";; esac
while [ "$n" -gt 0 ]; do
  IFS= read -r k || fail "truncated environment block"
  IFS= read -r len || fail "truncated environment block"
  case $k in ''|[0-9]*|*[!A-Za-z0-9_]*) fail "bad variable name in the environment block";; esac
  case $len in ''|*[!0-9]*) fail "bad length in the environment block";; esac
  v=$(/bin/dd bs=1 count="$len" 2>/dev/null; echo x)
  export "$k=${v%x}"
  n=$((n - 1))
done
d=$1
shift
i=0
while [ ! -d "$d" ]; do
  i=$((i + 1))
  [ "$i" -gt 120 ] && fail "the shared folder $d did not appear in the guest"
  /bin/sleep 0.5
done
cd "$d" || fail "cannot enter $d"
exec "$@"
"""
LAUNCHER_NAME = "nanoclaw-launch"


def env_block(env: Mapping[str, str]) -> bytes:
    """The environment as the launcher reads it: a count line, then per variable its name,
    its value's length in bytes, and the value's bytes (any bytes but NUL)."""
    parts = [f"{len(env)}\n".encode()]
    for key, value in env.items():
        data = value.encode("utf-8", "surrogateescape")
        parts.append(f"{key}\n{len(data)}\n".encode())
        parts.append(data)
    return b"".join(parts)


def launch_command(workdir: str, command: Sequence[str]) -> list[str]:
    """The guest command line: the launcher, the folder to start in, then ``command``."""
    return ["/bin/sh", "-c", LAUNCHER, LAUNCHER_NAME, workdir, *command]


def guest_env(
    *, home: str, path: str, configured: Mapping[str, str], shares: Mapping[str, str]
) -> dict[str, str]:
    """The agent's whole environment: a macOS user's basics, where the shares are, then the
    group's own variables (``TZ``, ``containerConfig.env``), which win."""
    user = posixpath.basename(home.rstrip("/")) or "admin"
    env = {
        "HOME": home,
        "PATH": path,
        "USER": user,
        "LOGNAME": user,
        "LANG": "en_US.UTF-8",
        **shares,
    }
    env.update(configured)
    return env
