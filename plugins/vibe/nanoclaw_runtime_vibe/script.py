"""The guest side of the vibe engine: the script vibe types, and the loop it starts.

vibe's only ways into the guest are the console (it types ``--script`` as a heredoc into
root's login shell, echoing everything) and its virtio-fs shares. So the typed script is
one fixed line that starts :data:`LOOP` from the read-only boot share; no user text is
ever typed. The loop serves *run requests*, folders the host drops into the read-write
control share::

    /nanoclaw/boot    (read-only)  loop.sh, run.sh, example_agent.py, mounts/<i>/{path,mode}
    /nanoclaw/ctl     (read-write) req/<run>/  ->  out/<run>/{accepted,stdout,stderr,status}
                                   cancel/<run>, poweroff, ready, closing, failed, hb
    /nanoclaw/m/<i>   (as asked)   mount i: the host folder behind a safely named alias

For each request it copies the request into guest memory and deletes it from the share
at once (the input and environment may hold secrets), then runs the agent or command in
a sandbox of fresh namespaces: a mount namespace where the mounts are bound to their
container paths with their modes, the masks (``config.json``) bound read-only, ``/tmp``
private and the shares hidden; then, inside it, a user namespace mapping guest root to
itself, with its own pid, mount, ipc and uts namespaces (and network, when the group has
none). Mounts made before the user namespace are locked in it: the agent, root in its
namespace, cannot unmount or remount them. Its stdout and stderr go to two files of the
control share and its exit status to a third, written last; the host follows them. The
console is never read, so nothing the agent prints there can forge a result.

When the request's keep-warm time passes with no new request the loop marks the share
``closing`` and powers the guest off, whether or not a host process is left.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence

import nanoclaw_runtimes_core as nc

HEREDOC_TERMINATOR = "VIBE_SCRIPT_EOF"
BOOT = "/nanoclaw/boot"
CTL = "/nanoclaw/ctl"
ALIASES = "/nanoclaw/m"
BOOT_IDLE_S = 120
"""How long a freshly booted VM waits for its first request before powering off."""

TYPED = f"exec /bin/sh {BOOT}/loop.sh\n"
"""The ``--script`` vibe types: one fixed, printable line."""

LOOP = r"""# nanoclaw: the guest loop (started by the script vibe types; see script.py)
B=/nanoclaw/boot
C=/nanoclaw/ctl
R=/run/nanoclaw
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
umask 077
exec </dev/null
if [ -e "$B/debug" ]; then set -x; else exec >/dev/null 2>&1; fi

