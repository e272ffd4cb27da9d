"""``prepare --base vibe`` on Linux: a sparse ext4 raw image made without mounting anything.

- ``minimal``: busybox only, in a second or two (tests, demos); its default agent is a
  busybox ``sh``/``awk`` example agent (:data:`MINIMAL_AGENT`).
- full: a Debian root file system from Debian's packages (``mmdebstrap``, else
  ``debootstrap``) with git, Node.js, npm, Python and the agent CLIs that npm
  can install, then ``mkfs.ext4 -d`` writes it into the image; its default agent is the
  core's example agent, run by the base's python3.

Both write the image as an owner-locked partial beside the target and rename it at the
end (``cow.atomic_output``), rebuild the kernel files beside it (``kernel/``) the same way,
and record the base's default agent (``images.write_base_info``): an interrupted build
leaves the previous base as it was, and only temporaries that the next run sweeps.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import nanoclaw_runtimes_core as nc
from nanoclaw_runtimes_core.errors import EngineUnavailable, UserError

from ..cow import allocated_bytes, atomic_output, build_folder
from ..engines import BaseBuild
from . import kernel

DEFAULT_SIZE_GIB = 3
"""Apparent size of a minimal base (the seed's 3 GB); it costs only its data."""
DEBIAN_SIZE_GIB = 8
"""A Debian base with node and the agent CLIs fills ~2.5 GB: leave room to work."""
DEBIAN_SUITE = "bookworm"
DEBIAN_PACKAGES = (
    "bash",
    "ca-certificates",
    "coreutils",
    "curl",
    "git",
    "nodejs",
    "npm",
    "procps",
    "python3",
    "python3-pip",
    "python3-venv",
)
AGENT_CLIS = (
    "@anthropic-ai/claude-code",
    "@openai/codex",
    "@google/gemini-cli",
    "opencode-ai",
)
"""npm packages tried one by one; a failure is reported, not fatal."""

Progress = Callable[[str, float | None], None]

MINIMAL_AGENT_PATH = "/usr/local/bin/nanoclaw-example-agent"
MINIMAL_AGENT = ("/bin/sh", MINIMAL_AGENT_PATH)
"""The minimal base's default agent: busybox sh and awk, no Python."""
DEBIAN_AGENT = ("python3", nc.EXAMPLE_AGENT)
"""The Debian base's default agent: the core's example agent (also shown by the engine)."""


def _install_example_agents(root: Path, *, python: bool) -> None:
    """Put the example agent(s) into a root file system being built."""
    agent = root / MINIMAL_AGENT_PATH.lstrip("/")
    agent.parent.mkdir(parents=True, exist_ok=True)
    agent.write_bytes(kernel.guest_file("minimal-agent.sh"))
    os.chmod(agent, 0o755)
    if python:
        target = root / nc.EXAMPLE_AGENT.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(nc.example_agent_file(), target)
        os.chmod(target, 0o644)


def _record(build: BaseBuild, agent: Sequence[str], kind: str, **info: object) -> None:
    from .. import images

    images.write_base_info(build.target, agent=agent, kind=kind, engine="qemu", **info)


def mkfs_ext4(root: Path, image: Path, *, size_gib: int, label: str = "nanoclaw") -> None:
    """Write ``root`` (a folder, or a tarball with e2fsprogs >= 1.47) into a new sparse image.

    The journal is not zeroed (``lazy_journal_init``): the file is new and
    sparse, its holes already read as zeros, so the image costs only its data.
    """
    mkfs = shutil.which("mkfs.ext4") or shutil.which("mke2fs")
    if mkfs is None:
        raise EngineUnavailable("mkfs.ext4 not found: install it with `apt-get install e2fsprogs`")
    with image.open("wb") as f:
        f.truncate(size_gib * 2**30)
    argv = [mkfs, "-q", "-F", "-t", "ext4", "-L", label, "-d", str(root)]
    argv += ["-E", "lazy_itable_init=0,lazy_journal_init=1,root_owner=0:0", str(image)]
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"mkfs.ext4 could not build {image.name}: {proc.stderr.strip()}")


def minimal_rootfs(root: Path, busybox: Path) -> None:
    """A busybox root file system: every applet linked at its usual path."""
    for d in (
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "etc",
        "root",
        "tmp",
        "proc",
        "sys",
        "dev",
        "workspace",
        "nanoclaw",
        "var/tmp",
    ):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(busybox, root / "bin/busybox")
    os.chmod(root / "bin/busybox", 0o755)
    for applet in kernel.busybox_applets(busybox):
        rel = applet.lstrip("/")
        if rel == "bin/busybox":
            continue
        link = root / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to("/bin/busybox")
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\n")
    (root / "etc/hostname").write_text("nanoclaw\n")
    (root / "etc/os-release").write_text(
        'NAME="nanoclaw minimal"\nID=nanoclaw-minimal\nPRETTY_NAME="nanoclaw minimal (busybox)"\n'
    )
    os.chmod(root / "tmp", 0o1777)
    _install_example_agents(root, python=False)


