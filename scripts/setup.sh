#!/usr/bin/env bash
# Set up a development environment on a Debian/Ubuntu machine:
# the sandbox engines that run on Linux (Debian packages) and a virtual
# environment in .venv with the core, the three runtimes and the test tools.
set -euo pipefail
cd "$(dirname "$0")/.."

DEB_PACKAGES=(
  bubblewrap            # the container runtime's default engine on Linux
  qemu-system-x86       # the vibe runtime's engine on Linux
  linux-image-cloud-amd64  # the guest kernel QEMU boots (ext4 built in, virtio modules)
  busybox-static        # the guest's userland in minimal base images and the initramfs
  e2fsprogs             # mkfs.ext4 -d: base images without root mounts
  xfsprogs              # mkfs.xfs -m reflink=1: tests of the reflink clone path
  cpio                  # packing the guest initramfs
  gcc                   # the QEMU engine's guest program (a static C program)
  libc6-dev             # the C library's static files for it
  procps                # ps, for leak checks in tests
)

PYTHON="${PYTHON:-python3}"
missing=()
# A Debian system Python needs python3-venv for `python3 -m venv`.
"$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
for pkg in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "Installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "warning: not a Debian system; install these yourself: ${missing[*]}" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q \
  -e ".[test]" \
  -e plugins/container \
  -e plugins/vibe \
  -e plugins/tart
echo "Environment ready: . .venv/bin/activate"
