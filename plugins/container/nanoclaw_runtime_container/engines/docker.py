"""The Docker and Podman engines: one class, as Podman takes Docker's arguments.

One execution::

    TOOL run --rm --init --name=RUN --pull=never [--interactive]
        --label=nanoclaw-runtimes.project=TAG --label=nanoclaw-runtimes.group=FOLDER
        --user=UID:GID [--userns=keep-id] --cap-drop=ALL --security-opt=no-new-privileges
        [--network=none] --cpus=N --memory=Mm --memory-swap=Mm --pids-limit=P
        --env-file=/dev/fd/N --mount type=bind,source=…,target=…[,readonly] …
        --workdir=/workspace/group [--entrypoint=CMD] IMAGE [ARGS…]

- ``--init`` (Docker's docker-init, Podman's catatonit) is PID 1, so a stop takes
  milliseconds instead of the whole grace a PID 1 without a SIGTERM handler waits out.
- ``--user`` is the sandbox user the core made the read-write mounts belong to; rootless
  Podman maps it to the same host user with ``--userns=keep-id``.
- Masks are read-only binds (of an empty file for an empty one: ``/dev/null`` would take
  writes) and read-only empty tmpfs mounts for folders (Podman's with ``notmpcopyup``: by
  default it would copy the masked folder's files into the tmpfs).
- ``--pull=never``: a run never downloads; ``prepare --base container`` builds or pulls.
- Exit status: the sandbox's, 125, 126 and 127 included. Only an engine failure recognised
  by its message (exit 125: the daemon, the image, the init, a limit) becomes an error that
  explains it; the engine's own line is on stderr already and is not repeated.

Podman is not Docker in a few places, handled here: ``podman info`` has no
``.ServerVersion`` (``{{.Version.Version}}``), podman before 4.4 prints ``ps --format
'{{json .}}'`` as one JSON array, ``podman rm -f`` waits the container's stop timeout unless
``-t 0``, Podman accepts more CPUs than the host has (refused here, as Docker does), and
rootless Podman on cgroup v1 ignores every resource limit (said, or refused with
``NANOCLAW_LIMITS=strict``). With ``--init``, a command that cannot be executed makes
catatonit exit 1; that is reported as 127 (not found) or 126, as Docker's init does.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nanoclaw_runtimes_core as nc

from . import probe_cache
from .image_engine import (
    LABEL_GROUP,
    LABEL_PROJECT,
    ImageEngine,
    Listed,
    ProbeFailed,
    cached_facts,
    empty_sources,
    file_identity,
    last_lines,
    project_tag,
    tool_exe,
)

if TYPE_CHECKING:
    from ..settings import ContainerSettings

STATUS_TIMEOUT_S = 10.0
TOOL_ENV = {
    "docker": (
        "DOCKER_HOST",
        "DOCKER_CONTEXT",
        "DOCKER_CONFIG",
        "DOCKER_CERT_PATH",
        "DOCKER_TLS_VERIFY",
        "DOCKER_BUILDKIT",
    ),
    "podman": (
        "CONTAINERS_CONF",
        "CONTAINERS_STORAGE_CONF",
        "CONTAINERS_REGISTRIES_CONF",
        "CONTAINER_HOST",
        "CONTAINER_CONNECTION",
        "XDG_RUNTIME_DIR",
        "XDG_CONFIG_HOME",
        "XDG_DATA_HOME",
    ),
}
INFO_FORMAT = {
    "docker": '{"version":{{json .ServerVersion}},"cpus":{{json .NCPU}},'
    '"security":{{json .SecurityOptions}}}',
    "podman": '{"version":{{json .Version.Version}},"rootless":{{json .Host.Security.Rootless}},'
    '"cgroups":{{json .Host.CgroupsVersion}},"cpus":{{json .Host.CPUs}}}',
}
PODMAN_INIT = "/usr/libexec/podman/catatonit"
_CATATONIT = re.compile(r"^ERROR \(catatonit:\d+\): failed to exec pid1: (.*)$")
_DAEMON_DOWN = (
    "Cannot connect to the Docker daemon",
    "Is the docker daemon running",
    "error during connect",
    "Cannot connect to Podman",
    "unable to connect to Podman",
)
_NO_IMAGE = (
    "No such image",
    "image not known",
    "Unable to find image",
    "did not resolve to an alias",
    "manifest unknown",
    "pull access denied",
    "repository does not exist",
)


def csv_field(field: str) -> str:
    """A ``--mount`` field, quoted when it holds a comma, a quote or a line break (the option
    is CSV)."""
    if any(c in field for c in ',"\n\r'):
        return '"' + field.replace('"', '""') + '"'
    return field


def bind_spec(source: str, target: str, readonly: bool) -> str:
    """``type=bind,source=…,target=…[,readonly]``: unlike ``-v`` it never creates a missing
    source (as root, on the host) and takes any character."""
    fields = ["type=bind", f"source={source}", f"target={target}"]
    if readonly:
        fields.append("readonly")
    return ",".join(csv_field(f) for f in fields)


def host_cpus() -> int:
    """The CPUs this process may use (what Docker counts)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cgroup_v1() -> bool:
    """Whether this host has the legacy cgroup hierarchy (no unified cgroup2 root)."""
    return not Path("/sys/fs/cgroup/cgroup.controllers").exists()


