"""``info``, Apple's ``system status`` / ``system start``, ``version`` and ``build``.

NanoClaw calls ``docker info`` (or ``container system status``) at start and
gives up when it fails or takes over 10 s. Here that means: is the runtime
groups get by default (``CONTAINER_RUNTIME``, else the first usable one, read
from the current folder's ``.env`` too) usable? Every installed runtime is
asked at once, with an 8 s budget. ``build`` prepares that runtime's base
(``nanoclaw-runtimes prepare --base``): the Dockerfile is not used, the agent
a group runs is its runtime's.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from . import PROG
from .flags import AdapterError, Flag, parse

if TYPE_CHECKING:
    from ..dispatch import Runtimes
    from ..models import EngineStatus

STATUS_BUDGET_S = 8.0
INFO_FLAGS = (Flag(names=("-f", "--format"), dest="format", value=True),)
BUILD_FLAGS = (
    Flag(names=("-t", "--tag"), dest="tag", value=True),
    Flag(names=("-f", "--file"), dest="file", value=True),
    Flag(names=("--no-cache",), dest="no_cache"),
    Flag(names=("--pull",), dest="pull"),
    Flag(names=("-q", "--quiet"), dest="quiet"),
    Flag(names=("--build-arg",), dest="build_arg", value=True),
    Flag(names=("--platform",), dest="platform", value=True),
    Flag(names=("--progress",), dest="progress", value=True),
)
SYSTEM_FLAGS = (
    Flag(names=("--enable-kernel-install",), dest="kernel"),
    Flag(names=("--disable-kernel-install",), dest="no_kernel"),
    Flag(names=("--format",), dest="format", value=True),
)


def version_number() -> str:
    """The installed core's version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nanoclaw-runtimes-core")
    except PackageNotFoundError:
        return "0+unknown"


def version_line(dialect: str) -> str:
    """``--version`` in the format of the tool being stood in for, naming this one."""
    if dialect == "apple":
        return f"container CLI version {version_number()} (build: {PROG}, commit: unspecified)"
    return f"Docker version {version_number()}, build {PROG}"


def _runtimes(root: str | None = None) -> Runtimes:
    from ..dispatch import Runtimes
    from ..errors import UserError

    try:
        return Runtimes(root or os.getcwd())
    except (UserError, OSError):
        return Runtimes("/")


def statuses(rt: Runtimes) -> dict[str, EngineStatus | str | None]:
    """Every installed runtime's engine status, asked in parallel within the budget; a text
    says why there is none (broken plugin, no answer in time)."""
    found: dict[str, EngineStatus | str | None] = {}
    names = rt.registry.names()

    def ask(name: str) -> None:
        try:
            found[name] = rt.engine_status(name)
        except Exception as exc:  # a broken runtime must not hide the others
            found[name] = f"{type(exc).__name__}: {exc}".splitlines()[0]

    threads = [threading.Thread(target=ask, args=(n,), daemon=True) for n in names]
    for t in threads:
        t.start()
    deadline = time.monotonic() + STATUS_BUDGET_S
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    for name in names:
        found.setdefault(name, f"no answer within {STATUS_BUDGET_S:.0f} s")
    return found


def _usable(status: EngineStatus | str | None) -> bool:
    return status is None or (not isinstance(status, str) and status.available)


def default_runtime(rt: Runtimes, found: dict[str, EngineStatus | str | None]) -> tuple[str, str]:
    """``(runtime, problem)``: the runtime groups run on unless they pick one, and why it cannot
    run here (empty when it can)."""
    from ..errors import UserError
    from ..plugins import AUTO_ORDER

    try:
        configured = rt.planner.core_settings().runtime
    except UserError as exc:
        return "", "; ".join(str(exc).splitlines())
    if configured:
        if configured not in found:
            installed = ", ".join(found) or "none"
            return configured, (
                f"CONTAINER_RUNTIME={configured}: no such runtime is installed "
                f"(installed: {installed})"
            )
        status = found[configured]
        return configured, "" if _usable(status) else _describe(status)
    order = [n for n in AUTO_ORDER if n in found] + [n for n in found if n not in AUTO_ORDER]
    for name in order:
        if _usable(found[name]):
            return name, ""
    if not order:
        return "", "no runtime is installed; pip install nanoclaw-runtime-container"
    return "", "no installed runtime is usable here: " + "; ".join(
        f"{n}: {_describe(found[n])}" for n in order
    )


def _describe(status: EngineStatus | str | None) -> str:
    if status is None:
        return "available"
    if isinstance(status, str):
        return status
    text = f"{status.engine} {status.version or ''}".strip()
    if status.available:
        return f"available ({text}{': ' + status.detail if status.detail else ''})"
    detail = " ".join(status.detail.split())
    return f"not available ({text}): {detail}" + (f" Fix: {status.fix}" if status.fix else "")


