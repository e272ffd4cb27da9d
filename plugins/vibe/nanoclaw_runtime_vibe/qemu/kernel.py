"""The guest kernel: found on the host, copied beside the images with its initramfs.

Layout of ``{images_dir}/kernel/`` (shared by every base and group disk of
the folder, written under a temporary name and renamed)::

    vmlinuz        the host's kernel (Debian's linux-image-cloud-amd64 by default)
    vmlinux        the same kernel uncompressed, booted through its PVH entry
                   point (saves the in-guest decompression, ~0.4 s under TCG);
                   absent when it cannot be extracted
    initrd.img     busybox + the virtio/virtiofs modules + our init (uncompressed cpio)
    kernel.json    what was built from what
"""

from __future__ import annotations

import contextlib
import gzip
import json
import lzma
import os
import re
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

from attrs import define

from nanoclaw_runtimes_core.errors import EngineUnavailable

from .cpio import CpioWriter

DISK_MODULES = ("virtio_mmio", "virtio_blk")
"""Modules the guest needs for its disk; their dependencies (virtio, virtio_ring) come along."""

MODULES = (*DISK_MODULES, "virtiofs")
"""Modules the guest needs; the shares' (fuse, virtiofs) load while the disk mounts."""

NET_MODULES = ("virtio_net",)
"""Loaded only when the guest gets a network (``VIBE_QEMU_NETWORK=user``)."""

BOOTED = "nanoclaw-qemu: guest booted"
"""The console line the guest init prints once the disk and the shares are mounted."""

_GUEST = "guest"

LAYOUT = 2
"""Version of the kernel folder's layout and initramfs; a folder of another one is rebuilt
(2: the init reads ``etc/nanoclaw/fstab``, ``etc/nanoclaw/bin`` and ``modules-fs``)."""

FSTAB = """\
proc /newroot/proc proc defaults 0 0
sysfs /newroot/sys sysfs defaults 0 0
devtmpfs /newroot/dev devtmpfs defaults 0 0
devpts /newroot/dev/pts devpts defaults 0 0
tmpfs /newroot/dev/shm tmpfs mode=1777 0 0
tmpfs /newroot/tmp tmpfs mode=1777 0 0
/etc/nanoclaw/bin /newroot/nanoclaw/bin none bind 0 0
"""
"""The guest's system folders, mounted by the init with one ``mount -a`` (one process, not
seven: each costs milliseconds under TCG). ``nanoclaw/bin`` holds the poweroff shims."""


@define(frozen=True, kw_only=True)
class KernelFiles:
    """What the engine boots: a kernel image and an initramfs."""

    directory: Path
    kernel: Path
    initrd: Path
    version: str


def kernel_dir(images_dir: Path) -> Path:
    """Where the kernel files of an images folder live."""
    return images_dir / "kernel"


def find_host_kernel(boot: Path = Path("/boot")) -> tuple[Path, str]:
    """The host kernel to boot guests with: the newest ``*-cloud-amd64`` one, else the newest
    kernel whose modules include the virtio drivers. Raises EngineUnavailable if none."""
    candidates = sorted(boot.glob("vmlinuz-*"), key=lambda p: _version_key(p.name[8:]))
    cloud = [p for p in candidates if p.name.endswith("-cloud-amd64")]
    for path in reversed(cloud + [p for p in candidates if p not in cloud]):
        version = path.name[len("vmlinuz-") :]
        if module_path(version, "virtio_blk") is not None and os.access(path, os.R_OK):
            return path, version
    raise EngineUnavailable(
        f"no guest kernel found in {boot}: the QEMU engine boots the host's Debian cloud "
        "kernel. Install it with `apt-get install linux-image-cloud-amd64` (it need not be "
        "the running kernel)"
    )


def _version_key(version: str) -> list[int]:
    return [int(x) for x in re.findall(r"\d+", version)]


def modules_root(version: str) -> Path:
    return Path("/lib/modules") / version


def module_path(version: str, name: str) -> Path | None:
    """The file of module ``name`` (built as a module) for kernel ``version``, or None."""
    dep = modules_root(version) / "modules.dep"
    with contextlib.suppress(OSError):
        for line in dep.read_text().splitlines():
            path = line.split(":", 1)[0]
            if _module_name(path) == name.replace("-", "_"):
                return modules_root(version) / path
    return None


def _module_name(path: str) -> str:
    base = path.rsplit("/", 1)[-1]
    return base.split(".ko", 1)[0].replace("-", "_")


