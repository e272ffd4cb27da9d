"""A throw-away NanoClaw project root for tests, and a sink that records what a run streams.

Nothing here needs pytest; the fixtures in :mod:`nanoclaw_runtimes_core.testing` build on it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..models import ContainerInput, ContainerOutput, ExecuteRequest, OutputSink, Project

CONTAINER_CONFIG = "containerConfig"
ALLOWLIST_ENV = "NANOCLAW_MOUNT_ALLOWLIST"


def write_atomically(path: Path, text: str | bytes) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(text.encode() if isinstance(text, str) else text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class NanoclawProject:
    """A project root laid out as NanoClaw expects: ``groups/``, ``groups/global``, ``data/``.

    It lives in a fresh folder of its own that every user may traverse (a sandbox
    acting as an unprivileged user must reach its mounts), beside a ``home/``
    folder holding the mount allowlist path (``allowlist_path``), so no test
    reads the real allowlist. Until :meth:`write_allowlist` is called the
    allowlist is missing, which (as in NanoClaw) blocks every additional mount.
    Call :meth:`remove` when done (the fixture does). ``root`` places the project
    root there instead (its parent then holds ``home/``).
    """

    def __init__(self, root: Path | None = None) -> None:
        self._made_base = root is None
        if root is None:
            base = Path(tempfile.mkdtemp(prefix="nanoclaw-test-"))
            os.chmod(base, 0o755)
            root = base / "project"
        self.root = Path(root).resolve()
        self.base = self.root.parent
        self.home = self.base / "home"
        self.allowlist_path = self.home / "mount-allowlist.json"
        for folder in (self.root / "groups" / "global", self.root / "data", self.home):
            folder.mkdir(parents=True, exist_ok=True)
            os.chmod(folder, 0o755)
        os.chmod(self.root / "groups", 0o755)

    @property
    def project(self) -> Project:
        """The core's :class:`~nanoclaw_runtimes_core.models.Project` for this root."""
        return Project(root=self.root)

    def group_path(self, folder: str) -> Path:
        """``groups/{folder}`` (not created)."""
        return self.root / "groups" / folder

    def group(self, folder: str, config: Mapping[str, Any] | str | None = None) -> Path:
        """Create ``groups/{folder}`` (and its ``config.json`` when ``config`` is given, as for
        :meth:`write_config`); return its path."""
        from ..groups import check_folder_name

        check_folder_name(folder)
        path = self.group_path(folder)
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o755)
        if config is not None:
            self.write_config(folder, config)
        return path

    def write_config(self, folder: str, config: Mapping[str, Any] | str | bytes) -> Path:
        """Write ``groups/{folder}/config.json`` and return its path.

        ``config`` is the ``containerConfig`` object (``{"runtime": "local"}``), or a whole
        document when it has a top-level ``containerConfig`` key, or text written as it is
        (to test invalid files).
        """
        if isinstance(config, (str, bytes)):
            text: str | bytes = config
        else:
            document = dict(config) if CONTAINER_CONFIG in config else {CONTAINER_CONFIG: config}
            text = json.dumps(document, indent=2) + "\n"
        return write_atomically(self.group_path(folder) / "config.json", text)

    def write_env(self, text: str | bytes) -> Path:
        """Write the project's ``.env`` (python-dotenv syntax) and return its path."""
        return write_atomically(self.root / ".env", text)

    def write_allowlist(self, data: Mapping[str, Any] | str) -> Path:
        """Write the mount allowlist (an object as in NanoClaw, or raw text); return its path."""
        text = data if isinstance(data, str) else json.dumps(data, indent=2) + "\n"
        return write_atomically(self.allowlist_path, text)

    def run_logs(self, folder: str) -> list[Path]:
        """The group's run logs (``groups/{folder}/logs/container-*.log``), oldest first."""
        return sorted((self.group_path(folder) / "logs").glob("container-*.log"))

    def execute_request(
        self,
        folder: str,
        settings: Any,
        *,
        command: tuple[str, ...] | None = None,
        prompt: str = "hello",
        secrets: Mapping[str, str] | None = None,
        timeout_ms: int = 60_000,
        sink: OutputSink | None = None,
        run_name: str = "nc-direct-test",
        is_main: bool = False,
    ) -> ExecuteRequest[Any]:
        """An :class:`ExecuteRequest` for calling a runtime's ``execute`` hook directly (unit
        tests of a runtime): the group and its contract folders created, the mounts laid out
        as the dispatcher lays them out, the ContainerInput (agent mode, ``prompt``) unless
        ``command`` is given. Prefer the dispatcher (``nanoclaw_runtimes``) where you can."""
        from ..groups import resolve_group
        from ..identity import sandbox_user
        from ..mounts import plan_mounts

        self.group(folder)
        group = resolve_group(self.project, folder, is_main=is_main)
        plan = plan_mounts(self.project, group, (), self.allowlist_path)
        for mount in plan.mounts:
            if not mount.is_file:
                mount.host_path.mkdir(parents=True, exist_ok=True)
        inp = None
        if command is None:
            inp = ContainerInput(
                prompt=prompt,
                group_folder=folder,
                chat_jid="chat@g.us",
                is_main=is_main,
                secrets=secrets,
            )
        return ExecuteRequest(
            project=self.project,
            group=group,
            settings=settings,
            mounts=plan.mounts,
            masks=plan.masks,
            timeout_ms=timeout_ms,
            input=inp,
            command=command,
            sink=sink if sink is not None else RecordingSink(),
            run_name=run_name,
            user=sandbox_user(""),
        )

    def remove(self) -> None:
        """Remove the project and its ``home/`` (whoever owns what the sandboxes left)."""
        for path in [self.base] if self._made_base else [self.root, self.home]:
            shutil.rmtree(path, ignore_errors=True)

    def __repr__(self) -> str:
        return f"NanoclawProject({str(self.root)!r})"


class RecordingSink(OutputSink):
    """An output sink that keeps everything a run streams, safe to use from reader threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.outputs: list[ContainerOutput] = []
        self.stdout = b""
        self.stderr = b""
        self.problems: list[str] = []

    def on_output(self, output: ContainerOutput) -> None:
        with self._lock:
            self.outputs.append(output)

    def on_stdout(self, data: bytes) -> None:
        with self._lock:
            self.stdout += data

    def on_stderr(self, data: bytes) -> None:
        with self._lock:
            self.stderr += data

    def on_problem(self, message: str) -> None:
        with self._lock:
            self.problems.append(message)

    @property
    def stdout_text(self) -> str:
        return self.stdout.decode("utf-8", errors="replace")

    @property
    def stderr_text(self) -> str:
        return self.stderr.decode("utf-8", errors="replace")