off() {
  sync
  systemctl poweroff || poweroff || poweroff -f
  sleep 100
}
fail() {
  printf '%s\n' "$*" >"$C/failed.tmp" && mv -f "$C/failed.tmp" "$C/failed"
  off
}
clock() { read -r up _ </proc/uptime; now=${up%.*}; }
beat=0
tick() {
  beat=$((beat + 1))
  if [ $((beat % 10)) = 1 ]; then echo "$beat" >"$C/hb"; fi
}
# Whether process $1 is still running (a zombie is not).
running() {
  st=
  read -r st 2>/dev/null </proc/"$1"/stat || return 1
  st=${st##*) }
  [ "${st%% *}" != Z ]
}
for t in unshare setsid mount umount mkdir cp rm mv cat sleep sync; do
  command -v "$t" >/dev/null 2>&1 ||
    fail "the guest has no $t command (it needs util-linux and coreutils)"
done
mkdir -p "$R" && mount -t tmpfs -o mode=0700 nanoclaw "$R" || fail "cannot mount a tmpfs at $R"
mkdir -p "$C/out" "$C/cancel" || fail "cannot write the control share $C"
unshare --user --map-user=0 --map-group=0 --pid --mount --ipc --uts --fork --mount-proc true ||
  fail "the guest cannot make the sandbox namespaces (unshare --user --pid --mount failed)"

serve() {
  name=${1##*/}
  case $name in
    *[!A-Za-z0-9_.-]* | .*) rm -rf "$1"; return ;;
  esac
  w=$R/$name
  o=$C/out/$name
  rm -rf "$w" "$o"
  mkdir -p "$o" && mkdir -m 0700 "$w" && cp -R "$1/." "$w/"
  copied=$?
  rm -rf "$1"
  keep=0
  read -r keep <"$w/keep" || keep=0
  : >"$o/stdout"
  : >"$o/stderr"
  : >"$o/accepted"
  if [ "$copied" != 0 ]; then
    echo "nanoclaw: the run request could not be read" >"$o/stderr"
    status=125
  else
    input=/dev/null
    [ -e "$w/input" ] && input=$w/input
    setsid unshare --mount --propagation private /bin/sh "$B/run.sh" "$w" \
      <"$input" >>"$o/stdout" 2>>"$o/stderr" &
    pid=$!
    while running "$pid"; do
      if [ -e "$C/cancel/$name" ] || [ -e "$C/poweroff" ]; then
        kill -KILL "-$pid" 2>/dev/null
      fi
      tick
      sleep 0.05
    done
    wait "$pid"
    status=$?
  fi
  rm -rf "$w" "$C/cancel/$name"
  # what the agent wrote reaches the host before its status does
  sync "$o/stdout" "$o/stderr" 2>/dev/null || sync
  echo "$status" >"$o/status.tmp" && mv -f "$o/status.tmp" "$o/status"
}

clock
deadline=$((now + BOOT_IDLE))
: >"$C/ready"
while :; do
  tick
  [ -e "$C/poweroff" ] && off
  for r in "$C"/req/*; do
    [ -d "$r" ] || continue
    serve "$r"
    clock
    deadline=$((now + keep))
  done
  clock
  if [ "$now" -ge "$deadline" ]; then
    : >"$C/closing"
    off
  fi
  sleep 0.05
done
""".replace("BOOT_IDLE", str(BOOT_IDLE_S))

RUN = r"""# nanoclaw: one run's sandbox, in a fresh mount namespace (see script.py)
w=$1
B=/nanoclaw/boot
err() { printf 'nanoclaw: %s\n' "$*" >&2; exit 125; }
# The exact content of a file (trailing newlines included) in $v.
get() { v=$(cat "$1" && printf x) || return 1; v=${v%x}; }

for d in "$B"/mounts/*; do
  [ -d "$d" ] || continue
  i=${d##*/}
  get "$d/path" || err "the mount table is unreadable"
  p=$v
  get "$d/mode" || err "the mount table is unreadable"
  mkdir -p -- "$p" || err "cannot create the mount point $p"
  mount --bind "/nanoclaw/m/$i" "$p" || err "cannot mount $p"
  if [ "$v" = ro ]; then mount -o remount,bind,ro "$p" || err "cannot make $p read-only"; fi
