"""The guest kernel: found on the host, copied beside the images with its initramfs.

Layout of ``{images_dir}/kernel/`` (shared by every base and group disk of the folder,
built in an owner-locked work folder and renamed into place)::

    vmlinuz        the host's kernel (Debian's linux-image-cloud-amd64 by default)
    vmlinux        the same kernel uncompressed, booted through its PVH entry point (saves
                   the in-guest decompression, ~0.4 s under TCG); absent when it cannot be
                   extracted
    initrd.img     the guest program as /init, the modules it loads, busybox's ``ip``
    kernel.json    what was built from what (a changed guest program rebuilds the folder)

The guest program (``guest/nanoclaw-guest.c``) is compiled here with the host's C
compiler, statically, so it needs nothing from the initramfs or the disk.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import lzma
import os
import re
import shutil
import struct
import subprocess
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

from nanoclaw_runtimes_core.errors import EngineUnavailable
from nanoclaw_runtimes_core.record import Record

from .cpio import CpioWriter

MODULES = ("virtio_mmio", "virtio_blk", "virtio_console", "virtiofs")
"""Modules the guest needs; their dependencies (virtio, virtio_ring, fuse) come along."""

NET_MODULES = ("virtio_net",)
"""Loaded only when the guest gets a network (``VIBE_NETWORK``)."""

BOOTED = "nanoclaw-qemu: guest booted"
"""The console line the guest program prints once it is ready (and in a probe boot)."""

GUEST_SOURCE = "nanoclaw-guest.c"
_GUEST = "guest"

LAYOUT = 3
"""Version of the kernel folder's layout and initramfs; a folder of another one is rebuilt
(3: the C guest program with virtio-serial channels)."""

CC_FLAGS = ("-static", "-O2", "-Wall")


class KernelFiles(Record):
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
    return resources.files(__package__).joinpath(_GUEST).joinpath(name).read_bytes()


def guest_digest() -> str:
    """What the initramfs is built from (layout, guest program, module lists): a kernel
    folder built from anything else is rebuilt."""
    h = hashlib.sha256(f"{LAYOUT}|{MODULES}|{NET_MODULES}|{CC_FLAGS}".encode())
    h.update(guest_file(GUEST_SOURCE))
    h.update(Path(__file__).read_bytes())  # how the initramfs is written
    return h.hexdigest()[:16]


def find_cc() -> str:
    """The C compiler the guest program is built with."""
    for name in ("cc", "gcc"):
        path = shutil.which(name)
        if path:
            return path
    raise EngineUnavailable(
        "the QEMU engine builds its guest program with a C compiler, and none was found: "
        "install one with `apt-get install gcc libc6-dev`"
    )


def compile_guest(out_path: Path) -> None:
    """Compile the guest program (static) to ``out_path``."""
    cc = find_cc()
    source = out_path.with_name(GUEST_SOURCE)
    source.write_bytes(guest_file(GUEST_SOURCE))
    try:
        proc = subprocess.run(
            [cc, *CC_FLAGS, "-o", str(out_path), str(source)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired:
        raise EngineUnavailable(f"{cc} took over 2 minutes to build the guest program") from None
    finally:
        source.unlink(missing_ok=True)
    if proc.returncode != 0:
        raise EngineUnavailable(
            f"{cc} could not build the guest program (a static C program: it needs the C "
            f"library's static files, `apt-get install libc6-dev`): {proc.stderr.strip()[-600:]}"
        )


def write_initramfs(out_path: Path, version: str, busybox: Path, guest: Path) -> list[str]:
    """Write the initramfs: the guest program as /init, the modules, busybox as ``ip``.

    Returns the module names in load order."""
    modules = module_order(version, MODULES)
    names = [_module_name(str(m)) for m in modules]
    net = [m for m in module_order(version, MODULES + NET_MODULES) if m not in modules]
    net_names = [_module_name(str(m)) for m in net]
    missing = [m for m in ("virtio_console", "virtiofs") if m.replace("-", "_") not in names]
    if missing and not _built_in(version, missing):
        raise EngineUnavailable(
            f"the guest kernel {version} has no {', '.join(missing)} module: the QEMU engine "
            "needs it (Debian's linux-image-cloud-amd64 has both)"
        )
    with out_path.open("wb") as f:
        w = CpioWriter(f)
        for d in ("bin", "dev", "proc", "sys", "lib", "lib/modules", "etc", "etc/nanoclaw"):
            w.directory(d)
        w.file("init", guest.read_bytes(), 0o755)
        w.file("bin/busybox", busybox.read_bytes(), 0o755)
        w.symlink("bin/ip", "busybox")
        for path, name in zip(modules + net, names + net_names, strict=False):
            w.file(f"lib/modules/{name}.ko", read_module(path))
        w.file("etc/nanoclaw/modules", ("\n".join(names) + "\n").encode())
        w.file("etc/nanoclaw/modules-net", ("\n".join(net_names) + "\n").encode())
        w.close()
    return names


def _built_in(version: str, names: Iterable[str]) -> bool:
    """Whether every module in ``names`` is built into the kernel (modules.builtin)."""
    with contextlib.suppress(OSError):
        text = (modules_root(version) / "modules.builtin").read_text()
        built = {_module_name(line.strip()) for line in text.splitlines() if line.strip()}
        return all(n in built for n in names)
    return False


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
    if meta.get("layout") != LAYOUT or meta.get("guest") != guest_digest():
        return None
    kernel = directory / ("vmlinux" if meta.get("pvh") else "vmlinuz")
    initrd = directory / "initrd.img"
    if not (kernel.is_file() and initrd.is_file()):
        return None
    return KernelFiles(
        directory=directory, kernel=kernel, initrd=initrd, version=str(meta.get("version"))
    )


def build_kernel_dir(directory: Path, *, boot: Path = Path("/boot")) -> KernelFiles:
    """(Re)build ``directory`` from the host's kernel, atomically: in an owner-locked work
    folder beside it (a killed build leaves only that, swept later), then renamed."""
    from ..cow import build_folder

    source, version = find_host_kernel(boot)
    busybox = find_busybox()
    directory.parent.mkdir(parents=True, exist_ok=True)
    with build_folder(directory) as work:
        tmp = work / "kernel"
        tmp.mkdir()
        guest = work / "nanoclaw-guest"
        compile_guest(guest)
        shutil.copyfile(source, tmp / "vmlinuz")
        pvh = extract_vmlinux(source, tmp / "vmlinux")
        modules = write_initramfs(tmp / "initrd.img", version, busybox, guest)
        meta = {
            "layout": LAYOUT,
            "guest": guest_digest(),
            "version": version,
            "source": str(source),
            "pvh": pvh,
            "modules": modules,
        }
        (tmp / "kernel.json").write_text(json.dumps(meta, indent=2) + "\n")
        os.chmod(tmp, 0o755)
        if directory.exists():
            os.replace(directory, work / "old")
        os.replace(tmp, directory)
    files = read_kernel_dir(directory)
    if files is None:
        raise EngineUnavailable(f"the kernel folder {directory} could not be built")
    return files


def ensure_kernel_dir(images_dir: Path) -> KernelFiles:
    """The kernel files beside the images, built from the host's kernel when missing or
    built from another guest program."""
    directory = kernel_dir(images_dir)
    files = read_kernel_dir(directory)
    if files is not None:
        return files
    import nanoclaw_runtimes_core as nc

    images_dir.mkdir(parents=True, exist_ok=True)
    with nc.FileLock(images_dir / ".kernel.lock"):
        return read_kernel_dir(directory) or build_kernel_dir(directory)
