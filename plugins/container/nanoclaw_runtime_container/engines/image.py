"""Building the sample agent image: its build context and the visible build command."""

from __future__ import annotations

import contextlib
import importlib.metadata
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path

from nanoclaw_runtimes_core.errors import UserError

CORE_DISTRIBUTION = "nanoclaw-runtimes-core"


def dockerfile() -> Path:
    """The sample Dockerfile: packaged in the wheel, or the source checkout's."""
    packaged = resources.files("nanoclaw_runtime_container") / "image" / "Dockerfile"
    if packaged.is_file():
        return Path(str(packaged))
    checkout = Path(__file__).resolve().parents[2] / "Dockerfile"
    if checkout.is_file():
        return checkout
    raise UserError(
        "the sample Dockerfile of nanoclaw-runtime-container is missing from this "
        "installation; reinstall the package, or set CONTAINER_IMAGE to an image you built."
    )


def core_requirements() -> list[str]:
    """The core's runtime dependencies (no extras), for the image's requirements.txt."""
    try:
        requires = importlib.metadata.requires(CORE_DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        requires = ["pluggy>=1.3", "attrs>=23.1", "cattrs>=23.2"]
    return [r for r in requires if not re.search(r";\s*extra\s*==", r)]


@contextlib.contextmanager
def build_context() -> Iterator[Path]:
    """A temporary folder with the Dockerfile, the core package and requirements.txt."""
    import nanoclaw_runtimes_core

    core = Path(nanoclaw_runtimes_core.__file__).resolve().parent
    with tempfile.TemporaryDirectory(prefix="nanoclaw-image-") as tmp:
        context = Path(tmp)
        shutil.copy2(dockerfile(), context / "Dockerfile")
        shutil.copytree(
            core,
            context / "nanoclaw_runtimes_core",
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        (context / "requirements.txt").write_text("\n".join(core_requirements()) + "\n")
        yield context


def run_visible(argv: Sequence[str], *, what: str) -> None:
    """Run a long engine command with its output on our stderr; raise UserError on failure."""
    try:
        target: int | None = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # a captured stderr (tests, embedding hosts)
        target = None
    try:
        proc = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=target if target is not None else subprocess.PIPE,
            stderr=subprocess.STDOUT,
            check=False,
        )
    except FileNotFoundError:
        raise UserError(f"{what}: {argv[0]} is not installed") from None
    if target is None and proc.stdout:
        sys.stderr.write(proc.stdout.decode("utf-8", errors="replace"))
    if proc.returncode != 0:
        raise UserError(f"{what} failed with exit status {proc.returncode} (its output is above)")
