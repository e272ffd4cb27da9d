#!/usr/bin/env bash
# Real container engines for the test suite on a Debian 12 machine (root, no systemd, no
# container registry): a Docker daemon started by hand and rootful Podman, plus local images
# built without any registry.
#
#   eval "$(bash scripts/engines.sh start)"         # docker and podman (same as `start all`)
#   eval "$(bash scripts/engines.sh start docker)"  # only one of them (or: podman)
#   bash scripts/engines.sh stop                    # stop what `start` started
#   bash scripts/engines.sh purge                   # stop, then delete ENGINES_DIR
#
# `start` prints only `export NAME=VALUE` lines on stdout (ENGINES_DIR, DOCKER_HOST,
# CONTAINERS_CONF, CONTAINERS_STORAGE_CONF, NANOCLAW_ROOTLESS_USER); progress goes to stderr. Running it again with the
# same ENGINES_DIR reuses the running dockerd and the images already imported.
#
# Images (in both engines):
#   nanoclaw-test/busybox:latest  static busybox in /bin, users root and node (1000), CMD /bin/sh
#   nanoclaw-test/python:latest   the host's own Debian python3 files + their shared libraries,
#                                 busybox as /bin/sh, pip, the core's dependencies; root and node
#   python:3.12-slim              the same tree without the node user (the project's Dockerfile
#                                 adds it with useradd), so `FROM python:3.12-slim` builds offline
#
# Environment:
#   ENGINES_DIR         state folder (default: .engines/ at the repository root)
#   ENGINES_PY_DEPS     requirement words pip puts into the python images (default: the
#                       dependencies in pyproject.toml; set it empty for none, then no index is
#                       contacted)
#   ENGINES_INSTALL     1 (default): apt-get install missing packages; 0: fail instead
#   ENGINES_STORAGE     overlay (default) or vfs, for both engines
#   ENGINES_ROOTLESS_USER  the unprivileged user rootless Podman runs as (default
#                       nanoclaw-rootless; made with subuids when missing; empty: none)
#
# Host changes, on purpose few: Debian packages get installed; for rootless Podman a user
# (ENGINES_ROOTLESS_USER) is made, with 65536 subordinate uids and gids, a containers.conf and
# its own image storage in its home, and /run/user/UID; dockerd runs with no iptables
# rules, no bridge and ip_forward untouched; podman's default network is internal (no NAT), but
# netavark sets net.ipv4.ip_forward=1 while a `podman build` runs, and `stop` puts the value
# seen by the first `start` back. Everything else lives under ENGINES_DIR.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RECIPE=1 # bump when the image recipes below change: present images are then rebuilt
LABEL=org.nanoclaw.engines.recipe

say() { printf 'engines: %s\n' "$*" >&2; }
fail() {
  say "error: $*"
  exit 1
}
now_ms() { date +%s%3N; }
usage() {
  cat >&2 <<'EOF'
usage: scripts/engines.sh start [docker|podman|all] | stop | purge
EOF
  exit 2
}

action=${1:-start}
which=${2:-all}
case $action in start | stop | purge) ;; -h | --help | help) usage ;; *) usage ;; esac
case $which in docker | podman | all) ;; *) usage ;; esac
[ "$(id -u)" = 0 ] || fail "run as root: dockerd and rootful podman need it"

DIR=${ENGINES_DIR:-$REPO/.engines}
if [ "$action" != start ] && [ ! -d "$DIR" ]; then
  say "nothing to $action: $DIR does not exist"
  exit 0
fi
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
LOGS=$DIR/logs
SOCK=$DIR/docker.sock
PIDFILE=$DIR/docker.pid
DOCKER_DATA=$DIR/docker
DOCKER_RUN=$DIR/run # dockerd --exec-root; holds containerd's sockets, so keep it short
PODMAN=$DIR/podman
PCONF=$PODMAN/containers.conf
PSTORE=$PODMAN/storage.conf
TREES=$DIR/trees
STORAGE=${ENGINES_STORAGE:-overlay}
ROOTLESS_USER=${ENGINES_ROOTLESS_USER-nanoclaw-rootless}
case $STORAGE in overlay | vfs) ;; *) fail "ENGINES_STORAGE must be overlay or vfs" ;; esac