def build_minimal(build: BaseBuild, *, size_gib: int) -> str:
    """The busybox base: seconds, a few MB allocated."""
    busybox = kernel.find_busybox()
    build.progress("writing a busybox root file system", 0.1)
    with build_folder(build.target) as tmp:
        root = tmp / "root"
        minimal_rootfs(root, busybox)
        build.progress(f"writing {build.target.name} ({size_gib} GiB sparse ext4)", 0.4)
        with atomic_output(build.target) as image:
            mkfs_ext4(root, image, size_gib=size_gib)
            build.progress("preparing the guest kernel and initramfs", 0.7)
            files = kernel.build_kernel_dir(kernel.kernel_dir(build.target.parent))
    _record(build, MINIMAL_AGENT, "minimal")
    build.progress("done", 1.0)
    return _summary(build.target, "minimal busybox base", files)


def _summary(target: Path, what: str, files: kernel.KernelFiles, note: str = "") -> str:
    size = target.stat().st_size / 2**30
    used = allocated_bytes(target) / 2**20
    text = (
        f"built {target} ({what}): {size:.0f} GiB sparse ext4, {used:.0f} MB allocated; "
        f"guest kernel {files.version}"
    )
    return text + (f"; {note}" if note else "")


# --------------------------------------------------------------------------- Debian


def _run_logged(argv: Sequence[str], progress: Progress, lo: float, hi: float) -> None:
    """Run ``argv``, showing each output line as progress between ``lo`` and ``hi``."""
    proc = subprocess.Popen(
        list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    )
    assert proc.stdout is not None
    tail: list[str] = []
    frac = lo
    try:
        for line in proc.stdout:
            line = line.rstrip()
            if not line:
                continue
            tail = ([*tail, line])[-15:]
            frac = min(hi, frac + (hi - frac) * 0.02)
            progress(line[:160], frac)
        rc = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if rc != 0:
        raise UserError(f"{Path(argv[0]).name} failed (exit {rc}):\n" + "\n".join(tail))


BUILD_CA = "/tmp/nanoclaw-build-ca.crt"
"""Where the host's extra CA bundle (``NODE_EXTRA_CA_CERTS``) is put during npm installs only."""


def host_ca_bundle() -> Path | None:
    """The CA bundle the host's Node.js is told to trust (e.g. behind a TLS-inspecting proxy)."""
    value = os.environ.get("NODE_EXTRA_CA_CERTS")
    return Path(value) if value and Path(value).is_file() else None


def _npm_hook(clis: Sequence[str], ca: Path | None = None) -> str:
    """A customize hook installing each CLI on its own; results land in /etc/nanoclaw-clis.

    With ``ca``, the host's CA bundle is trusted for these installs and removed after."""
    lines = ['set +e; : > "$1/etc/nanoclaw-clis"']
    env = ""
    if ca is not None:
        lines.append(f'cp {shlex.quote(str(ca))} "$1{BUILD_CA}"')
        env = f"env NODE_EXTRA_CA_CERTS={BUILD_CA} "
    for cli in clis:
        q = cli.replace("'", "")
        lines.append(
            f"if chroot \"$1\" {env}npm install -g --no-audit --no-fund '{q}'; "
            f"then echo 'installed {q}' >> \"$1/etc/nanoclaw-clis\"; "
            f"else echo 'failed {q}' >> \"$1/etc/nanoclaw-clis\"; fi"
        )
    if ca is not None:
        lines.append(f'rm -f "$1{BUILD_CA}"')
    lines.append('rm -rf "$1/root/.npm"')  # the download cache: hundreds of MB
    lines.append("true")
    return "; ".join(lines)


