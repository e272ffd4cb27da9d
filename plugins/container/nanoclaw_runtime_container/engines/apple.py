"""The Apple ``container`` engine (macOS 26 on Apple silicon; each container is a light VM).

One execution::

    container run --rm --name=RUN [--interactive] --progress=none
        --label=nanoclaw-runtimes.project=TAG --label=nanoclaw-runtimes.group=FOLDER
        --user=UID:GID [--init] [--cap-drop=ALL] [--network=none]
        --cpus=N --memory=NM [--ulimit=nproc=P:P] --env-file=/dev/fd/N
        --mount type=bind,source=…,target=…[,readonly] (folders) | --volume=SRC:DST[:ro] (files)
        --workdir=/workspace/group [--entrypoint=CMD] IMAGE [ARGS…]

Every option comes before IMAGE (the tool passes everything after it to the container).
What the tool accepts depends on its version, read once from ``container --version``:
``--network none`` and the Docker-like env file from 0.6.0 (the oldest supported),
``--progress`` from 0.7.0 (``--disable-progress-updates`` before; from 0.12 the default
prints progress lines on stderr when it is not a terminal), ``--init``, ``--ulimit`` and a
200 MiB memory floor from 0.10.0, ``--cap-drop`` from 0.12.0. ``--memory`` takes a unit
(a bare number is bytes): ``2048M``. Names are the run's name (at most 63 of ``[a-z0-9-]``,
valid in every version). Masks are read-only binds of an empty file or folder kept in the
run's private folder (``/dev/null`` cannot be shared with a VM).

Exit status: the container's passes through; the tool's own failures are 64 (it refused
its arguments) and 1 with an ``Error: …`` line, recognised by that line (the XPC error:
its service is not running). A command the container cannot find ("failed to find target
executable") is reported as 127, as Docker and Podman report it. Every call is bounded in
time; ``system status`` by 10 s.
"""

from __future__ import annotations

import json
import re
import sys
from typing import TYPE_CHECKING, Any

import nanoclaw_runtimes_core as nc

from . import probe_cache
from .docker import image_and_command, sandbox_identity
from .image_engine import (
    LABEL_GROUP,
    LABEL_PROJECT,
    ImageEngine,
    Listed,
    ProbeFailed,
    cached_facts,
    empty_sources,
    last_lines,
    project_tag,
    tool_exe,
)

if TYPE_CHECKING:
    from ..settings import ContainerSettings

TOOL = "container"
STATUS_TIMEOUT_S = 10.0
VERSION_TIMEOUT_S = 5.0
START_FIX = "start its service: `container system start --enable-kernel-install` (once per login)"
XPC_ERROR = "XPC connection error"
SERVICE_DOWN = "Apple's container service is not running; " + START_FIX
MINIMUM = (0, 6, 0)
MEMORY_FLOOR_MB = 200
Version = tuple[int, int, int]


def _install_fix() -> str:
    if sys.platform != "darwin":
        return (
            "Apple's container runs only on macOS 26 on Apple silicon; use bubblewrap, "
            "podman or docker here"
        )
    return "install it from https://github.com/apple/container/releases (macOS 26, Apple silicon)"


def parse_version(text: str) -> Version | None:
    """``container CLI version 1.2.2 (build: release, commit: abcdef1)`` -> (1, 2, 2)."""
    match = re.search(r"version (\d+)\.(\d+)\.(\d+)", text)
    if match is None:
        return None
    return (int(match.group(1)), int(match.group(2)), int(match.group(3)))


def shown(version: Version) -> str:
    return ".".join(map(str, version))


def mount_args(source: str, target: str, readonly: bool, *, is_file: bool) -> list[str]:
    """A folder as ``--mount type=bind,…`` (split on ',' and '=', no quoting); a file as
    ``--volume=SRC:DST[:ro]`` (split on ':'). Refuses paths those cannot carry."""
    if is_file:
        if ":" in source or ":" in target:
            raise nc.UserError(
                f"mount {source} -> {target}: Apple's container cannot mount a file whose "
                "path holds ':'; rename it or use another engine (CONTAINER_ENGINE)"
            )
        return [f"--volume={source}:{target}" + (":ro" if readonly else "")]
    for value in (source, target):
        if "," in value or "=" in value:
            raise nc.UserError(
                f"mount {source} -> {target}: Apple's container cannot mount a path holding "
                "',' or '='; rename the folder or use another engine (CONTAINER_ENGINE)"
            )
    spec = f"type=bind,source={source},target={target}" + (",readonly" if readonly else "")
    return ["--mount", spec]