def podman_init_path() -> str:
    """Where Podman looks for its ``--init`` binary: ``init_path`` of its containers.conf."""
    if os.environ.get("CONTAINERS_CONF"):
        files = [os.environ["CONTAINERS_CONF"]]
    else:
        config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        files = [
            "/usr/share/containers/containers.conf",
            "/etc/containers/containers.conf",
            f"{config}/containers/containers.conf",
        ]
    found = PODMAN_INIT
    for file in files:
        try:
            text = Path(file).read_text()
        except (OSError, UnicodeDecodeError):
            continue
        match = re.search(r'^\s*init_path\s*=\s*"([^"]*)"', text, re.MULTILINE)
        if match:
            found = match.group(1)
    return found


def parse_ps(text: str) -> list[dict[str, Any]]:
    """``ps --format '{{json .}}'``: one object a line (Docker, Podman 4.4+) or one JSON array
    (Podman before 4.4). Raises ValueError for anything else."""
    text = text.strip()
    if not text:
        return []
    chunks = (
        [json.loads(text)]
        if text.startswith("[")
        else [json.loads(ln) for ln in text.splitlines() if ln.strip()]
    )
    rows: list[dict[str, Any]] = []
    for chunk in chunks:
        items = chunk if isinstance(chunk, list) else [chunk]
        rows += [item for item in items if isinstance(item, dict)]
    return rows


def row_labels(row: dict[str, Any]) -> dict[str, str]:
    """A ps row's labels: a mapping (Podman) or ``k=v,k=v`` (Docker)."""
    labels = row.get("Labels")
    if isinstance(labels, dict):
        return {str(k): str(v) for k, v in labels.items()}
    found: dict[str, str] = {}
    for part in str(labels or "").split(","):
        key, sep, value = part.partition("=")
        if sep:
            found[key] = value
    return found


def row_name(row: dict[str, Any]) -> str:
    """A ps row's container name: a string (Docker) or a list (Podman)."""
    names = row.get("Names", "")
    if isinstance(names, list):
        names = names[0] if names else ""
    return str(names).split(",")[0].lstrip("/")


def image_and_command(request: nc.ExecuteRequest[ContainerSettings]) -> list[str]:
    """The end of ``run``'s argv: the command (command mode) or the group's agent command
    through ``--entrypoint``, else the image's own entrypoint (the agent)."""
    image = request.settings.image
    words = request.command if request.command is not None else request.agent_command
    if not words:
        return [image]
    if not words[0]:
        raise nc.UserError("the command's first word is empty; name the program to run")
    return [f"--entrypoint={words[0]}", image, *words[1:]]


def sandbox_identity(request: nc.ExecuteRequest[ContainerSettings]) -> nc.SandboxUser:
    """The request's sandbox user, or the core's choice when the request has none."""
    if request.user.source != "unset":
        return request.user
    from nanoclaw_runtimes_core.identity import sandbox_user

    return sandbox_user("")