def info(words: Sequence[str]) -> int:
    """``info``: exit 0 when the default runtime is usable; what each runtime says."""
    from .. import runs

    parsed = parse(words, INFO_FLAGS, command="info")
    rt = _runtimes()
    found = statuses(rt)
    default, problem = default_runtime(rt, found)
    running = len(runs.live_runs())
    template = parsed.value("format")
    if template is not None:
        import json

        data = {
            "ServerVersion": version_number(),
            "Containers": str(running),
            "ContainersRunning": str(running),
            "DefaultRuntime": default,
            "Runtimes": ",".join(found),
        }
        if template.strip() == "{{json .}}":
            print(json.dumps(data, separators=(",", ":"), sort_keys=True))
        else:
            from .listing import render

            print(render(template, [data], [{}], known=tuple(data)), end="")
    else:
        lines = [
            "Client:",
            f" Version:    {version_number()}",
            f" Context:    {PROG}",
            "",
            "Server:",
            f" Containers: {running}",
            f"  Running: {running}",
            "  Paused: 0",
            "  Stopped: 0",
            f" Server Version: nanoclaw-runtimes {version_number()}",
            f" Runtimes: {' '.join(found) or 'none'}",
            f" Default Runtime: {default or 'none'}",
        ]
        lines += [f" Runtime {name}: {_describe(status)}" for name, status in found.items()]
        print("\n".join(lines), flush=True)
    if problem:
        print(f"ERROR: {problem}", file=sys.stderr)
        return 1
    return 0


def system(words: Sequence[str]) -> int:
    """Apple's ``system status`` and ``system start``: there is no service to start, only the
    default runtime to check."""
    if not words or words[0] not in ("status", "start"):
        what = f"`{words[0]}` is not supported" if words else "a subcommand is needed"
        raise AdapterError(f"system: {what}; use `system status` or `system start`")
    parse(words[1:], SYSTEM_FLAGS, command=f"system {words[0]}")
    rt = _runtimes()
    found = statuses(rt)
    _default, problem = default_runtime(rt, found)
    if words[0] == "status":
        print("apiserver is not running" if problem else "apiserver is running", flush=True)
    if problem:
        print(f"Error: {problem}", file=sys.stderr)
        return 1
    return 0


def version(words: Sequence[str], *, dialect: str) -> int:
    """``version``: this tool and the core."""
    parse(words, INFO_FLAGS, command="version")
    if dialect == "apple":
        print(version_line(dialect))
        return 0
    import platform

    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    print(
        "\n".join(
            [
                "Client:",
                f" Version:           {version_number()}",
                f" Built by:          {PROG}",
                f" OS/Arch:           {sys.platform}/{arch}",
                "",
                "Server: nanoclaw-runtimes",
                " Engine:",
                f"  Version:          {version_number()}",
            ]
        )
    )
    return 0


def _project_for(context: Path) -> Path:
    """The NanoClaw project a build context belongs to (``<root>/container``), else the context."""
    for folder in (context, *context.parents):
        if (folder / "groups").is_dir():
            return folder
    return context


def build(words: Sequence[str]) -> int:
    """``build [-t TAG] CONTEXT``: prepare the default runtime's base instead of an image."""
    from ..errors import RuntimeFailure, UserError

    parsed = parse(words, BUILD_FLAGS, command="build")
    if len(parsed.positionals) != 1:
        raise AdapterError("build: requires exactly 1 argument: build [FLAGS] CONTEXT")
    context = Path(parsed.positionals[0]).resolve()
    if not context.is_dir():
        raise AdapterError(f"build: {parsed.positionals[0]}: the build context is not a folder", 1)
    rt = _runtimes(str(_project_for(context)))
    try:
        runtime = rt.planner.core_settings().runtime or rt.planner.detect_runtime()
        print(
            f"{PROG}: the Dockerfile is not used; preparing runtime {runtime!r} instead",
            file=sys.stderr,
        )

        def progress(message: str, fraction: float | None) -> None:
            pct = f" ({fraction:.0%})" if fraction is not None else ""
            print(f"{PROG}: {message}{pct}", file=sys.stderr, flush=True)

        force = parsed.bools.get("no_cache", False)
        summary = rt.prepare(base_runtime=runtime, progress=progress, force=force)
    except (UserError, RuntimeFailure) as exc:
        raise AdapterError("build: " + "; ".join(str(exc).splitlines()), 1) from None
    print(summary or f"runtime {runtime!r} needs no base", flush=True)
    return 0
