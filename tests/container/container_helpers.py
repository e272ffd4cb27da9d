"""Helpers of the container runtime's tests: a project, requests, a recording sink, stand-ins."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import attrs
from nanoclaw_runtime_container.settings import ContainerSettings

from nanoclaw_runtimes_core.groups import resolve_group
from nanoclaw_runtimes_core.models import (
    ContainerOutput,
    ExecuteRequest,
    Group,
    OutputSink,
    Project,
)
from nanoclaw_runtimes_core.testing import NanoclawProject
from nanoclaw_runtimes_core.testing.processes import (  # noqa: F401 (the tests import them here)
    processes_with,
    wait_until,
)

STANDINS = Path(__file__).resolve().parents[1] / "standins"


class RecordingSink(OutputSink):
    """Keeps everything a run sends, with the time of each output block."""

    def __init__(self, on_block: Callable[[ContainerOutput], None] | None = None) -> None:
        self.outputs: list[ContainerOutput] = []
        self.output_times: list[float] = []
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.problems: list[str] = []
        self.on_block = on_block
        self.lock = threading.Lock()

    def on_output(self, output: ContainerOutput) -> None:
        with self.lock:
            self.outputs.append(output)
            self.output_times.append(time.monotonic())
        if self.on_block is not None:
            self.on_block(output)

    def on_stdout(self, data: bytes) -> None:
        with self.lock:
            self.stdout += data

    def on_stderr(self, data: bytes) -> None:
        with self.lock:
            self.stderr += data

    def on_problem(self, message: str) -> None:
        self.problems.append(message)

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", errors="replace")


@attrs.define
class ProjectHelper:
    """A temporary NanoClaw project with a few groups."""

    root: Path

    @property
    def project(self) -> Project:
        return Project(root=self.root)

    def group(self, folder: str) -> Group:
        """The group ``folder`` (``main`` is the main group), its folder created."""
        (self.root / "groups" / folder).mkdir(parents=True, exist_ok=True)
        return resolve_group(self.project, folder)

    def request(
        self,
        folder: str = "dev",
        *,
        settings: ContainerSettings,
        command: tuple[str, ...] | None = None,
        prompt: str | None = None,
        secrets: dict[str, str] | None = None,
        timeout_ms: int = 60_000,
        sink: OutputSink | None = None,
        run_id: str = "",
    ) -> ExecuteRequest:
        return NanoclawProject(self.root).execute_request(
            folder,
            settings,
            command=command,
            prompt=prompt or "hello",
            secrets=secrets,
            timeout_ms=timeout_ms,
            sink=sink if sink is not None else RecordingSink(),
            run_id=run_id,
        )


@attrs.define
class Standins:
    """The engine stand-ins on PATH, each with its state folder."""

    state: dict[str, Path]

    def calls(self, tool: str) -> list[list[str]]:
        path = self.state[tool] / "calls.jsonl"
        if not path.exists():
            return []
        return [json.loads(line)["argv"] for line in path.read_text().splitlines()]

    def containers(self, tool: str) -> list[dict]:
        return [
            json.loads(p.read_text())
            for p in sorted((self.state[tool] / "containers").glob("*.json"))
        ]

    def set_down(self, tool: str, down: bool = True) -> None:
        flag = self.state[tool] / "down"
        if down:
            flag.touch()
        else:
            flag.unlink(missing_ok=True)

    def add_image(self, tool: str, ref: str, entrypoint: list[str], cmd: list[str] = ()) -> None:
        (self.state[tool] / "images").mkdir(parents=True, exist_ok=True)
        key = ref if ":" in ref.rsplit("/", 1)[-1] else f"{ref}:latest"
        key = "".join(c if c.isalnum() or c in "_.-" else "_" for c in key)
        (self.state[tool] / "images" / f"{key}.json").write_text(
            json.dumps({"entrypoint": entrypoint, "cmd": list(cmd)})
        )

    def run(self, tool: str, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [tool, *args], capture_output=True, text=True, check=check, timeout=60
        )