def module_order(version: str, wanted: Iterable[str]) -> list[Path]:
    """The files of ``wanted`` modules and their dependencies, dependencies first.

    A module built into the kernel is simply not listed."""
    deps: dict[str, tuple[str, list[str]]] = {}
    for line in (modules_root(version) / "modules.dep").read_text().splitlines():
        path, _, rest = line.partition(":")
        deps[_module_name(path)] = (path, rest.split())
    ordered: list[str] = []

    def visit(name: str) -> None:
        if name in ordered or name not in deps:
            return
        for d in reversed(deps[name][1]):
            visit(_module_name(d))
        ordered.append(name)

    for w in wanted:
        visit(w.replace("-", "_"))
    return [modules_root(version) / deps[n][0] for n in ordered]


def read_module(path: Path) -> bytes:
    """A module's bytes, decompressed if the distribution compressed it."""
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    if path.name.endswith(".zst"):
        zstd = shutil.which("zstd")
        if zstd is None:
            raise EngineUnavailable(f"{path} is zstd-compressed: install zstd")
        return subprocess.run([zstd, "-dc", str(path)], capture_output=True, check=True).stdout
    return data


def find_busybox() -> Path:
    """A static busybox (Debian package busybox-static) for the initramfs and minimal bases."""
    for candidate in ("/bin/busybox", "/usr/bin/busybox"):
        p = Path(candidate)
        if p.is_file() and _is_static(p):
            return p
    raise EngineUnavailable(
        "no static busybox found (/bin/busybox): install it with `apt-get install busybox-static`"
    )


