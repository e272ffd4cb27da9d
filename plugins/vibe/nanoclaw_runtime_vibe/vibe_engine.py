"""The vibe engine: drives the real vibe CLI (macOS, Virtualization.framework).

``vibe --no-default-mounts --cpus N --ram M --mount HOST:GUEST:read-write|read-only …
--script FILE DISK``. The default mounts are never used: they would share the
host's ``~/.claude``, ``~/.codex``… with every group. vibe exits 0 whenever the
guest powers off, so the script's own status comes back behind a marker (see
:mod:`nanoclaw_runtime_vibe.engines`).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nanoclaw_runtimes_core.errors import EngineUnavailable, UserError
from nanoclaw_runtimes_core.models import EngineStatus, Mount, OutputSink
from nanoclaw_runtimes_core.process import ProcessResult, run_streaming
from nanoclaw_runtimes_core.protocol import MarkerDecoder, strip_control

from .cow import atomic_output, clone_image, remove_stale_temps, temp_name
from .engines import GUEST_RUN_DIR, STATUS_MARKER, BaseBuild, BootSpec, find_vibe
from .rundir import run_folder, write_private
from .script import SCRIPT_NAME, render

INSTALL_FIX = (
    "install vibe (https://github.com/lynaghk/vibe, macOS on Apple silicon) and put it on "
    "PATH or set VIBE_EXECUTABLE to its path; on Linux set VIBE_ENGINE=qemu"
)
PROVISION_NAME = "provision.sh"
GRACE_S = 10.0
BUILD_TIMEOUT_MS = 2 * 3600 * 1000


def mount_arg(mount: Mount) -> str:
    """One ``--mount`` value; refuses what vibe would misread or reject."""
    host = str(mount.host_path)
    for label, value in (("host", host), ("guest", mount.container_path)):
        if ":" in value:
            raise UserError(
                f"vibe cannot share {label} path {value!r}: vibe splits --mount on ':', so a "
                f"path with a colon cannot be passed; rename the folder or mount its parent"
            )
    path = Path(host)
    if not path.exists():
        raise UserError(f"mount {host} -> {mount.container_path}: the host folder does not exist")
    if not path.is_dir():
        raise UserError(
            f"mount {host} -> {mount.container_path}: vibe can only share folders, not files"
        )
    mode = "read-only" if mount.readonly else "read-write"
    return f"{host}:{mount.container_path}:{mode}"


def vibe_argv(exe: str, spec: BootSpec, *, disk: bool = True) -> list[str]:
    """The whole vibe command line for one boot (no secrets: those are in the run folder)."""
    argv = [exe, "--no-default-mounts", "--cpus", str(spec.cpus), "--ram", str(spec.ram_mb)]
    for mount in spec.mounts:
        argv += ["--mount", mount_arg(mount)]
    argv += ["--script", str(spec.script)]
    if disk:
        argv.append(str(spec.disk))
    return argv


def failure_message(engine: str, exit_code: int | None, stderr_tail: str) -> str:
    """What a failing vibe process means, for the user."""
    tail = stderr_tail.strip()
    if exit_code == 101:
        what = f"{engine} panicked (exit 101)"
    elif exit_code == 1:
        what = f"{engine} failed (exit 1: a bad argument, an --expect timeout or a VM error)"
    elif exit_code is not None and exit_code < 0:
        what = f"{engine} was killed by signal {-exit_code}"
    else:
        what = f"{engine} exited with code {exit_code}"
    return what + (f": {tail}" if tail else "")


class _ProgressSink(OutputSink):
    """Turns console lines of a base build into progress messages."""

    def __init__(self, progress: Callable[[str, float | None], None]) -> None:
        self._progress = progress

    def on_stdout(self, data: bytes) -> None:
        line = strip_control(data.decode("utf-8", errors="replace")).strip()
        if line:
            self._progress(line[:200], None)

    def on_stderr(self, data: bytes) -> None:
        self.on_stdout(data)


class VibeEngine:
    """Boots group disks with the vibe CLI."""

    name = "vibe"

    def executable(self, settings: Any) -> str:
        """The vibe executable, or :class:`EngineUnavailable` saying how to install it."""
        exe = find_vibe(settings)
        if exe is None:
            raise EngineUnavailable(
                f"vibe executable {settings.executable!r} not found: {INSTALL_FIX}"
            )
        return exe

    def status(self, settings: Any) -> EngineStatus:
        """Whether vibe is installed, with its version (``vibe --version``, bounded to 3 s)."""
        exe = find_vibe(settings)
        if exe is None:
            return EngineStatus(
                available=False,
                engine="vibe",
                detail=f"{settings.executable!r} not found on PATH",
                fix=INSTALL_FIX,
            )
        version = None
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [exe, "--version"],
                capture_output=True,
                text=True,
                timeout=3,
                stdin=subprocess.DEVNULL,
            ).stdout
            lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
            sha = next(
                (ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("Git SHA")), None
            )
            version = sha or (lines[0] if lines else None)
        return EngineStatus(available=True, engine="vibe", version=version, detail=exe)

    def boot(
        self,
        spec: BootSpec,
        *,
        settings: Any,
        sink: OutputSink,
        timeout_ms: int,
        decoder: MarkerDecoder,
        raw_stdout: Callable[[bytes], None] | None = None,
        passthrough: bool = False,
    ) -> ProcessResult:
        """Run ``vibe … --script FILE DISK``; see :meth:`Engine.boot`."""
        argv = vibe_argv(self.executable(settings), spec)
        return self._run(
            argv,
            spec,
            sink=sink,
            timeout_ms=timeout_ms,
            decoder=decoder,
            raw_stdout=raw_stdout,
            passthrough=passthrough,
        )

    def _run(
        self, argv: Sequence[str], spec: BootSpec, *, cwd: Path | None = None, **kwargs: Any
    ) -> ProcessResult:
        env = None
        if spec.env:
            import os

            env = {**os.environ, **spec.env}
        return run_streaming(
            argv, cwd=cwd or spec.run_dir, env=env, grace_s=GRACE_S, die_with_parent=True, **kwargs
        )

    def build_base(self, build: BaseBuild, *, settings: Any) -> str:
        """Provision a base through vibe and rename it onto ``build.target`` when it succeeded.

        ``options["provision_script"]`` replaces the packaged ``provision/base.sh``.
        Without ``options["source"]``, vibe is started without a disk in a
        temporary folder beside the target, so it makes ``.vibe/instance.raw``
        from its own Debian image (downloading it on first use); with a
        source image, a clone of it is provisioned instead.
        """
        from importlib.resources import files

        exe = self.executable(settings)
        target = build.target
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(target)
        work = temp_name(target)
        work.mkdir(mode=0o700)
        try:
            source = build.options.get("source")
            if source:
                disk = work / "disk.raw"
                build.progress(f"cloning {source}", None)
                clone_image(Path(source), disk)
            else:
                disk = work / ".vibe" / "instance.raw"
            with run_folder(prefix="nanoclaw-vibe-build-") as run:
                custom = build.options.get("provision_script")
                write_private(
                    run / PROVISION_NAME,
                    Path(custom).read_bytes()
                    if custom
                    else files(__package__).joinpath("provision/base.sh").read_bytes(),
                )
                script = run / SCRIPT_NAME
                write_private(
                    script,
                    render(
                        agent=[
                            "env",
                            "NANOCLAW_PROVISION_NO_POWEROFF=1",
                            "/bin/bash",
                            f"{GUEST_RUN_DIR}/{PROVISION_NAME}",
                        ],
                        workdir="/root",
                    ).encode(),
                )
                # the wrapper reads input.json on stdin: give it an empty one
                write_private(run / "input.json", b"{}")
                spec = BootSpec(
                    disk=disk,
                    base=target,
                    mounts=(Mount(host_path=run, container_path=GUEST_RUN_DIR, readonly=True),),
                    cpus=settings.cpus,
                    ram_mb=settings.ram,
                    script=script,
                    run_dir=run,
                    purpose="provision",
                )
                build.progress("booting vibe to provision the base (this takes minutes)", 0.05)
                result = self._run(
                    vibe_argv(exe, spec, disk=bool(source)),
                    spec,
                    cwd=work,
                    timeout_ms=int(build.options.get("timeout_ms", BUILD_TIMEOUT_MS)),
                    sink=_ProgressSink(build.progress),
                    passthrough=True,
                    decoder=MarkerDecoder(status_marker=STATUS_MARKER),
                )
            if result.timed_out:
                raise UserError("building the vibe base timed out; the previous base is untouched")
            if result.exit_code != 0:
                raise UserError(
                    "building the vibe base failed: "
                    + failure_message("vibe", result.exit_code, result.stderr_tail)
                )
            if result.reported_status is None:
                raise UserError(
                    "building the vibe base failed: the guest stopped before the "
                    "provisioning script reported its exit status"
                )
            if result.reported_status != 0:
                raise UserError(
                    f"the provisioning script failed with status "
                    f"{result.reported_status}; the previous base is untouched"
                )
            if not disk.is_file():
                raise UserError(f"vibe did not leave a disk image at {disk}")
            with atomic_output(target) as tmp:
                disk.rename(tmp)
            build.progress(f"base ready: {target}", 1.0)
            return f"built {target} with vibe"
        finally:
            shutil.rmtree(work, ignore_errors=True)
