"""The sample agent image: its build context, a fingerprint of it, and the visible build command.

The context is two files: the sample Dockerfile and the core's example agent (standard
library only), so building it downloads nothing but the base image. The image carries
the fingerprint as a label, so ``prepare --base`` rebuilds it when either file changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path

import nanoclaw_runtimes_core as nc

CONTEXT_LABEL = "nanoclaw-runtimes.context"
"""The image label holding the fingerprint of the context it was built from."""
BUILD_TIMEOUT_S = 30 * 60.0


def dockerfile() -> Path:
    """The sample Dockerfile: packaged in the wheel, or the source checkout's."""
    packaged = resources.files("nanoclaw_runtime_container") / "image" / "Dockerfile"
    if packaged.is_file():
        return Path(str(packaged))
    checkout = Path(__file__).resolve().parents[2] / "Dockerfile"
    if checkout.is_file():
        return checkout
    raise nc.UserError(
        "the sample Dockerfile of nanoclaw-runtime-container is missing from this "
        "installation; reinstall the package, or set CONTAINER_IMAGE to an image you built"
    )


def context_files() -> dict[str, bytes]:
    """The build context, by file name."""
    return {
        "Dockerfile": dockerfile().read_bytes(),
        "example_agent.py": nc.example_agent_file().read_bytes(),
    }


def fingerprint(files: Mapping[str, bytes]) -> str:
    """A short hash of the context's names and contents."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name] + b"\0")
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def build_context(files: Mapping[str, bytes]) -> Iterator[Path]:
    """A temporary folder holding ``files``, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="nanoclaw-image-") as tmp:
        context = Path(tmp)
        for name, data in files.items():
            (context / name).write_bytes(data)
        yield context


def run_visible(
    argv: Sequence[str],
    *,
    what: str,
    env: Mapping[str, str],
    timeout_s: float = BUILD_TIMEOUT_S,
) -> None:
    """Run a long engine command (a build, a pull) with its output on our stderr, bounded in
    time; stopped with its process group on timeout or interruption. Raises UserError when
    it fails."""
    try:
        target: int | None = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # a captured stderr (tests, embedding hosts)
        target = None
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=target if target is not None else subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,
        )
    except FileNotFoundError:
        raise nc.EngineUnavailable(f"{what}: {argv[0]} is not installed") from None
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _end(proc)
        raise nc.UserError(f"{what} did not finish within {timeout_s / 60:g} minutes") from None
    except BaseException:
        _end(proc)
        raise
    if out:
        sys.stderr.write(out.decode("utf-8", errors="replace"))
    if proc.returncode != 0:
        raise nc.UserError(
            f"{what} failed with exit status {proc.returncode} (its output is above)"
        )


def _end(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the command's process group, SIGKILL it after 5 s."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
