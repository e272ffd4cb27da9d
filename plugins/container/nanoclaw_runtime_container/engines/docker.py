"""The Docker and Podman engines (Podman takes Docker's arguments).

``docker run -i --rm --name NAME --label … --cpus N --memory NNNm -v host:ctr[:ro]
-w /workspace/group IMAGE`` with the ContainerInput on stdin. Exit statuses 125
(the engine failed), 126 (the command cannot be invoked) and 127 (command not
found) are reported as the engine's errors, every other status is the agent's.
"""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING

from nanoclaw_runtimes_core.errors import EngineUnavailable
from nanoclaw_runtimes_core.models import EngineStatus, Mount

from .. import naming
from .bubblewrap import extra_env
from .cli import run_tool
from .image_engine import MANAGE_TIMEOUT_S, ImageEngine

if TYPE_CHECKING:
    from nanoclaw_runtimes_core.models import ExecuteRequest, Project

    from ..settings import ContainerSettings

WORKDIR = "/workspace/group"
STATUS_TIMEOUT_S = 5.0


def _fixes(tool: str) -> tuple[str, str]:
    """(install fix, start-the-daemon fix) for ``tool`` on this platform."""
    if tool == "podman":
        return (
            "install Podman: `sudo apt-get install podman` (Debian/Ubuntu), "
            "`brew install podman` (macOS)",
            "on macOS run `podman machine init` once, then `podman machine start`",
        )
    if sys.platform == "darwin":
        return (
            "install Docker Desktop (https://docs.docker.com/desktop/)",
            "start Docker Desktop and wait until it says it is running",
        )
    return (
        "install Docker: `sudo apt-get install docker.io` (Debian/Ubuntu)",
        "start the daemon: `sudo systemctl start docker` (and add yourself to the "
        "docker group, or use podman)",
    )


def mount_args(mount: Mount) -> list[str]:
    """``-v host:ctr[:ro]``, or ``--mount`` when the host path holds a colon."""
    host, target = str(mount.host_path), mount.container_path
    if ":" not in host and ":" not in target:
        return ["-v", f"{host}:{target}" + (":ro" if mount.readonly else "")]
    fields = ["type=bind", f"source={host}", f"target={target}"]
    if mount.readonly:
        fields.append("readonly")
    # --mount is CSV: quote a field holding a comma or a quote.
    quoted = [
        f'"{f.replace(chr(34), chr(34) * 2)}"' if ("," in f or '"' in f) else f for f in fields
    ]
    return ["--mount", ",".join(quoted)]


class DockerEngine(ImageEngine):
    """Drives ``docker`` or ``podman`` (``tool``)."""

    def __init__(self, settings: ContainerSettings, project: Project | None, *, tool: str) -> None:
        super().__init__(settings, project, tool=tool)
        self.name = tool

    # ------------------------------------------------------------------ status

    def status(self) -> EngineStatus:
        """Installed, and ``docker info`` reaches the daemon."""
        install_fix, start_fix = _fixes(self.tool)
        result = run_tool(
            [self.tool, "info", "--format", "{{json .ServerVersion}}"], timeout_s=STATUS_TIMEOUT_S
        )
        if result.returncode is None and "not found" in result.problem:
            return EngineStatus(
                available=False,
                engine=self.name,
                detail=f"{self.tool} is not on PATH.",
                fix=install_fix,
            )
        if not result.ok:
            what = "daemon" if self.tool == "docker" else "service"
            return EngineStatus(
                available=False,
                engine=self.name,
                detail=f"{self.tool} is installed but its {what} is not running "
                f"(`{self.tool} info`: {result.message()}).",
                fix=start_fix,
            )
        version = result.stdout.strip().strip('"') or None
        return EngineStatus(
            available=True,
            engine=self.name,
            version=version,
            detail=f"{self.tool} server {version or '?'}",
        )

    def require(self) -> None:
        """Raise EngineUnavailable with the status's message when the engine cannot run."""
        status = self.status()
        if not status.available:
            raise EngineUnavailable(f"{status.detail} Fix: {status.fix}")

    # ------------------------------------------------------------------ command line

    def argv(self, request: ExecuteRequest, name: str) -> list[str]:
        """``docker run …`` for one execution (see the module docstring)."""
        root = request.project.root
        argv = [self.tool, "run", "-i", "--rm", "--name", name]
        for key, value in naming.labels(request.group.folder, root).items():
            argv += ["--label", f"{key}={value}"]
        argv += ["--cpus", str(self.settings.cpus), "--memory", f"{self.settings.ram}m"]
        if self.settings.network is False:
            argv += ["--network", "none"]
        # Names only: the values travel in the client's environment, not on its command line.
        for env_name in self.env_names():
            argv += ["-e", env_name]
        for mount in request.mounts:
            argv += mount_args(mount)
        return [*argv, "-w", WORKDIR, *self.image_and_command(request)]

    def env_names(self) -> list[str]:
        names = list(extra_env(self.settings.env))
        if "TZ" in os.environ and "TZ" not in names:
            names.append("TZ")
        return names

    # ------------------------------------------------------------------ lifecycle

    def _listed(self, group: str | None) -> list[dict[str, str]]:
        if self.project is None:
            return []
        filters = [
            "--filter",
            f"label={naming.LABEL_RUNTIME}={naming.RUNTIME_NAME}",
            "--filter",
            f"label={naming.LABEL_PROJECT}={naming.project_tag(self.project.root)}",
        ]
        if group is not None:
            filters += ["--filter", f"label={naming.LABEL_GROUP}={group}"]
        result = run_tool(
            [self.tool, "ps", "-a", *filters, "--format", "{{json .}}"], timeout_s=MANAGE_TIMEOUT_S
        )
        if not result.ok:
            raise EngineUnavailable(f"`{self.tool} ps` failed: {result.message()}")
        rows = []
        for line in result.stdout.splitlines():
            if line.strip():
                row = json.loads(line)
                names = row.get("Names", "")
                if isinstance(names, list):  # podman gives a list, docker a string
                    names = ",".join(names)
                rows.append(
                    {
                        "name": str(names).lstrip("/"),
                        "state": str(row.get("State", row.get("Status", ""))),
                    }
                )
        return rows

    def leftovers(self, group: str | None) -> list[str]:
        """Containers of the project still known to the engine (running or stopped)."""
        return [r["name"] for r in self._listed(group)]

    def sweep(self, group: str) -> list[str]:
        """``docker rm -f`` every container labelled with the group (and this project)."""
        removed = []
        for row in self._listed(group):
            result = run_tool([self.tool, "rm", "-f", row["name"]], timeout_s=MANAGE_TIMEOUT_S)
            if result.ok:
                removed.append(f"{self.tool} container {row['name']} ({row['state']})")
        return removed

    def explain_exit(self, exit_code: int | None, stderr_tail: str) -> str | None:
        """125/126/127 are the engine's: say so, with its message."""
        # The last line that says something ("See 'docker run --help'." does not).
        lines = [
            ln.strip()
            for ln in stderr_tail.splitlines()
            if ln.strip() and not ln.strip().startswith(("See '", "Run '"))
        ]
        said = f": {lines[-1]}" if lines else ""
        if exit_code == 125:
            return f"{self.tool} could not run the container (exit 125){said}"
        if exit_code == 126:
            return f"the command in the container cannot be invoked (exit 126){said}"
        if exit_code == 127:
            return f"the command was not found in the container (exit 127){said}"
        return None
