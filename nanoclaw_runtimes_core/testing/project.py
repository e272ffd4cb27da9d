"""A throw-away NanoClaw project root for tests, and a sink that records what a run streams.

Nothing here needs pytest; the fixtures in :mod:`nanoclaw_runtimes_core.testing` build on it.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..groups import MAIN_FOLDER, check_folder_name, resolve_group
from ..models import ContainerInput, ContainerOutput, ExecuteRequest, OutputSink, Project

CONTAINER_CONFIG = "containerConfig"


def write_atomically(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class NanoclawProject:
    """A project root laid out as NanoClaw expects: ``groups/``, ``groups/global``, ``data/``.

    ``allowlist_path`` is where :meth:`write_allowlist` writes the mount
    allowlist; the ``nanoclaw_project`` fixture points ``NANOCLAW_MOUNT_ALLOWLIST``
    at it, so no test reads the real one under the home folder. Until it is
    written the allowlist is missing, which (as in NanoClaw) blocks every
    additional mount.
    """

    def __init__(self, root: Path, *, allowlist_path: Path | None = None) -> None:
        self.root = Path(root).resolve()
        self.allowlist_path = (
            allowlist_path or self.root.parent / "nanoclaw-home" / "allowlist.json"
        )
        for folder in (self.root / "groups" / "global", self.root / "data"):
            folder.mkdir(parents=True, exist_ok=True)

    @property
    def project(self) -> Project:
        """The core's :class:`~nanoclaw_runtimes_core.models.Project` for this root."""
        return Project(root=self.root)

    def group_path(self, folder: str) -> Path:
        """``groups/{folder}`` (not created)."""
        return self.root / "groups" / folder

    def group(
        self,
        folder: str,
        config: Mapping[str, Any] | str | None = None,
        *,
        is_main: bool | None = None,
    ) -> Path:
        """Create the group's folder (and its config when ``config`` is given); return its path.

        ``config`` is as for :meth:`write_config`. ``is_main`` is a check only: in
        NanoClaw the main group is the one whose folder is ``main``.
        """
        check_folder_name(folder)
        if is_main is not None and is_main != (folder == MAIN_FOLDER):
            raise ValueError(
                f"group {folder!r}: the main group is the folder {MAIN_FOLDER!r}; "
                f"is_main={is_main} contradicts the folder name"
            )
        path = self.group_path(folder)
        path.mkdir(parents=True, exist_ok=True)
        if config is not None:
            self.write_config(folder, config)
        return path

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
        run_id: str = "",
    ) -> ExecuteRequest:
        """An :class:`ExecuteRequest` for calling a runtime's ``execute`` hook directly: the
        group created, its contract mounts built as the dispatcher builds them, and the
        ContainerInput (agent mode, ``prompt``) unless ``command`` is given."""
        from ..mounts import contract_mounts

        self.group(folder)
        group = resolve_group(self.project, folder)
        mounts = contract_mounts(self.project, group, (), self.allowlist_path).mounts
        inp = None
        if command is None:
            inp = ContainerInput(
                prompt=prompt,
                group_folder=folder,
                chat_jid="chat@g.us",
                is_main=group.is_main,
                secrets=secrets,
            )
        return ExecuteRequest(
            project=self.project,
            group=group,
            settings=settings,
            mounts=mounts,
            timeout_ms=timeout_ms,
            input=inp,
            command=command,
            sink=sink if sink is not None else RecordingSink(),
            run_id=run_id,
        )

    def write_config(self, folder: str, config: Mapping[str, Any] | str) -> Path:
        """Write ``groups/{folder}/config.json`` and return its path.

        ``config`` is the ``containerConfig`` object (``{"runtime": "local"}``),
        or a whole document when it has a top-level ``containerConfig`` key, or
        a string written as it is (to test invalid JSON).
        """
        if isinstance(config, str):
            text = config
        else:
            document = dict(config) if CONTAINER_CONFIG in config else {CONTAINER_CONFIG: config}
            text = json.dumps(document, indent=2) + "\n"
        return write_atomically(self.group_path(folder) / "config.json", text)

    def write_env(self, text: str) -> Path:
        """Write the project's ``.env`` (python-dotenv syntax) and return its path."""
        return write_atomically(self.root / ".env", text)

    def write_allowlist(self, data: Mapping[str, Any] | str) -> Path:
        """Write the mount allowlist (an object as in NanoClaw, or raw text); return its path."""
        text = data if isinstance(data, str) else json.dumps(data, indent=2) + "\n"
        return write_atomically(self.allowlist_path, text)

    def run_logs(self, folder: str) -> list[Path]:
        """The group's run logs (``groups/{folder}/logs/container-*.log``), oldest first."""
        return sorted((self.group_path(folder) / "logs").glob("container-*.log"))

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