def build_debian(build: BaseBuild, *, size_gib: int, suite: str, clis: Sequence[str]) -> str:
    """A Debian base with git, Node.js, npm, Python and the installable agent CLIs."""
    mmdebstrap = shutil.which("mmdebstrap")
    debootstrap = shutil.which("debootstrap")
    if mmdebstrap is None and debootstrap is None:
        raise EngineUnavailable(
            "building a Debian base needs mmdebstrap or debootstrap: "
            "`apt-get install mmdebstrap` (or use `prepare --base vibe --minimal`)"
        )
    if mmdebstrap is None and os.geteuid() != 0:
        raise EngineUnavailable("debootstrap needs root: run as root or install mmdebstrap")
    with build_folder(build.target) as tmp_path:
        tmp = str(tmp_path)
        root = Path(tmp) / "root"
        packages = ",".join(DEBIAN_PACKAGES)
        if mmdebstrap is not None:
            # As root, a folder keeps ownership for mkfs.ext4 -d; unprivileged, a tarball
            # (mkfs.ext4 reads tarballs from e2fsprogs 1.47.1 on).
            tarball = root if os.geteuid() == 0 else Path(tmp) / "root.tar"
            argv = [mmdebstrap, "--variant=minbase", f"--include={packages}"]
            argv += ["--mode=" + ("root" if os.geteuid() == 0 else "unshare")]
            argv += [f"--customize-hook={_npm_hook(clis, host_ca_bundle())}"] if clis else []
            argv += ['--customize-hook=mkdir -p "$1/workspace" "$1/nanoclaw"']
            agent_dir = shlex.quote(os.path.dirname(nc.EXAMPLE_AGENT))
            agent_src = shlex.quote(str(nc.example_agent_file()))
            argv += [
                f'--customize-hook=mkdir -p "$1"{agent_dir} && '
                f'cp {agent_src} "$1"{shlex.quote(nc.EXAMPLE_AGENT)}'
            ]
            argv += [suite, str(tarball)]
            build.progress(f"mmdebstrap {suite} (Debian packages)", 0.02)
            _run_logged(argv, build.progress, 0.02, 0.85)
            source: Path = tarball
            clis_file = root / "etc/nanoclaw-clis" if tarball == root else None
        else:
            assert debootstrap is not None
            argv = [debootstrap, "--variant=minbase", f"--include={packages}", suite, str(root)]
            build.progress(f"debootstrap {suite} (Debian packages)", 0.02)
            _run_logged(argv, build.progress, 0.02, 0.7)
            (root / "workspace").mkdir(exist_ok=True)
            (root / "nanoclaw").mkdir(exist_ok=True)
            _install_example_agents(root, python=True)
            if clis:
                build.progress("installing the agent CLIs with npm", 0.7)
                _run_logged(
                    ["/bin/sh", "-c", _npm_hook(clis, host_ca_bundle()), "hook", str(root)],
                    build.progress,
                    0.7,
                    0.85,
                )
            source = root
            clis_file = root / "etc/nanoclaw-clis"
        build.progress(f"writing {build.target.name} ({size_gib} GiB sparse ext4)", 0.87)
        with atomic_output(build.target) as image:
            mkfs_ext4(source, image, size_gib=size_gib)
            build.progress("preparing the guest kernel and initramfs", 0.95)
            files = kernel.build_kernel_dir(kernel.kernel_dir(build.target.parent))
        report = _cli_report(source, clis_file)
    _record(build, DEBIAN_AGENT, "debian", suite=suite)
    build.progress("done", 1.0)
    return _summary(build.target, f"Debian {suite}", files, report)


def _cli_report(source: Path, clis_file: Path | None) -> str:
    """What the npm hook installed, read from the root file system or the tarball."""
    text = ""
    if clis_file is not None and clis_file.is_file():
        text = clis_file.read_text()
    elif source.suffix == ".tar":
        import tarfile

        try:
            with tarfile.open(source) as tar:
                member = tar.extractfile("./etc/nanoclaw-clis")
                text = member.read().decode() if member else ""
        except (KeyError, OSError, tarfile.TarError):
            text = ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "agent CLIs: " + ("; ".join(lines) if lines else "none installed")


def build_base(build: BaseBuild, *, settings: Any) -> str:
    """Dispatch on ``build.options``: ``minimal`` (bool), ``size_gib`` (int), ``suite`` (str),
    ``clis`` (comma-separated npm packages, empty for none)."""
    options = dict(build.options)
    for unsupported in ("source", "provision_script"):
        if options.get(unsupported):
            raise UserError(
                f"--option {unsupported}: the QEMU engine builds its base from Debian packages "
                "and does not take this option (the vibe tool on macOS does); drop it"
            )
    build.target.parent.mkdir(parents=True, exist_ok=True)
    default = DEFAULT_SIZE_GIB if options.get("minimal") else DEBIAN_SIZE_GIB
    size = int(options.get("size_gib") or default)
    if size < 1:
        raise UserError(f"the base image size must be at least 1 GiB, got {size}")
    if options.get("minimal"):
        return build_minimal(build, size_gib=size)
    clis_opt = options.get("clis")
    clis = (
        AGENT_CLIS
        if clis_opt is None or clis_opt == "-"
        else tuple(c.strip() for c in str(clis_opt).split(",") if c.strip())
    )
    return build_debian(
        build, size_gib=size, suite=str(options.get("suite") or DEBIAN_SUITE), clis=clis
    )