done
for d in "$w"/files/*; do
  [ -d "$d" ] || continue
  get "$d/path" || err "a file mount is unreadable"
  p=$v
  mkdir -p -- "${p%/*}" && { [ -e "$p" ] || : >"$p"; } || err "cannot create the mount point $p"
  mount --bind "$d/source" "$p" && mount -o remount,bind,ro "$p" || err "cannot mount $p"
done
: >"$w/empty"
for d in "$w"/masks/*; do
  [ -d "$d" ] || continue
  get "$d/path" || err "a mask is unreadable"
  p=$v
  [ -e "$p" ] || [ -L "$p" ] || continue
  if [ -e "$d/folder" ]; then
    mount -t tmpfs -o ro,mode=0555 masked "$p" || err "cannot mask $p"
  else
    src=$w/empty
    [ -e "$d/source" ] && src=$d/source
    mount --bind "$src" "$p" && mount -o remount,bind,ro "$p" || err "cannot mask $p"
  fi
done
x=/opt/nanoclaw/example_agent.py
mkdir -p /opt/nanoclaw && { [ -e "$x" ] || : >"$x"; } && mount --bind "$B/example_agent.py" "$x" &&
  mount -o remount,bind,ro "$x" || err "cannot show the example agent"
# A small /dev of its own, a private /tmp, and the shares and the control folder hidden.
mkdir "$w/dev" && mount -t tmpfs -o mode=0755,nosuid dev "$w/dev" || err "cannot make /dev"
for n in null zero full random urandom tty; do
  : >"$w/dev/$n" && mount --bind "/dev/$n" "$w/dev/$n" || err "cannot make /dev/$n"
done
mkdir "$w/dev/shm" "$w/dev/pts"
ln -s /proc/self/fd "$w/dev/fd"
ln -s /proc/self/fd/0 "$w/dev/stdin"
ln -s /proc/self/fd/1 "$w/dev/stdout"
ln -s /proc/self/fd/2 "$w/dev/stderr"
mount --rbind "$w/dev" /dev || err "cannot make /dev"
mount -t tmpfs -o mode=1777 shm /dev/shm
mount -t tmpfs -o mode=1777,nosuid tmp /tmp || err "cannot make /tmp"
for h in /mnt/shared /nanoclaw; do
  [ -d "$h" ] || continue
  mount -t tmpfs -o ro,mode=0555 hidden "$h" || err "cannot hide $h"
done
net=
[ -e "$w/no-network" ] && net=--net
exec unshare --user --map-user=0 --map-group=0 --pid --mount --ipc --uts $net \
  --fork --kill-child --mount-proc /bin/sh -c '
w=$1
n=0
set --
while [ -e "$w/argv/$n" ]; do
  a=$(cat "$w/argv/$n" && printf x) || exit 125
  set -- "$@" "${a%x}"
  n=$((n + 1))
done
command -v hostname >/dev/null 2>&1 && hostname nanoclaw 2>/dev/null
exec env -i /bin/sh -c '\''
set -a
. "$1/env" || exit 125
set +a
rm -rf "$1/env" "$1/input" "$1/argv"
mount -t tmpfs -o ro,mode=0555 hidden /run/nanoclaw 2>/dev/null
cd /workspace/group 2>/dev/null || cd / || exit 125
unset OLDPWD PWD
shift
exec "$@"
'\'' sh "$w" "$@"
' stage2 "$w"
"""


class ScriptError(nc.UserError):
    """Text that cannot go through vibe's typed heredoc unchanged."""


def check_typable(text: str) -> None:
    """Refuse text that vibe refuses (its heredoc terminator) or that the guest's interactive
    shell would change (history expansion, tabs, control characters)."""
    if HEREDOC_TERMINATOR in text:
        raise ScriptError(f"the typed script contains {HEREDOC_TERMINATOR!r}, which vibe refuses")
    bad = sorted({c for c in text if c == "!" or (c != "\n" and not (" " <= c <= "~"))})
    if bad:
        raise ScriptError(f"the typed script must be printable ASCII without '!'; found {bad!r}")


def env_file(env: Mapping[str, str]) -> bytes:
    """The run's environment as ``NAME='value'`` lines the sandbox sources (values quoted)."""
    import re

    lines = []
    for name, value in env.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise nc.UserError(
                f"environment variable name {name!r} cannot be passed into a vibe VM: use "
                "letters, digits and '_' (check containerConfig.env / CONTAINER_ENV)"
            )
        if "\0" in value:
            raise nc.UserError(f"environment variable {name} contains a NUL byte")
        lines.append(f"{name}={shlex.quote(value)}\n")
    return "".join(lines).encode()


def argv_files(words: Sequence[str]) -> list[bytes]:
    """A command's words, one file each (``argv/0`` …), so no word is ever parsed."""
    if not words:
        raise nc.UserError("the command to run in the VM is empty")
    out = []
    for i, word in enumerate(words):
        if "\0" in word:
            raise nc.UserError(f"argument {i} of the command contains a NUL byte")
        out.append(word.encode("utf-8", "surrogateescape"))
    return out


check_typable(TYPED)