def _is_static(path: Path) -> bool:
    """True for an ELF without a program interpreter (statically linked)."""
    with path.open("rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:
            return False
        (phoff,) = struct.unpack_from("<Q", head, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(
        struct.unpack_from("<I", table, i * phentsize)[0] != 3  # PT_INTERP
        for i in range(phnum)
    )


def busybox_applets(busybox: Path) -> list[str]:
    """Install paths of every applet (``usr/bin/env``, ``sbin/poweroff`` …)."""
    out = subprocess.run([str(busybox), "--list-full"], capture_output=True, text=True, check=True)
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def guest_file(name: str) -> bytes:
    """A file shipped in the package's ``guest/`` folder."""
    return resources.files(__package__).joinpath(_GUEST, name).read_bytes()


def write_initramfs(out_path: Path, version: str, busybox: Path) -> list[str]:
    """Write the initramfs: busybox (an applet link each in /bin), modules, init, shims.

    Returns the module names in load order."""
    modules = module_order(version, MODULES)
    names = [_module_name(str(m)) for m in modules]
    disk = module_order(version, DISK_MODULES)
    disk_names = [_module_name(str(m)) for m in disk]
    fs_names = [n for n in names if n not in disk_names]
    net = [m for m in module_order(version, MODULES + NET_MODULES) if m not in modules]
    net_names = [_module_name(str(m)) for m in net]
    with out_path.open("wb") as f:
        w = CpioWriter(f)
        for d in ("bin", "dev", "proc", "sys", "newroot", "lib", "lib/modules", "etc"):
            w.directory(d)
        w.directory("etc/nanoclaw")
        w.file("bin/busybox", busybox.read_bytes(), 0o755)
        for applet in sorted({a.rsplit("/", 1)[-1] for a in busybox_applets(busybox)}):
            if applet != "busybox":
                w.symlink(f"bin/{applet}", "busybox")
        for path, name in zip(modules + net, names + net_names, strict=False):
            w.file(f"lib/modules/{name}.ko", read_module(path))
        w.file("init", guest_file("init"), 0o755)
        w.file("etc/nanoclaw/modules", ("\n".join(disk_names) + "\n").encode())
        w.file("etc/nanoclaw/modules-fs", ("\n".join(fs_names) + "\n").encode())
        w.file("etc/nanoclaw/modules-net", ("\n".join(net_names) + "\n").encode())
        w.file("etc/nanoclaw/resolv.conf", b"nameserver 10.0.2.3\n")
        w.file("etc/nanoclaw/booted", (BOOTED + "\n").encode())
        w.file("etc/nanoclaw/fstab", FSTAB.encode())
        w.directory("etc/nanoclaw/bin")
        w.file("etc/nanoclaw/bin/poweroff", guest_file("shim-poweroff"), 0o755)
        w.file("etc/nanoclaw/bin/systemctl", guest_file("shim-systemctl"), 0o755)
        w.symlink("etc/nanoclaw/bin/reboot", "poweroff")
        w.symlink("etc/nanoclaw/bin/halt", "poweroff")
        w.close()
    return names


# --------------------------------------------------------------------------- PVH


def extract_vmlinux(bzimage: Path, out_path: Path) -> bool:
    """Decompress the kernel inside a bzImage to an ELF with a PVH entry note.

    QEMU boots such an ELF directly (no decompression in the guest). Returns
    False, writing nothing, when the payload or the note is missing or the
    decompressor is not installed."""
    data = bzimage.read_bytes()
    if len(data) < 0x250 or data[0x202:0x206] != b"HdrS":
        return False
    setup_sects = data[0x1F1] or 4
    offset, length = struct.unpack_from("<II", data, 0x248)
    start = (setup_sects + 1) * 512 + offset
    payload = data[start : start + length]
    try:
        elf = _decompress(payload)
    except (OSError, ValueError, lzma.LZMAError, subprocess.CalledProcessError):
        return False
    if elf is None or not has_pvh_note(elf):
        return False
    out_path.write_bytes(elf)
    return True


def _decompress(payload: bytes) -> bytes | None:
    if payload[:2] == b"\x1f\x8b":
        return gzip.decompress(payload)
    if payload[:6] == b"\xfd7zXZ\x00":
        return lzma.decompress(payload, format=lzma.FORMAT_XZ)
    if payload[:3] == b"\x5d\x00\x00":
        return lzma.decompress(payload, format=lzma.FORMAT_ALONE)
    tool = {b"\x02\x21\x4c\x18": "lz4", b"\x28\xb5\x2f\xfd": "zstd"}.get(payload[:4])
    if tool is None or shutil.which(tool) is None:
        return None
    # The payload may carry trailing bytes (the size): the tools stop at the frame end.
    proc = subprocess.run([tool, "-dc"], input=payload, capture_output=True)
    return proc.stdout if proc.stdout[:4] == b"\x7fELF" else None


def has_pvh_note(elf: bytes) -> bool:
    """True when the ELF carries XEN_ELFNOTE_PHYS32_ENTRY (18), QEMU's PVH boot entry."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2:
        return False
    (phoff,) = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for i in range(phnum):
        p_type, _flags, p_offset = struct.unpack_from("<IIQ", elf, phoff + i * phentsize)
        (p_filesz,) = struct.unpack_from("<Q", elf, phoff + i * phentsize + 32)
        if p_type != 4:  # PT_NOTE
            continue
        pos, end = p_offset, p_offset + p_filesz
        while pos + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", elf, pos)
            name = elf[pos + 12 : pos + 12 + namesz].rstrip(b"\0")
            if name == b"Xen" and ntype == 18:
                return True
            pos += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    return False


# --------------------------------------------------------------------------- the folder


def read_kernel_dir(directory: Path) -> KernelFiles | None:
    """The kernel files of a folder built earlier, or None when incomplete."""
    try:
        meta = json.loads((directory / "kernel.json").read_text())
    except (OSError, ValueError):
        return None
    if meta.get("layout") != LAYOUT:
        return None
    kernel = directory / ("vmlinux" if meta.get("pvh") else "vmlinuz")
    initrd = directory / "initrd.img"
    if not (kernel.is_file() and initrd.is_file()):
        return None
    return KernelFiles(
        directory=directory, kernel=kernel, initrd=initrd, version=str(meta.get("version"))
    )


def build_kernel_dir(directory: Path, *, boot: Path = Path("/boot")) -> KernelFiles:
    """(Re)build ``directory`` from the host's kernel, atomically (temp folder, rename)."""
    source, version = find_host_kernel(boot)
    busybox = find_busybox()
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.partial-", dir=directory.parent))
    try:
        shutil.copyfile(source, tmp / "vmlinuz")
        pvh = extract_vmlinux(source, tmp / "vmlinux")
        modules = write_initramfs(tmp / "initrd.img", version, busybox)
        meta = {
            "layout": LAYOUT,
            "version": version,
            "source": str(source),
            "pvh": pvh,
            "modules": modules,
        }
        (tmp / "kernel.json").write_text(json.dumps(meta, indent=2) + "\n")
        os.chmod(tmp, 0o755)
        old = None
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
            os.replace(directory, old)
        os.replace(tmp, directory)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    files = read_kernel_dir(directory)
    assert files is not None
    return files


def ensure_kernel_dir(images_dir: Path) -> KernelFiles:
    """The kernel files beside the images, built from the host's kernel when missing."""
    directory = kernel_dir(images_dir)
    files = read_kernel_dir(directory)
    if files is not None:
        return files
    from filelock import FileLock

    images_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(images_dir / ".kernel.lock")):
        return read_kernel_dir(directory) or build_kernel_dir(directory)