# A unix socket path holds at most 107 bytes; containerd's lives deepest.
[ ${#DOCKER_RUN} -le 70 ] || fail "ENGINES_DIR path is too long for unix sockets ($DIR); use a shorter one"

IP_FORWARD=/proc/sys/net/ipv4/ip_forward

dk() { env -u DOCKER_CONTEXT DOCKER_HOST="unix://$SOCK" docker "$@"; }
pm() { CONTAINERS_CONF=$PCONF CONTAINERS_STORAGE_CONF=$PSTORE podman "$@"; }

# ------------------------------------------------------------------------------ rootless podman
# An unprivileged user with subordinate ids, its own containers.conf (the rootful settings but
# the storage, which is its own) and the busybox image; its runtime folder is /run/user/UID.
ru() {
  local home uid
  home=$(getent passwd "$ROOTLESS_USER" | cut -d: -f6)
  uid=$(id -u "$ROOTLESS_USER")
  runuser -u "$ROOTLESS_USER" -- env -i -C / HOME="$home" XDG_RUNTIME_DIR="/run/user/$uid" \
    PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"
}

subids() { # subids FILE: give the user 65536 ids above every range already given
  grep -q "^$ROOTLESS_USER:" "$1" 2>/dev/null && return 0
  local start
  start=$(awk -F: 'BEGIN { m = 100000 } { e = $2 + $3; if (e > m) m = e } END { print m }' "$1" 2>/dev/null || echo 100000)
  echo "$ROOTLESS_USER:$start:65536" >>"$1"
}

stop_rootless() {
  [ -n "$ROOTLESS_USER" ] && id "$ROOTLESS_USER" >/dev/null 2>&1 || return 0
  # What its podman leaves behind: containers, then the pause process holding its namespace.
  ru podman rm --all --force --time 0 >/dev/null 2>&1 || true
  pkill -KILL -u "$ROOTLESS_USER" 2>/dev/null || true
}

# ------------------------------------------------------------------------------ stop / purge

# Whether process $1 exists and is not a zombie (some PID 1s reap late).
alive() {
  local st
  st=$(awk '/^State:/ { print $2 }' "/proc/$1/status" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ]
}

# The pid in file $1 if that process is alive and its command line contains $2.
pid_of() {
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$2" || return 1
  echo "$pid"
}
dockerd_pid() { pid_of "$PIDFILE" "unix://$SOCK"; }
containerd_pid() { pid_of "$DOCKER_RUN/containerd/containerd.pid" "$DOCKER_RUN/containerd/"; }

# end PID NAME: SIGTERM, up to 30 s, then SIGKILL.
end_process() {
  local i
  kill -TERM "$1" 2>/dev/null || return 0
  for i in $(seq 1 120); do
    alive "$1" || return 0
    sleep 0.25
  done
  say "$2 (pid $1) still running after 30 s: SIGKILL"
  kill -KILL "$1" 2>/dev/null || true
}

# What a dockerd that died without stopping (SIGKILL, OOM) leaves: its containerd, the
# containers (runc state under our exec-root) and their shims (found by our socket path).
docker_leftovers() {
  local pid id
  if pid=$(containerd_pid); then
    say "stopping the containerd a dead dockerd left (pid $pid)"
    end_process "$pid" containerd
  fi
  if [ -d "$DOCKER_RUN/runtime-runc/moby" ]; then
    for id in $(runc --root "$DOCKER_RUN/runtime-runc/moby" list -q 2>/dev/null); do
      runc --root "$DOCKER_RUN/runtime-runc/moby" delete --force "$id" 2>/dev/null || true
    done
  fi
  for pid in /proc/[0-9]*; do
    pid=${pid#/proc/}
    case $(cat "/proc/$pid/comm" 2>/dev/null) in containerd-shim*) ;; *) continue ;; esac
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$DOCKER_RUN/containerd/" || continue
    end_process "$pid" containerd-shim
  done
  rm -f "$DOCKER_RUN/containerd/containerd.pid"
}

# Folders outside ENGINES_DIR that the engines create whatever they are told: dockerd makes
# /run/docker/plugins, containerd's shims /run/containerd/s (their sockets, gone with them),
# podman /run/containers/networks (ipam.db, from the first `podman build`) and
# /var/lib/containers/cache (a blob info cache). `start` notes those that did not exist; `stop`
# removes them again, but only those two files and empty folders, nothing else.
HOST_DIRS=(/run/docker /run/containerd /run/containers /var/lib/containers)
note_host_dirs() {
  local p
  for p in "${HOST_DIRS[@]}"; do
    if [ ! -e "$p" ] && ! grep -qxF "$p" "$DIR/host-dirs" 2>/dev/null; then echo "$p" >>"$DIR/host-dirs"; fi
  done
}
forget_host_dirs() {
  local p
  [ -f "$DIR/host-dirs" ] || return 0
  while read -r p; do
    [ -d "$p" ] || continue
    rm -f "$p/cache/blob-info-cache-v1.boltdb" "$p/networks/ipam.db"
    find "$p" -depth -type d -empty -delete 2>/dev/null || true
  done <"$DIR/host-dirs"
  rm -f "$DIR/host-dirs"
}

mounts_under() { findmnt -rn -o TARGET | awk -v p="$1/" 'index($0, p) == 1' | sort -r; }

stop_engines() {
  local pid i m
  if pid=$(dockerd_pid); then
    say "stopping dockerd (pid $pid; it stops its containers and its containerd)"
    end_process "$pid" dockerd
  fi
  docker_leftovers
  rm -f "$PIDFILE" "$SOCK"
  stop_rootless
  if [ -f "$PCONF" ] && command -v podman >/dev/null; then
    # Containers of this storage only (our config points podman at it), then what an
    # interrupted `podman build` may have left in the storage.
    pm rm --all --force --time 0 >/dev/null 2>&1 || true
    for i in $(pm ps --all --external --quiet 2>/dev/null); do
      pm rm --force --storage "$i" >/dev/null 2>&1 || true
    done
  fi
  if [ -f "$DIR/ip_forward.orig" ]; then
    i=$(cat "$DIR/ip_forward.orig")
    if [ "$(cat "$IP_FORWARD")" != "$i" ]; then
      say "restoring net.ipv4.ip_forward=$i (netavark set it during a podman build)"
      echo "$i" >"$IP_FORWARD"
    fi
    rm -f "$DIR/ip_forward.orig"
  fi
  while read -r m; do
    [ -n "$m" ] || continue
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || say "could not unmount $m"
  done < <(mounts_under "$DIR")
  forget_host_dirs
}

if [ "$action" = stop ]; then
  stop_engines
  exit 0
fi
if [ "$action" = purge ]; then
  stop_engines
  [ -z "$(mounts_under "$DIR")" ] || fail "still mounted under $DIR; not deleting it"
  rm -rf "$DIR"
  say "removed $DIR"
  exit 0
fi

# ------------------------------------------------------------------------------ start
want_docker=0
want_podman=0
[ "$which" = podman ] || want_docker=1
[ "$which" = docker ] || want_podman=1
t_start=$(now_ms)
mkdir -p "$LOGS"
[ -f "$DIR/ip_forward.orig" ] || cat "$IP_FORWARD" >"$DIR/ip_forward.orig"
note_host_dirs

# Debian packages. --no-install-recommends: the recommended extras (apparmor, buildah,
# fuse-overlayfs, slirp4netns, uidmap, ...) serve rootless or systemd setups, not this one.
installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }
pkgs=(runc busybox-static python3 python3-pip-whl ca-certificates)
[ $want_docker = 0 ] || pkgs+=(docker.io)
# crun is never asked for: podman would prefer it, and crun 1.8 refuses hybrid cgroup hosts.
# netavark by name: with --no-install-recommends apt would satisfy podman's network stack with
# containernetworking-plugins (CNI), whose default bridge adds NAT and firewall rules.
[ $want_podman = 0 ] || pkgs+=(podman netavark catatonit iptables)
# Rootless podman: newuidmap/newgidmap, and a venv of Debian's python3 for the user's CLI.
[ $want_podman = 0 ] || [ -z "$ROOTLESS_USER" ] || pkgs+=(uidmap python3-venv)
missing=()
for p in "${pkgs[@]}"; do installed "$p" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  [ "${ENGINES_INSTALL:-1}" = 1 ] || fail "missing Debian packages: ${missing[*]}"
  say "apt-get install ${missing[*]}"
  t=$(now_ms)
  # A policy-rc.d for the time of the install, so that no package starts its service (a
  # system dockerd with default flags would rewrite the firewall).
  policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    printf '#!/bin/sh\n# written by scripts/engines.sh while it runs apt-get\nexit 101\n' >"$policy"
    chmod 755 "$policy"
  fi
  export DEBIAN_FRONTEND=noninteractive
  rc=0
  { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; } \
    >"$LOGS/apt.log" 2>&1 || rc=$?
  if [ -n "$policy" ]; then
    rm -f "$policy"
    trap - EXIT
  fi
  [ $rc = 0 ] || fail "apt-get failed; see $LOGS/apt.log"
  say "packages installed in $(($(now_ms) - t)) ms"