def _item_fields(item: Any) -> tuple[str, str, dict[str, str]]:
    """(id, state, labels) of one ``ls --format json`` entry, whatever the version's shape:
    up to 0.12 ``{"status": "running", "configuration": {"id": …}}``, from 1.0
    ``{"id": …, "status": {"state": "running"}, "configuration": {…}}``."""
    if not isinstance(item, dict):
        return "", "", {}
    found = item.get("configuration")
    config: dict[str, Any] = found if isinstance(found, dict) else {}
    ident = str(item.get("id") or config.get("id") or "")
    status = item.get("status")
    state = str(status.get("state", "")) if isinstance(status, dict) else str(status or "")
    raw = config.get("labels")
    labels: dict[str, Any] = raw if isinstance(raw, dict) else {}
    return ident, state, {str(k): str(v) for k, v in labels.items()}


class AppleEngine(ImageEngine):
    """Drives Apple's ``container`` command line."""

    env_names = ()

    def __init__(self) -> None:
        super().__init__(TOOL)
        self.name = TOOL

    def install_fix(self) -> str:
        return _install_fix()

    # ------------------------------------------------------------------ version and status

    def version(self) -> Version:
        """The tool's version, read once per executable; raises EngineUnavailable when it
        cannot be read or is older than 0.6.0."""
        exe = self.exe

        def probe() -> dict[str, Any]:
            result = self.call([exe, "--version"], timeout_s=VERSION_TIMEOUT_S)
            found = parse_version(result.stdout) if result.ok else None
            if found is None:
                raise ProbeFailed(
                    nc.EngineStatus(
                        available=False,
                        engine=self.name,
                        detail=f"`container --version` did not say a version: {result.message()}",
                        fix=_install_fix(),
                    )
                )
            return {"version": list(found)}

        try:
            facts = cached_facts("container-version", probe_cache.host_key(exe), probe)
        except ProbeFailed as exc:
            raise nc.EngineUnavailable(f"{exc.status.detail} Fix: {exc.status.fix}") from None
        major, minor, patch = (int(n) for n in facts["version"])
        found = (major, minor, patch)
        if found < MINIMUM:
            raise nc.EngineUnavailable(
                f"Apple's container {shown(found)} is older than {shown(MINIMUM)}, the oldest "
                "this runtime drives (--network none, env files); upgrade it: "
                "https://github.com/apple/container/releases"
            )
        return found

    def status(self) -> nc.EngineStatus:
        """Installed, new enough, and its service answers ``container system status``."""
        exe = tool_exe(TOOL)
        if exe is None:
            return nc.EngineStatus(
                available=False,
                engine=self.name,
                detail="container is not on PATH.",
                fix=_install_fix(),
            )
        self._exe = exe
        try:
            version = self.version()
        except nc.EngineUnavailable as exc:
            return nc.EngineStatus(
                available=False, engine=self.name, detail=str(exc), fix=_install_fix()
            )

        def probe() -> dict[str, Any]:
            result = self.call([exe, "system", "status"], timeout_s=STATUS_TIMEOUT_S)
            if not result.ok:
                said = result.message()
                raise ProbeFailed(
                    nc.EngineStatus(
                        available=False,
                        engine=self.name,
                        version=shown(version),
                        detail=f"{SERVICE_DOWN} (`container system status`: {said}).",
                        fix=START_FIX,
                    )
                )
            return {"running": True}

        try:
            cached_facts("container-status", probe_cache.host_key(exe), probe)
        except ProbeFailed as exc:
            return exc.status
        return nc.EngineStatus(
            available=True,
            engine=self.name,
            version=shown(version),
            detail=f"container {shown(version)}, service running",
            isolation=frozenset(
                (
                    nc.ISOLATION_FILESYSTEM,
                    nc.ISOLATION_PID,
                    nc.ISOLATION_NETWORK,
                    nc.ISOLATION_MASKS,
                )
            ),
        )

    # ------------------------------------------------------------------ command line

    def run_argv(
        self, request: nc.ExecuteRequest[ContainerSettings], name: str, env_file: str
    ) -> list[str]:
        """``container run …`` for one execution (see the module docstring)."""
        settings = request.settings
        version = self.version()
        user = sandbox_identity(request)
        argv = [self.exe, "run", "--rm", f"--name={name}"]
        if request.input is not None:
            argv.append("--interactive")
        argv.append("--progress=none" if version >= (0, 7, 0) else "--disable-progress-updates")
        argv += [
            f"--label={LABEL_PROJECT}={project_tag(request.project)}",
            f"--label={LABEL_GROUP}={request.group.folder}",
            f"--user={user.uid}:{user.gid}",
        ]
        if version >= (0, 10, 0):
            argv.append("--init")
        if version >= (0, 12, 0):
            argv.append("--cap-drop=ALL")
        if not settings.network:
            argv.append("--network=none")
        argv += self.limit_args(request, version)
        argv.append(f"--env-file={env_file}")
        for mount in request.mounts:
            argv += mount_args(
                str(mount.host_path), mount.container_path, mount.readonly, is_file=mount.is_file
            )
        empty = empty_sources(request.run_name) if request.masks else None
        for mask in request.masks:
            if mask.source is not None:
                argv += mount_args(str(mask.source), mask.container_path, True, is_file=True)
            else:
                assert empty is not None
                source = empty / ("folder" if mask.folder else "file")
                argv += mount_args(str(source), mask.container_path, True, is_file=not mask.folder)
        argv.append(f"--workdir={nc.WORKDIR}")
        return argv + image_and_command(request)

    def limit_args(
        self, request: nc.ExecuteRequest[ContainerSettings], version: Version
    ) -> list[str]:
        """``--cpus --memory`` (the VM's size) and, from 0.10, ``--ulimit nproc``."""
        settings = request.settings
        if version >= (0, 10, 0) and settings.ram < MEMORY_FLOOR_MB:
            raise nc.UserError(
                f"ram {settings.ram} MB is less than the {MEMORY_FLOOR_MB} MB Apple's container "
                f"{shown(version)} gives a container at least; set CONTAINER_MEMORY (or "
                f"containerConfig.ram) to {MEMORY_FLOOR_MB} or more"
            )
        argv = [f"--cpus={settings.cpus}", f"--memory={settings.ram}M"]
        if version >= (0, 10, 0):
            argv.append(f"--ulimit=nproc={settings.pids}:{settings.pids}")
        else:
            message = (
                f"the processes limit is not enforced: Apple's container {shown(version)} has "
                "no --ulimit (0.10 and later have)"
            )
            if request.strict_limits:
                raise nc.UserError(f"refusing to run: {message} (NANOCLAW_LIMITS=strict)")
            request.sink.on_problem(message + "; set NANOCLAW_LIMITS=strict to refuse such runs")
        return argv

    def stop_argv(self, name: str, grace: int) -> list[str]:
        return [self.exe, "stop", f"--time={grace}", name]

    # ------------------------------------------------------------------ results

    def judge(
        self, request: nc.ExecuteRequest[ContainerSettings], result: nc.ExecutionResult
    ) -> nc.ExecutionResult:
        """The tool's own failures (64; 1 with its ``Error:`` line) become an error."""
        code = result.exit_code
        if code not in (1, 64):
            return result
        lines = last_lines(result.stderr_tail)
        said = "\n".join(lines)
        if XPC_ERROR in said:
            return result.replace(error=SERVICE_DOWN)
        if code == 64 and any(
            ln.startswith(("Usage: container", "See 'container")) for ln in lines
        ):
            return result.replace(
                error="Apple's container refused the arguments this runtime passed (exit 64; its "
                "message is above); upgrade container, or report it to nanoclaw-runtime-container",
            )
        if code != 1 or not lines or not lines[-1].startswith("Error: "):
            return result
        if "failed to find target executable" in lines[-1]:
            return result.replace(exit_code=127)  # as a shell (and Docker's init) reports it
        from ..settings import DEFAULT_IMAGE

        image = request.settings.image
        if "not found" in said and image in said:
            how = (
                "build it with `nanoclaw-runtimes prepare --base container`"
                if image == DEFAULT_IMAGE
                else "get it with `nanoclaw-runtimes prepare --base container` (it pulls the image)"
            )
            return result.replace(
                error=f"the image {image} is not among Apple's container's images; {how}, or set "
                "CONTAINER_IMAGE (or containerConfig.image) to an image it has",
            )
        return result.replace(
            error="Apple's container could not start the sandbox (exit 1; its message is above)",
        )

    # ------------------------------------------------------------------ leftovers

    def listed(self, project: nc.Project, group: str | None) -> list[Listed]:
        """``container ls -a --format json`` entries labelled with this project (and group)."""
        result = self.call([self.exe, "ls", "-a", "--format", "json"])
        if not result.ok:
            if XPC_ERROR in result.stderr:
                raise nc.EngineUnavailable(SERVICE_DOWN)
            raise nc.EngineUnavailable(f"`container ls` failed: {result.message()}")
        try:
            items = json.loads(result.stdout or "[]")
        except ValueError:
            raise nc.EngineUnavailable("`container ls --format json` did not print JSON") from None
        tag = project_tag(project)
        found = []
        for item in items if isinstance(items, list) else []:
            ident, state, labels = _item_fields(item)
            if not ident or labels.get(LABEL_PROJECT) != tag:
                continue
            if group is not None and labels.get(LABEL_GROUP) != group:
                continue
            found.append(Listed(name=ident, group=labels.get(LABEL_GROUP), state=state))
        return found

    # ------------------------------------------------------------------ the image

    def image_present(self, ref: str) -> tuple[bool, str]:
        result = self.call([self.exe, "image", "inspect", ref])
        if not result.ok:
            return False, ""
        try:
            data = json.loads(result.stdout)
        except ValueError:
            return True, ""
        from .image import CONTEXT_LABEL

        text = json.dumps(data)
        match = re.search(re.escape(CONTEXT_LABEL) + r'"\s*:\s*"([0-9a-f]+)"', text)
        return True, match.group(1) if match else ""

    def pull_argv(self, ref: str) -> list[str]:
        return [self.exe, "image", "pull", ref]