def _fixes(tool: str) -> tuple[str, str]:
    """(install fix, start fix) for ``tool`` on this platform."""
    if tool == "podman":
        return (
            "install Podman: `sudo apt-get install podman catatonit` (Debian/Ubuntu), "
            "`brew install podman` (macOS)",
            "on macOS run `podman machine init` once, then `podman machine start`; on Linux "
            "run `podman info` to see what is wrong",
        )
    if sys.platform == "darwin":
        return (
            "install Docker Desktop (https://docs.docker.com/desktop/)",
            "start Docker Desktop and wait until it says it is running",
        )
    return (
        "install Docker: `sudo apt-get install docker.io` (Debian/Ubuntu)",
        "start the daemon (`sudo systemctl start docker`) and make sure you may use it "
        "(the docker group), or use podman",
    )


class DockerEngine(ImageEngine):
    """Drives ``docker`` or ``podman`` (``tool``)."""

    def __init__(self, tool: str = "docker") -> None:
        if tool not in TOOL_ENV:
            raise ValueError(f"unknown tool {tool!r}")
        super().__init__(tool)
        self.name = tool
        self.env_names = TOOL_ENV[tool]
        self.podman = tool == "podman"
        remote = bool(os.environ.get("CONTAINER_HOST") or os.environ.get("CONTAINER_CONNECTION"))
        self.rootless = self.podman and os.geteuid() != 0 and not remote

    def install_fix(self) -> str:
        return _fixes(self.tool)[0]

    # ------------------------------------------------------------------ status

    def status(self) -> nc.EngineStatus:
        """Installed, and ``TOOL info`` answers (probed once per host and configuration)."""
        install_fix, _ = _fixes(self.tool)
        exe = tool_exe(self.tool)
        if exe is None:
            return nc.EngineStatus(
                available=False,
                engine=self.name,
                detail=f"{self.tool} is not on PATH.",
                fix=install_fix,
            )
        self._exe = exe
        try:
            facts = cached_facts(f"{self.tool}-status", self._status_key(exe), self._probe)
        except ProbeFailed as exc:
            return exc.status
        notes = []
        if facts.get("rootless"):
            notes.append("rootless")
        if self.podman and facts.get("rootless") and facts.get("cgroups") == "v1":
            notes.append("cpu, memory and process limits not enforced (rootless on cgroup v1)")
        return nc.EngineStatus(
            available=True,
            engine=self.name,
            version=str(facts.get("version") or "") or None,
            detail=f"{self.tool} {facts.get('version') or '?'}"
            + (f" ({'; '.join(notes)})" if notes else ""),
            isolation=frozenset(
                (
                    nc.ISOLATION_FILESYSTEM,
                    nc.ISOLATION_PID,
                    nc.ISOLATION_NETWORK,
                    nc.ISOLATION_MASKS,
                )
            ),
        )

    def _status_key(self, exe: str) -> dict[str, Any]:
        key = probe_cache.host_key(exe)
        key.update(
            tool=self.tool,
            euid=os.geteuid(),
            env={name: os.environ.get(name) for name in self.env_names},
        )
        if self.podman:
            files = [os.environ.get("CONTAINERS_CONF"), os.environ.get("CONTAINERS_STORAGE_CONF")]
            key["files"] = [file_identity(f) for f in files]
            key["init"] = file_identity(podman_init_path())
        else:
            host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
            socket = host[len("unix://") :] if host.startswith("unix://") else None
            config = os.environ.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
            key["socket"] = file_identity(socket)
            key["config"] = file_identity(os.path.join(config, "config.json"))
        return key

    def _probe(self) -> dict[str, Any]:
        """``TOOL info`` once; raises ProbeFailed when the engine cannot run containers."""
        _, start_fix = _fixes(self.tool)
        result = self.call(
            [self.exe, "info", "--format", INFO_FORMAT[self.tool]], timeout_s=STATUS_TIMEOUT_S
        )
        if not result.ok:
            what = "daemon does not answer" if not self.podman else "does not work"
            raise ProbeFailed(
                nc.EngineStatus(
                    available=False,
                    engine=self.name,
                    detail=f"{self.tool} is installed but its {what} "
                    f"(`{self.tool} info`: {result.message()}).",
                    fix=start_fix,
                )
            )
        try:
            parsed = json.loads(result.stdout)
        except ValueError:
            parsed = None
        facts: dict[str, Any] = (
            parsed if isinstance(parsed, dict) else {"version": result.stdout.strip()[:40]}
        )
        security = facts.pop("security", None) or []
        if not self.podman:
            facts["rootless"] = any("rootless" in str(s) for s in security)
        if self.podman:
            init = podman_init_path()
            if not os.access(init, os.X_OK):
                raise ProbeFailed(
                    nc.EngineStatus(
                        available=False,
                        engine=self.name,
                        version=str(facts.get("version") or "") or None,
                        detail=f"podman {facts.get('version')} is installed, but not catatonit, "
                        f"which it runs as the sandbox's init ({init} is missing).",
                        fix="install catatonit (`sudo apt-get install catatonit`), or set "
                        "init_path in containers.conf",
                    )
                )
        return facts

    # ------------------------------------------------------------------ command line

    def run_argv(
        self, request: nc.ExecuteRequest[ContainerSettings], name: str, env_file: str
    ) -> list[str]:
        """``TOOL run …`` for one execution (see the module docstring)."""
        settings = request.settings
        user = sandbox_identity(request)
        argv = [self.exe, "run", "--rm", "--init", f"--name={name}", "--pull=never"]
        if request.input is not None:
            argv.append("--interactive")
        argv += [
            f"--label={LABEL_PROJECT}={project_tag(request.project)}",
            f"--label={LABEL_GROUP}={request.group.folder}",
            f"--user={user.uid}:{user.gid}",
        ]
        if self.rootless:
            argv.append("--userns=keep-id")
        argv += ["--cap-drop=ALL", "--security-opt=no-new-privileges"]
        if not settings.network:
            argv.append("--network=none")
        argv += self.limit_args(request)
        argv.append(f"--env-file={env_file}")
        for mount in request.mounts:
            argv += [
                "--mount",
                bind_spec(str(mount.host_path), mount.container_path, mount.readonly),
            ]
        empty = empty_sources(request.run_name) if request.masks else None
        for mask in request.masks:
            argv += ["--mount", self.mask_spec(mask, empty)]
        argv.append(f"--workdir={nc.WORKDIR}")
        return argv + image_and_command(request)

    def mask_spec(self, mask: nc.Mask, empty: Path | None) -> str:
        """A read-only bind of the mask's file (an empty file when it has none), or an empty
        read-only tmpfs over a folder."""
        if not mask.folder:
            source = mask.source if mask.source is not None else empty and empty / "file"
            return bind_spec(str(source), mask.container_path, True)
        fields = ["type=tmpfs", f"destination={mask.container_path}", "tmpfs-mode=0555"]
        # Podman copies the folder's files into a tmpfs unless told not to.
        fields += ["ro=true", "notmpcopyup"] if self.podman else ["readonly"]
        return ",".join(csv_field(f) for f in fields)

    def limit_args(self, request: nc.ExecuteRequest[ContainerSettings]) -> list[str]:
        """``--cpus --memory --memory-swap --pids-limit``, where the engine enforces them."""
        settings = request.settings
        if self.podman and self.rootless and cgroup_v1():
            message = (
                "the cpus, memory and processes limits are not enforced: rootless podman on "
                "cgroup v1 ignores them (use cgroup v2, or run podman as root)"
            )
            if request.strict_limits:
                raise nc.UserError(f"refusing to run: {message} (NANOCLAW_LIMITS=strict)")
            request.sink.on_problem(message + "; set NANOCLAW_LIMITS=strict to refuse such runs")
            return []
        if settings.cpus > host_cpus():
            # Checked before starting, for both engines: Docker refuses with exit 125 after a
            # round trip to its daemon, Podman would accept it.
            count = host_cpus()
            raise nc.ConfigError(
                [
                    f"cpus {settings.cpus} is more than the {count} CPUs of this host; set "
                    f"CONTAINER_CPUS (or containerConfig.cpus) to at most {count}"
                ]
            )
        return [
            f"--cpus={settings.cpus}",
            f"--memory={settings.ram}m",
            f"--memory-swap={settings.ram}m",
            f"--pids-limit={settings.pids}",
        ]

    def remove_argv(self, name: str) -> list[str]:
        # podman rm -f first waits the container's stop timeout (10 s) unless told -t 0
        return [self.exe, "rm", "-f", "-t", "0", name] if self.podman else super().remove_argv(name)

    # ------------------------------------------------------------------ results

    def judge(
        self, request: nc.ExecuteRequest[ContainerSettings], result: nc.ExecutionResult
    ) -> nc.ExecutionResult:
        """The engine's own failures become an error; the sandbox's status passes through."""
        code = result.exit_code
        lines = last_lines(result.stderr_tail)
        if code == 1 and self.podman and lines:
            match = _CATATONIT.match(lines[-1])
            if match:  # catatonit could not exec the command: a shell's 127 / 126
                return result.replace(exit_code=127 if "No such file" in match.group(1) else 126)
        if code != 125 or not lines or not self._engine_said(lines):
            return result
        return result.replace(error=self.explain(request, "\n".join(lines)))

    def _engine_said(self, lines: list[str]) -> bool:
        """Whether the end of stderr is the engine's own error message."""
        if self.podman:
            return lines[-1].startswith("Error: ")
        return any(ln.startswith(("docker: ", "Error response from daemon")) for ln in lines)

    def explain(self, request: nc.ExecuteRequest[ContainerSettings], said: str) -> str:
        """What went wrong and how to fix it, without repeating the engine's line."""
        from ..settings import DEFAULT_IMAGE

        settings = request.settings
        tool = self.tool
        if any(s in said for s in _DAEMON_DOWN):
            where = os.environ.get("DOCKER_HOST") or os.environ.get("CONTAINER_HOST")
            return (
                f"{tool} cannot reach its {'daemon' if not self.podman else 'service'}"
                + (f" at {where}" if where else "")
                + f"; {_fixes(tool)[1]}"
            )
        if any(s in said for s in _NO_IMAGE):
            image = settings.image
            how = (
                "build it with `nanoclaw-runtimes prepare --base container`"
                if image == DEFAULT_IMAGE
                else f"get it with `nanoclaw-runtimes prepare --base container` (it pulls the "
                f"image) or `{tool} pull {image}`"
            )
            return (
                f"the image {image} is not among {tool}'s images (a run never downloads one); "
                f"{how}, or set CONTAINER_IMAGE (or containerConfig.image) to an image {tool} has"
            )
        if "container-init binary not found" in said or "catatonit" in said:
            return (
                "podman has no catatonit, which it runs as the sandbox's init: install it "
                "(`sudo apt-get install catatonit`) or set init_path in containers.conf"
            )
        if "docker-init" in said:
            return (
                "the Docker daemon has no docker-init, which it runs as the sandbox's init: "
                "install Docker's init (tini; Debian's docker.io ships it) or set init-path in "
                "daemon.json"
            )
        cpus = re.search(r"Range of CPUs is from [\d.]+ to ([\d.]+)", said)
        if cpus:
            most = int(float(cpus.group(1)))
            return (
                f"cpus {settings.cpus} is more than the {most} CPUs {tool} can use; set "
                f"CONTAINER_CPUS (or containerConfig.cpus) to at most {most}"
            )
        return f"{tool} could not start the sandbox (exit 125; {tool}'s message is above)"

    # ------------------------------------------------------------------ leftovers

    def listed(self, project: nc.Project, group: str | None) -> list[Listed]:
        """``TOOL ps -a`` filtered by this project's (and the group's) labels."""
        tag = project_tag(project)
        argv = [self.exe, "ps", "-a", "--filter", f"label={LABEL_PROJECT}={tag}"]
        if group is not None:
            argv += ["--filter", f"label={LABEL_GROUP}={group}"]
        result = self.call([*argv, "--format", "{{json .}}"])
        if not result.ok:
            raise nc.EngineUnavailable(f"`{self.tool} ps` failed: {result.message()}")
        try:
            rows = parse_ps(result.stdout)
        except ValueError:
            raise nc.EngineUnavailable(
                f"`{self.tool} ps --format '{{{{json .}}}}'` printed something that is not JSON"
            ) from None
        found = []
        for row in rows:
            labels = row_labels(row)
            if labels.get(LABEL_PROJECT) != tag:
                continue
            if group is not None and labels.get(LABEL_GROUP) != group:
                continue
            state = str(row.get("State") or row.get("Status") or "")
            found.append(Listed(name=row_name(row), group=labels.get(LABEL_GROUP), state=state))
        return found

    # ------------------------------------------------------------------ the image

    def image_present(self, ref: str) -> tuple[bool, str]:
        from .image import CONTEXT_LABEL

        template = '{{index .Config.Labels "' + CONTEXT_LABEL + '"}}'
        result = self.call([self.exe, "image", "inspect", "--format", template, ref])
        if not result.ok:
            return False, ""
        return True, result.stdout.strip()