fi
command -v docker >/dev/null || [ $want_docker = 0 ] || fail "no docker client on PATH"

BUSYBOX=/bin/busybox # from busybox-static: one static binary, it runs in any root tree
! ldd "$BUSYBOX" >/dev/null 2>&1 || fail "$BUSYBOX is not static: install busybox-static"
PY=/usr/bin/python3 # the host's Debian python, never a pyenv or venv one found first on PATH
PYV=$($PY -c 'import sys; print("%d.%d" % sys.version_info[:2])')

# ------------------------------------------------------------------------------ root trees

# root and nobody, plus node (1000) when $2 = node; $1 is the tree.
write_users() {
  local r=$1
  {
    echo 'root:x:0:0:root:/root:/bin/sh'
    echo 'nobody:x:65534:65534:nobody:/nonexistent:/bin/false'
    [ "${2:-}" != node ] || echo 'node:x:1000:1000:node:/home/node:/bin/sh'
  } >"$r/etc/passwd"
  {
    echo 'root:x:0:'
    echo 'nogroup:x:65534:'
    [ "${2:-}" != node ] || echo 'node:x:1000:'
  } >"$r/etc/group"
  sed 's/^\([^:]*\):.*/\1:*:19000:0:99999:7:::/' "$r/etc/passwd" >"$r/etc/shadow"
  sed 's/^\([^:]*\):.*/\1:*::/' "$r/etc/group" >"$r/etc/gshadow"
  chmod 644 "$r/etc/passwd" "$r/etc/group"
  chmod 600 "$r/etc/shadow" "$r/etc/gshadow"
  if [ "${2:-}" = node ]; then
    mkdir -p "$r/home/node"
    chown 1000:1000 "$r/home/node"
  fi
}

