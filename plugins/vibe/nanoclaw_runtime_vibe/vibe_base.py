"""Building a base with vibe (``nanoclaw-runtimes prepare --base vibe`` on macOS).

vibe boots either a copy of ``source`` (``--option source=IMAGE``) or, with no disk,
its own Debian image (``./.vibe/instance.raw``, made from vibe's cached default image,
downloaded on first use). It types a script that runs the provisioning script
(``provision/base.sh``, or ``--option provision_script=FILE``) as root, records its
exit status in the control share and powers off. The disk is renamed onto the base only
when the script succeeded: a failed, killed or interrupted build leaves the previous
base as it was, and its work folder (owner-locked) is swept by the next run or stats.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

import nanoclaw_runtimes_core as nc

from . import cow, images, rundir
from .engines import BaseBuild, ProgressFn
from .keeper import clean

if TYPE_CHECKING:
    from .settings import VibeSettings

BUILD_TIMEOUT_MS = 2 * 3600 * 1000
"""A build whose console stays silent this long is stopped."""
TYPED = (
    "( NANOCLAW_PROVISION_NO_POWEROFF=1 /bin/bash /nanoclaw/boot/provision.sh 2>&1; "
    "echo $? >/nanoclaw/ctl/status.tmp ) | tee /nanoclaw/ctl/build.log; "
    "mv /nanoclaw/ctl/status.tmp /nanoclaw/ctl/status; sync; "
    "systemctl poweroff || poweroff || poweroff -f\n"
)
REFUSALS = (b"Failed to read script", b"cannot safely upload")


class _BuildSink(nc.OutputSink):
    """Console lines become progress messages; a refused script stops vibe at once."""

    def __init__(self, progress: ProgressFn) -> None:
        self.progress = progress
        self.proc: subprocess.Popen[bytes] | None = None
        self.refused = b""
        self._line = b""

    def on_stdout(self, data: bytes) -> None:
        self._line += data
        *lines, self._line = self._line.split(b"\n")
        for raw in lines:
            text = clean(raw).strip()
            if text:
                self.progress(text[:200], None)

    def on_stderr(self, data: bytes) -> None:
        if any(r in data for r in REFUSALS) and self.proc is not None:
            self.refused += data
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)


def _provision_script(path: str) -> bytes:
    if not path:
        return files(__package__).joinpath("provision/base.sh").read_bytes()
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise nc.UserError(
            f"--option provision_script={path}: cannot read it ({exc.strerror})"
        ) from None


def build_base(exe: str, build: BaseBuild, *, settings: VibeSettings) -> str:
    """Build ``build.target`` with vibe; returns a one-line summary."""
    target = build.target
    options = build.options
    if options.get("minimal"):
        raise nc.UserError(
            "--minimal builds a busybox base for the QEMU engine; vibe builds the Debian base "
            "(or provisions --option source=IMAGE)"
        )
    source = str(options.get("source") or "")
    provision = _provision_script(str(options.get("provision_script") or ""))
    target.parent.mkdir(parents=True, exist_ok=True)
    shares = rundir.area(for_other_user=False) / f"build-{secrets.token_hex(6)}"
    with cow.build_folder(target) as work:
        shares.mkdir(mode=0o700)
        try:
            for sub in ("boot", "ctl", "tmp"):
                (shares / sub).mkdir(mode=0o700)
            (shares / "boot" / "provision.sh").write_bytes(provision)
            (shares / "script.sh").write_text(TYPED)
            if source:
                disk = work / "disk.raw"
                build.progress(f"copying {source}", None)
                cow.clone_image(Path(source).expanduser(), disk)
            else:
                disk = work / ".vibe" / "instance.raw"
            argv = [
                exe,
                "--no-default-mounts",
                "--cpus",
                str(settings.cpus),
                "--ram",
                str(settings.ram),
                "--network",
                settings.vibe_network,
                "--mount",
                f"{shares}/boot:/nanoclaw/boot:read-only",
                "--mount",
                f"{shares}/ctl:/nanoclaw/ctl:read-write",
                "--script",
                f"{shares}/script.sh",
            ]
            if source:
                argv += ["--", str(disk)]
            sink = _BuildSink(build.progress)
            build.progress("booting vibe to provision the base (this takes minutes)", 0.05)
            result = nc.run_process(
                argv,
                timeout_ms=int(options.get("timeout_ms") or BUILD_TIMEOUT_MS),
                sink=sink,
                agent_mode=False,
                env=nc.host_env("HOME", "XDG_CACHE_HOME", extra={"TMPDIR": f"{shares}/tmp/"}),
                cwd=work,
                on_start=lambda proc: setattr(sink, "proc", proc),
            )
            status = rundir.Share(shares / "ctl").read_small("status", limit=64)
            log = rundir.Share(shares / "ctl").read_small("build.log", limit=2**20) or b""
        finally:
            nc.remove_tree(shares)
        tail = "\n  ".join(clean(log).strip().splitlines()[-10:])
        untouched = f"; the previous {target.name} is untouched"
        if sink.refused:
            raise nc.UserError(
                f"vibe refused the build script: {clean(sink.refused).strip()}{untouched}"
            )
        if result.timed_out:
            raise nc.UserError(
                f"building the base timed out (no console output for too long){untouched}"
            )
        if result.exit_code != 0:
            out = clean(result.stdout[-3000:]).strip()
            said = result.stderr_tail.strip()
            raise nc.UserError(f"vibe failed (exit {result.exit_code}): {said} {out}{untouched}")
        if status is None:
            raise nc.UserError(
                f"the guest stopped before provisioning finished{untouched}; last lines:\n  {tail}"
            )
        if status.strip() != b"0":
            raise nc.UserError(
                f"the provisioning script failed with status {status.decode().strip()}{untouched}; "
                f"last lines:\n  {tail}"
            )
        if not disk.is_file():
            raise nc.UserError(f"vibe left no disk image at {disk}{untouched}")
        os.replace(disk, target)
        cow.fsync_dir(target.parent)
    images.write_base_info(
        target,
        agent=images.example_agent_command(),
        kind="vibe-custom" if source else "vibe-debian",
        engine="vibe",
        source=source or None,
        provision=str(options.get("provision_script") or "base.sh"),
    )
    build.progress(f"base ready: {target}", 1.0)
    return f"built {target} with vibe" + (f" from {source}" if source else "")
