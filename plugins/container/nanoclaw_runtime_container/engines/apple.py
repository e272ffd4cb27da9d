"""The Apple ``container`` engine (macOS 26, each container a light VM).

``container run -i --rm --name ID -c N -m NNNM --mount type=bind,source=…,target=…[,readonly]
-w /workspace/group IMAGE``. Its service must run (``container system status``);
"XPC connection error: Connection invalid" means it does not. Containers carry no
label here: they are found by their name (see :mod:`..naming`).
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from nanoclaw_runtimes_core.errors import EngineUnavailable, UserError
from nanoclaw_runtimes_core.models import EngineStatus, Mount

from .. import naming
from .bubblewrap import extra_env
from .cli import run_tool
from .image_engine import ImageEngine

if TYPE_CHECKING:
    from nanoclaw_runtimes_core.models import ExecuteRequest, Project

    from ..settings import ContainerSettings

TOOL = "container"
WORKDIR = "/workspace/group"
START_FIX = "start its service: `container system start --enable-kernel-install`"
XPC_ERROR = "XPC connection error"
SERVICE_DOWN = "Apple's container service is not running; " + START_FIX + " (once per login)."


def _install_fix() -> str:
    if sys.platform != "darwin":
        return (
            "Apple's container runs only on macOS 26 on Apple silicon; use bubblewrap, "
            "podman or docker here"
        )
    return "install it from https://github.com/apple/container/releases (macOS 26, Apple silicon)"


def mount_arg(mount: Mount) -> list[str]:
    """``--mount type=bind,source=…,target=…[,readonly]``; its parser splits on , and =."""
    host, target = str(mount.host_path), mount.container_path
    for value in (host, target):
        if "," in value or "=" in value:
            raise UserError(
                f"mount {host} -> {target}: Apple's container cannot mount a path holding "
                "',' or '='; rename the folder or use another engine (CONTAINER_ENGINE)."
            )
    if not mount.host_path.is_dir():
        raise UserError(
            f"mount {host} -> {target}: Apple's container binds folders only, and this is "
            "not a folder."
        )
    spec = f"type=bind,source={host},target={target}" + (",readonly" if mount.readonly else "")
    return ["--mount", spec]


def _snapshot_id(item: Any) -> str:
    if isinstance(item, dict):
        config = item.get("configuration")
        if isinstance(config, dict) and config.get("id"):
            return str(config["id"])
        return str(item.get("id", ""))
    return ""


class AppleEngine(ImageEngine):
    """Drives Apple's ``container`` command line."""

    name = "container"
    pull_command = ("image", "pull")

    def __init__(self, settings: ContainerSettings, project: Project | None) -> None:
        super().__init__(settings, project, tool=TOOL)

    # ------------------------------------------------------------------ status

    def status(self) -> EngineStatus:
        """Installed, and its service answers ``container system status``."""
        result = run_tool([TOOL, "system", "status"], timeout_s=5)
        if result.returncode is None and "not found" in result.problem:
            return EngineStatus(
                available=False,
                engine=self.name,
                detail="container is not on PATH.",
                fix=_install_fix(),
            )
        if not result.ok or XPC_ERROR in result.stderr:
            return EngineStatus(
                available=False, engine=self.name, detail=SERVICE_DOWN, fix=START_FIX
            )
        version = run_tool([TOOL, "--version"], timeout_s=5).stdout.strip() or None
        return EngineStatus(
            available=True, engine=self.name, version=version, detail="container service running"
        )

    def require(self) -> None:
        """Raise EngineUnavailable when the engine cannot run."""
        status = self.status()
        if not status.available:
            raise EngineUnavailable(f"{status.detail} Fix: {status.fix}")

    # ------------------------------------------------------------------ command line

    def argv(self, request: ExecuteRequest, name: str) -> list[str]:
        """``container run …`` for one execution (see the module docstring)."""
        if self.settings.network is False:
            raise UserError(
                "network: false is not supported by Apple's container engine; remove it, or "
                "use CONTAINER_ENGINE=bubblewrap, docker or podman for this group."
            )
        argv = [
            TOOL,
            "run",
            "-i",
            "--rm",
            "--name",
            name,
            "-c",
            str(self.settings.cpus),
            "-m",
            f"{self.settings.ram}M",
        ]
        for env_name in extra_env(self.settings.env):
            argv += ["-e", env_name]  # the value is read from the client's environment
        for mount in request.mounts:
            argv += mount_arg(mount)
        return [*argv, "-w", WORKDIR, *self.image_and_command(request)]

    # ------------------------------------------------------------------ lifecycle

    def _ids(self, group: str | None) -> list[str]:
        if self.project is None:
            return []
        result = run_tool([TOOL, "ls", "-a", "--format", "json"], timeout_s=30)
        if not result.ok:
            if XPC_ERROR in result.stderr:
                raise EngineUnavailable(SERVICE_DOWN)
            raise EngineUnavailable(f"`container ls` failed: {result.message()}")
        items = json.loads(result.stdout or "[]")
        pattern = naming.name_pattern(self.project.root, group)
        return [i for i in map(_snapshot_id, items) if pattern.fullmatch(i)]

    def leftovers(self, group: str | None) -> list[str]:
        """Containers of the project (named by this runtime) still known to the service."""
        return self._ids(group)

    def sweep(self, group: str) -> list[str]:
        """``container rm -f`` every container named for the group in this project."""
        removed = []
        for ident in self._ids(group):
            if run_tool([TOOL, "rm", "-f", ident], timeout_s=30).ok:
                removed.append(f"container {ident}")
        return removed

    def explain_exit(self, exit_code: int | None, stderr_tail: str) -> str | None:
        """The service being down, bad arguments (64), or a CLI error line (exit 1)."""
        if not exit_code:
            return None
        if XPC_ERROR in stderr_tail:
            return SERVICE_DOWN
        lines = [ln.strip() for ln in stderr_tail.splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("Error: ")]
        if exit_code == 64:
            said = errors[-1] if errors else (lines[-1] if lines else "")
            return f"container rejected its arguments (exit 64): {said}"
        if exit_code == 1 and lines and lines[-1].startswith("Error: "):
            return f"container could not run the container: {lines[-1].removeprefix('Error: ')}"
        return None