# A short stamp of what goes into an image; images carry it as a label, trees in a file.
stamp() { printf '%s-%s' "$1" "$(printf '%s\n' "$RECIPE" "${@:2}" | sha256sum | cut -c1-16)"; }
busybox_recipe() { stamp busybox "$(dpkg-query -W -f='${Version}' busybox-static)"; }

build_busybox_tree() {
  local r=$TREES/busybox a t
  [ "$(cat "$r.recipe" 2>/dev/null)" != "$BB_STAMP" ] || return 0
  t=$(now_ms)
  rm -rf "$r" "$r.recipe"
  mkdir -p "$r"/{bin,etc,tmp,root,proc,sys,dev,home}
  cp "$BUSYBOX" "$r/bin/busybox"
  for a in $("$r/bin/busybox" --list); do
    [ "$a" = busybox ] || ln -s busybox "$r/bin/$a"
  done
  write_users "$r" node
  chmod 1777 "$r/tmp"
  chmod 700 "$r/root"
  echo "$BB_STAMP" >"$r.recipe"
  say "busybox tree built in $(($(now_ms) - t)) ms"
}

# The core's dependencies, from pyproject.toml, as pip requirement words.
py_deps() {
  if [ -n "${ENGINES_PY_DEPS+set}" ]; then
    echo "$ENGINES_PY_DEPS"
  else
    $PY -c 'import sys, tomllib; print(" ".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' \
      "$REPO/pyproject.toml"
  fi
}

python_recipe() {
  stamp python "$(dpkg-query -W -f='${Version} ' "libpython$PYV-stdlib" python3-pip-whl busybox-static)" "$(py_deps)"
}

python_tree_fresh() { [ "$(cat "$TREES/python.recipe" 2>/dev/null)" = "$PY_STAMP" ]; }

# The core's dependencies, installed by pip in the background (it mostly waits for the package
# index), started as early as possible: the host's python runs pip straight from Debian's pip
# wheel, with --target, so nothing lands on the host. No dependencies: no pip run, no index.
PIP_PID=
PIP_WHEEL=
start_pip() {
  local deps
  [ -z "$PIP_PID" ] || return 0
  rm -rf "$TREES/python-site"
  mkdir -p "$TREES/python-site"
  PIP_WHEEL=$(find /usr/share/python-wheels -name 'pip-*.whl' | sort | tail -n1)
  [ -n "$PIP_WHEEL" ] || fail "no pip wheel in /usr/share/python-wheels (Debian package python3-pip-whl)"
  read -r -a deps <<<"$(py_deps)"
  if [ ${#deps[@]} = 0 ]; then
    true &
  else
    say "pip install --target (python $PYV): ${deps[*]}"
    $PY "$PIP_WHEEL/pip" install --quiet --disable-pip-version-check --no-compile \
      --target "$TREES/python-site" --python-version "$PYV" --only-binary=:all: \
      "${deps[@]}" >"$LOGS/pip.log" 2>&1 &
  fi
  PIP_PID=$!
}

# A root tree from the files of the host's own Debian python packages (dpkg -L) and the shared
# libraries ldd finds for them, busybox for /bin/sh and the usual commands, useradd (Dockerfiles
# call it), pip from Debian's pip wheel and the core's dependencies from the package index.
build_python_tree() {
  local r=$TREES/python list=$TREES/python.files p pkgs lib site t
  ! python_tree_fresh || return 0
  t=$(now_ms)
  rm -rf "$r" "$r.recipe"
  start_pip

  mkdir -p "$r"/usr/{bin,sbin,lib,lib64} "$r"/{etc,tmp,root,proc,sys,dev,home,run,var/tmp}
  ln -s usr/bin "$r/bin"
  ln -s usr/sbin "$r/sbin"
  ln -s usr/lib "$r/lib"
  ln -s usr/lib64 "$r/lib64"
  pkgs=()
  for p in "python$PYV-minimal" "libpython$PYV-minimal" "libpython$PYV-stdlib" "python$PYV" \
    python3-minimal python3 media-types; do
    if installed "$p"; then pkgs+=("$p"); fi
  done
  dpkg -L "${pkgs[@]}" |
    grep '^/.' | grep -vE '^/usr/share/(doc|man|lintian|applications|pixmaps|binfmts)(/|$)' |
    grep -vx "/usr/lib/python$PYV/EXTERNALLY-MANAGED" >"$list.pkg"
  {
    cat "$list.pkg"
    # the compiled stdlib the host's py3compile made, for the sources taken above
    find "/usr/lib/python$PYV" -name "*.cpython-${PYV/./}.pyc" -path '*/__pycache__/*' |
      awk -v s=".cpython-${PYV/./}.pyc" 'NR == FNR { want[$0] = 1; next }
        { src = $0; sub("/__pycache__/", "/", src); sub(s "$", ".py", src); if (src in want) print }' \
        "$list.pkg" -
    printf '/usr/sbin/%s\n' useradd groupadd usermod userdel groupdel
    printf '%s\n' /etc/login.defs /etc/default/useradd /etc/ssl/certs/ca-certificates.crt
    # shared libraries, each as named (often a symlink) and its target
    for lib in $(
      ldd "/usr/bin/python$PYV" /usr/sbin/useradd "/usr/lib/python$PYV"/lib-dynload/*.so 2>/dev/null |
        awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u
    ); do
      echo "$lib"
      readlink -f "$lib"
    done
  } | while read -r p; do if [ -e "$p" ]; then echo "${p#/}"; fi; done | sort -u >"$list"
  # --keep-directory-symlink: /lib/... lands in usr/lib through the tree's usrmerge links
  tar -C / -cf - --no-recursion -T "$list" | tar -C "$r" -xf - --keep-directory-symlink
  rm -f "$list.pkg"

  cp "$BUSYBOX" "$r/usr/bin/busybox"
  for p in $("$r/usr/bin/busybox" --list); do
    [ -e "$r/usr/bin/$p" ] || [ -L "$r/usr/bin/$p" ] || ln -s busybox "$r/usr/bin/$p"
  done
  ln -sf "python$PYV" "$r/usr/bin/python3"
  ln -s /usr/bin/python3 "$r/usr/bin/python"
  mkdir -p "$r/etc/skel" "$r/usr/local/bin" "$r/usr/local/lib/python$PYV"
  write_users "$r"
  chmod 1777 "$r/tmp" "$r/var/tmp"
  chmod 700 "$r/root"

  wait "$PIP_PID" || fail "pip failed; see $LOGS/pip.log"
  PIP_PID=
  site=$r/usr/local/lib/python$PYV/dist-packages
  rm -rf "$TREES/python-site/bin"
  mv "$TREES/python-site" "$site"
  # pip itself for the image: unpacking its wheel is a complete install, and 25 times faster
  # than pip installing itself
  $PY -m zipfile -e "$PIP_WHEEL" "$site"
  for p in pip pip3 "pip$PYV"; do
    printf '#!/usr/bin/python3\nimport sys\nfrom pip._internal.cli.main import main\nsys.exit(main())\n' \
      >"$r/usr/local/bin/$p"
    chmod 755 "$r/usr/local/bin/$p"
  done
  # Byte-code for pip and the dependencies (a non-root container cannot write it at import time,
  # and pip uncompiled makes every `pip install` in a Dockerfile a second slower); not for
  # pygments' hundreds of lexers.
  $PY -m compileall -q -j 0 -x '/pygments/lexers/' \
    -d "/usr/local/lib/python$PYV/dist-packages" "$site" >/dev/null ||
    say "compileall reported errors (harmless: those modules then compile at import)"
  echo "$PY_STAMP" >"$r.recipe"
  say "python tree built in $(($(now_ms) - t)) ms"
}

# nanoclaw-test/python is python:3.12-slim plus the node user (uid 1000): a small build context
# with the user files and a Dockerfile that copies them in.
build_users_context() {
  local c=$TREES/python-users
  [ "$(cat "$c.recipe" 2>/dev/null)" != "$PY_STAMP" ] || return 0
  rm -rf "$c" "$c.recipe"
  mkdir -p "$c/etc" "$c/home/node"
  write_users "$c" node
  cat >"$c/Dockerfile" <<'EOF'
FROM python:3.12-slim
COPY etc/ /etc/
COPY --chown=1000:1000 home/ /home/
EOF
  echo "$PY_STAMP" >"$c.recipe"
}

# ------------------------------------------------------------------------------ images

# Each image: tag, the tree it is imported from, and its config (import --change lines).
PY_CHANGES=(
  'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
  'ENV LANG=C.UTF-8'
  'CMD ["python3"]'
)
TAGS=(nanoclaw-test/busybox:latest python:3.12-slim nanoclaw-test/python:latest) # in build order
tree_of() {
  case $1 in
    nanoclaw-test/busybox:*) echo busybox ;;
    nanoclaw-test/python:*) echo python-users ;;
    *) echo python ;;
  esac
}

# The recipe label TAG carries in ENGINE; empty when the image is missing.
label_of() {
  if [ "$1" = docker ]; then
    dk image inspect -f "{{index .Config.Labels \"$LABEL\"}}" "$2" 2>/dev/null || true
  else
    pm image inspect --format "{{index .Labels \"$LABEL\"}}" "$2" 2>/dev/null || true
  fi
}

# import_image ENGINE TAG: import TAG's tree into ENGINE with the current recipe label (or, for
# nanoclaw-test/python, build it on python:3.12-slim: faster than importing the tree again).
import_image() {
  local engine=$1 tag=$2 tree stamp t c changes=()
  tree=$(tree_of "$tag")
  t=$(now_ms)
  if [ "$tree" = python-users ]; then
    if [ "$engine" = docker ]; then
      DOCKER_BUILDKIT=0 dk build -q -t "$tag" "$TREES/$tree" >"$LOGS/build-docker.log" 2>&1 ||
        fail "docker build of $tag failed; see $LOGS/build-docker.log"
    else
      pm build -q -t "$tag" "$TREES/$tree" >"$LOGS/build-podman.log" 2>&1 ||
        fail "podman build of $tag failed; see $LOGS/build-podman.log"
    fi
    say "$engine: built $tag in $(($(now_ms) - t)) ms"
    return 0
  fi
  if [ "$tree" = busybox ]; then
    stamp=$BB_STAMP
    changes=(-c 'ENV PATH=/bin' -c 'CMD ["/bin/sh"]')
  else
    stamp=$PY_STAMP
    for c in "${PY_CHANGES[@]}"; do changes+=(-c "$c"); done
  fi
  changes+=(-c "LABEL $LABEL=$stamp")
  if [ "$engine" = docker ]; then
    tar -C "$TREES/$tree" -cf - . | dk import "${changes[@]}" - "$tag" >/dev/null
  else
    tar -C "$TREES/$tree" -cf - . | pm import --quiet "${changes[@]}" - "$tag" >/dev/null
  fi
  say "$engine: imported $tag in $(($(now_ms) - t)) ms"
}

# import_all KIND ENGINE...: import, each engine in the background, the "ENGINE TAG" entries of
# the array todo whose tag is of KIND (busybox or python); their pids go to the array pids.
import_all() {
  local kind=$1 e entry
  shift
  pids=()
  for e in "$@"; do
    (
      for entry in "${todo[@]}"; do
        [ "${entry%% *}" = "$e" ] || continue
        if [ "$kind" = busybox ] && [ "$(tree_of "${entry#* }")" = busybox ]; then import_image "$e" "${entry#* }"; fi
        if [ "$kind" = python ] && [ "$(tree_of "${entry#* }")" != busybox ]; then import_image "$e" "${entry#* }"; fi
      done
    ) &
    pids+=($!)
  done
}

# Import, for each engine started, the images it lacks or has from an older recipe. The trees
# are built once; the engines import at the same time, the busybox image while the python tree
# is still being made.
provide_images() {
  local e tag want todo=() need_bb=0 need_py=0 pids=() pid
  for e in "$@"; do
    for tag in "${TAGS[@]}"; do
      if [ "$(tree_of "$tag")" = busybox ]; then want=$BB_STAMP; else want=$PY_STAMP; fi
      [ "$(label_of "$e" "$tag")" != "$want" ] || continue
      todo+=("$e $tag")
      if [ "$(tree_of "$tag")" = busybox ]; then need_bb=1; else need_py=1; fi
    done
  done
  if [ $need_bb = 1 ]; then
    build_busybox_tree
    import_all busybox "$@"
  fi
  if [ $need_py = 1 ]; then
    build_python_tree
    build_users_context
  fi
  for pid in "${pids[@]}"; do wait "$pid" || fail "an image import failed"; done
  if [ $need_py = 1 ]; then
    import_all python "$@"
    for pid in "${pids[@]}"; do wait "$pid" || fail "an image import failed"; done
  fi
}

# ------------------------------------------------------------------------------ docker
start_docker() {
  local pid t i
  if pid=$(dockerd_pid) && dk version -f '{{.Server.Version}}' >/dev/null 2>&1; then
    say "docker: dockerd already running (pid $pid)"
    return 0
  fi
  docker_leftovers
  rm -f "$PIDFILE" "$SOCK"
  mkdir -p "$DOCKER_DATA" "$DOCKER_RUN"
  # Our own config file, so a host /etc/docker/daemon.json cannot clash with the flags; it also
  # keeps the daemon's trust key out of /etc/docker.
  printf '{ "deprecated-key-path": "%s/docker-key.json" }\n' "$DIR" >"$DIR/daemon.json"
  i=vfs
  [ "$STORAGE" != overlay ] || i=overlay2
  say "docker: starting dockerd (state in $DIR)"
  t=$(now_ms)
  # No systemd: run it in its own session. No iptables rules, no docker0 bridge, ip_forward
  # untouched: containers get only lo unless given --network host.
  setsid dockerd \
    --config-file "$DIR/daemon.json" \
    --data-root "$DOCKER_DATA" --exec-root "$DOCKER_RUN" --pidfile "$PIDFILE" \
    -H "unix://$SOCK" --storage-driver "$i" \
    --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false --bridge=none \
    </dev/null >"$LOGS/dockerd.log" 2>&1 &
  pid=$!
  for i in $(seq 1 240); do
    dk version -f '{{.Server.Version}}' >/dev/null 2>&1 && break
    alive "$pid" || {
      tail -n 5 "$LOGS/dockerd.log" >&2
      fail "dockerd exited; see $LOGS/dockerd.log"
    }
    sleep 0.125
  done
  dk version -f '{{.Server.Version}}' >/dev/null 2>&1 || fail "dockerd did not answer in 30 s; see $LOGS/dockerd.log"
  say "docker: dockerd $(dk version -f '{{.Server.Version}}') up (pid $pid) in $(($(now_ms) - t)) ms"
}

# ------------------------------------------------------------------------------ podman
write_podman_config() {
  local capeff nofile nproc ulimits=""
  mkdir -p "$PODMAN/networks" "$PODMAN/tmp"
  # Without CAP_SYS_RESOURCE (some sandboxes drop it from root) runc cannot raise the rlimits
  # podman asks for by default (nofile 1048576): "error setting rlimit type 7: operation not
  # permitted". Ask for the hard limits we have instead; podman lowers its own nproc to 32768
  # before starting runc, so no more than that.
  capeff=$(awk '/^CapEff:/ { print $2 }' /proc/self/status)
  if (((16#$capeff >> 24 & 1) == 0)); then
    nofile=$(ulimit -Hn)
    nproc=$(ulimit -Hu)
    [ "$nofile" != unlimited ] || nofile=1048576
    if [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; then nproc=32768; fi
    ulimits="default_ulimits = [\"nofile=$nofile:$nofile\", \"nproc=$nproc:$nproc\"]"
  fi
  cat >"$PCONF.new" <<EOF
# written by scripts/engines.sh
[containers]
netns = "none"
$ulimits

[engine]
# runc, not crun: crun refuses hosts with hybrid cgroups (v1 plus a v2 mount)
runtime = "runc"
init_path = "/usr/bin/catatonit"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$PODMAN/events.log"
tmp_dir = "$PODMAN/tmp"

[network]
network_backend = "netavark"
network_config_dir = "$PODMAN/networks"
EOF
  mv "$PCONF.new" "$PCONF"
  cat >"$PSTORE" <<EOF
[storage]
driver = "$STORAGE"
graphroot = "$PODMAN/root"
runroot = "$PODMAN/run"
EOF
  # The default network, which `podman build` RUN steps use: internal, so no NAT rules.
  cat >"$PODMAN/networks/podman.json" <<'EOF'
{
  "name": "podman",
  "id": "652fb6a7fe5d716f27a9f62c8be233f33565818f46811b787871e5cf16b09d47",
  "driver": "bridge",
  "network_interface": "ncengines0",
  "subnets": [{ "subnet": "10.89.250.0/24", "gateway": "10.89.250.1" }],
  "ipv6_enabled": false,
  "internal": true,
  "dns_enabled": false,
  "ipam_options": { "driver": "host-local" }
}
EOF
}

start_podman() {
  local v sum
  write_podman_config
  # podman has no daemon: check the config once (podman info takes a third of a second)
  sum=$(cat "$PCONF" "$PSTORE" "$PODMAN/networks/podman.json" | sha256sum)
  if [ "$(cat "$PODMAN/checked" 2>/dev/null)" = "$sum" ]; then
    say "podman: config unchanged (storage in $PODMAN)"
    return 0
  fi
  v=$(pm info --format '{{.Version.Version}}' 2>"$LOGS/podman-info.log") ||
    fail "podman info failed; see $LOGS/podman-info.log"
  echo "$sum" >"$PODMAN/checked"
  say "podman: $v ready (storage in $PODMAN)"
}

# ------------------------------------------------------------------------------ rootless podman
start_rootless() {
  local home uid conf t
  t=$(now_ms)
  if ! id "$ROOTLESS_USER" >/dev/null 2>&1; then
    useradd --create-home --shell /usr/sbin/nologin "$ROOTLESS_USER" ||
      fail "could not create the rootless podman user $ROOTLESS_USER"
    say "podman (rootless): made user $ROOTLESS_USER"
  fi
  subids /etc/subuid
  subids /etc/subgid
  home=$(getent passwd "$ROOTLESS_USER" | cut -d: -f6)
  uid=$(id -u "$ROOTLESS_USER")
  install -d -m 0700 -o "$uid" -g "$(id -g "$ROOTLESS_USER")" "/run/user/$uid"
  conf=$(sed -e '/^events_logfile_path/d' -e '/^tmp_dir/d' -e '/^\[network\]/,$d' "$PCONF")
  ru mkdir -p "$home/.config/containers"
  printf '%s\n' "$conf" | ru sh -c "cat >'$home/.config/containers/containers.conf'"
  if [ "$(ru podman image inspect --format "{{index .Labels \"$LABEL\"}}" nanoclaw-test/busybox:latest 2>/dev/null)" != "$BB_STAMP" ]; then
    build_busybox_tree
    tar -C "$TREES/busybox" -cf - . |
      ru podman import --quiet -c 'ENV PATH=/bin' -c 'CMD ["/bin/sh"]' -c "LABEL $LABEL=$BB_STAMP" \
        - nanoclaw-test/busybox:latest >"$LOGS/rootless.log" 2>&1 ||
      fail "rootless podman could not import the busybox image; see $LOGS/rootless.log"
  fi
  say "podman (rootless): user $ROOTLESS_USER ready in $(($(now_ms) - t)) ms"
}

# ------------------------------------------------------------------------------ main
BB_STAMP=$(busybox_recipe)
PY_STAMP=$(python_recipe)
python_tree_fresh || start_pip
engines=()
if [ $want_docker = 1 ]; then
  start_docker
  engines+=(docker)
fi
if [ $want_podman = 1 ]; then
  start_podman
  engines+=(podman)
fi
provide_images "${engines[@]}"
if [ $want_podman = 1 ] && [ -n "$ROOTLESS_USER" ]; then start_rootless; fi
if [ -n "$PIP_PID" ]; then wait "$PIP_PID" || true; fi # started for a tree no image needed
say "ready in $(($(now_ms) - t_start)) ms"

printf 'export ENGINES_DIR=%q\n' "$DIR"
if [ $want_docker = 1 ]; then printf 'export DOCKER_HOST=%q\n' "unix://$SOCK"; fi
if [ $want_podman = 1 ]; then
  printf 'export CONTAINERS_CONF=%q\n' "$PCONF"
  printf 'export CONTAINERS_STORAGE_CONF=%q\n' "$PSTORE"
  if [ -n "$ROOTLESS_USER" ]; then printf 'export NANOCLAW_ROOTLESS_USER=%q\n' "$ROOTLESS_USER"; fi
fi
