"""The contract suite: what every runtime must do, and what it promises, through the real
dispatcher.

A runtime proves itself in a few lines (no plugin activation needed)::

    # tests/test_contract.py
    from nanoclaw_runtimes_core.testing.contract import RuntimeContract

    class TestMineContract(RuntimeContract):
        runtime_name = "mine"

Every test builds a fresh project, selects the runtime through a group's
``config.json`` (``containerConfig.runtime``) and drives it with
:class:`~nanoclaw_runtimes_core.Runtimes`, so the hooks are called exactly as
the CLI calls them. Each call into the runtime runs in a worker thread with a
hard deadline (:mod:`.watchdog`): a runtime that ignores its timeout fails the
test and its processes are killed; it never hangs the suite.

What every runtime must do: answer in agent mode with streamed blocks, pass
stdout through byte for byte and the exit status as it is, apply the idle
timeout and leave nothing running, show every contract mount with its mode
(when it shows the sandbox layout at all), keep secrets out of every host
command line, log and file, keep the host's environment out of the sandbox,
leave no privileged file behind, and reset and report its state.

What it promises, checked only when ``engine_status(...).isolation`` declares it:
``network`` (only ``lo``, the host's loopback unreachable), ``pid`` (host
processes invisible), ``filesystem`` (other groups and the host's folders
invisible), ``masks`` (``/workspace/group/config.json`` and the main group's
``/workspace/project/.env`` read-only or empty).

Class attributes a subclass may set:

``runtime_name``
    The runtime's name (its entry point's name). Required.
``runtime_plugin``
    A plugin object, module or module name to register in process instead of loading the
    installed entry point.
``runtime_distribution``
    When set, the distribution the entry point must come from.
``agent_command_supported``
    False when the runtime cannot run the example agent or a group's ``agentCommand`` (its
    agent is baked into an image): the agent-mode tests are skipped.
``workspace_in_sandbox``
    The working directory the sandbox reports (``/workspace/group``); None for a runtime
    without a sandbox, whose working directory is the host folder (the mount tests are then
    skipped: it shows no sandbox layout).
``persistent_state``
    True when files outside the workspace (``$HOME``) persist between runs until ``reset``.
``short_timeout_ms`` / ``run_timeout_ms``
    The idle timeout of the timeout tests (long enough for the sandbox to start and run a
    command) and of every other run.
``deadline_grace_s``
    How long past a run's own timeout the watchdog waits before it fails the test.
``skip_tests``
    ``{"test_name": "why this runtime cannot pass it"}``; the reason is shown.

Fixtures a subclass may override: ``runtime_env`` (environment variables for the runtime's
settings, e.g. the path of a stand-in engine) and ``runtime_group_config``
(``containerConfig`` keys every test group gets).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest

from ..dispatch import Runtimes
from ..models import ISOLATION_PROPERTIES, ContainerInput, EngineStatus, ExecutionResult, StatsRow
from ..plugins import HOOK_NAMES, Registry
from ..record import Record
from . import KEPT, clean_environ, setting_env
from .processes import ArgvWatch
from .project import NanoclawProject, RecordingSink
from .watchdog import call_with_deadline

__all__ = ["ContractHarness", "RuntimeContract", "block_script"]

WORKSPACE = "/workspace/group"
MAX_SCANNED_FILE = 64 * 2**20
T = TypeVar("T")


def block_script(result: str) -> str:
    """``sh`` that prints one success block whose result is ``result`` (letters, digits, ``-``).

    The markers are assembled at run time, so they never appear literally in the script (a
    console that echoes the script cannot fake a block).
    """
    payload = '{"status":"success","result":"' + result + '"}'
    return (
        f'm=NANOCLAW_OUTPUT; printf "%s\\n" "---${{m}}_START---" \'{payload}\' "---${{m}}_END---"'
    )


def _token() -> str:
    return uuid.uuid4().hex[:12]


def _split(token: str) -> str:
    """``sh`` that sets ``$t`` to ``token`` without the token appearing in any command line."""
    half = len(token) // 2
    return f"t1={token[:half]}; t2={token[half:]}; t=$t1$t2"


class ContractHarness(Record, frozen=False, kw_only=False):
    """One test's project, runtime and helpers to run things in a group's sandbox."""

    project: NanoclawProject
    runtimes: Runtimes
    runtime: str
    registry: Registry
    environ: dict[str, str]
    group_config: Mapping[str, Any]
    run_timeout_ms: int
    deadline_grace_s: float

    def group(self, folder: str, **config: Any) -> Path:
        """A group whose config selects the runtime under test; returns its host folder."""
        return self.project.group(folder, {"runtime": self.runtime, **self.group_config, **config})

    def guarded(self, what: str, fn: Callable[[], T], timeout_ms: int | None = None) -> T:
        """Call ``fn`` with the watchdog's deadline: the run's timeout plus the grace."""
        limit = (timeout_ms or self.run_timeout_ms) / 1000 + self.deadline_grace_s
        return call_with_deadline(fn, limit, what=f"{self.runtime}: {what}")

    def execute(
        self, folder: str, *, timeout_ms: int | None = None, **kwargs: Any
    ) -> ExecutionResult:
        """``Runtimes.execute`` under the watchdog, with a unique run name."""
        timeout = timeout_ms or self.run_timeout_ms
        name = f"nc-contract-{_token()}"
        return call_with_deadline(
            lambda: self.runtimes.execute(folder, timeout_ms=timeout, run_name=name, **kwargs),
            timeout / 1000 + self.deadline_grace_s,
            what=f"{self.runtime}: a run of group {folder!r}",
            markers=(name,),
        )

    def run(
        self,
        folder: str,
        script: str,
        *,
        timeout_ms: int | None = None,
        sink: RecordingSink | None = None,
    ) -> tuple[ExecutionResult, RecordingSink]:
        """Run ``sh -c script`` in the group's sandbox (command mode)."""
        sink = sink or RecordingSink()
        result = self.execute(
            folder, command=("sh", "-c", script), sink=sink, timeout_ms=timeout_ms
        )
        return result, sink

    def ask(
        self,
        folder: str,
        prompt: str,
        *,
        secrets: Mapping[str, str] | None = None,
        debug: bool | None = None,
        is_main: bool = False,
    ) -> tuple[ExecutionResult, RecordingSink]:
        """Send ``prompt`` to the group's agent (agent mode)."""
        sink = RecordingSink()
        inp = ContainerInput(
            prompt=prompt,
            group_folder=folder,
            chat_jid="contract@g.us",
            is_main=is_main,
            assistant_name="Andy",
            secrets=dict(secrets) if secrets else None,
        )
        result = self.execute(folder, input=inp, sink=sink, debug=debug)
        return result, sink

    def agent(
        self,
        folder: str,
        script: str,
        *,
        timeout_ms: int | None = None,
        sink: RecordingSink | None = None,
    ) -> tuple[ExecutionResult, RecordingSink]:
        """Agent mode with ``sh -c script`` as the group's ``agentCommand`` (it gets the
        ContainerInput on stdin and prints blocks)."""
        self.group(folder, agentCommand=["sh", "-c", script])
        sink = sink or RecordingSink()
        inp = ContainerInput(
            prompt="contract", group_folder=folder, chat_jid="contract@g.us", is_main=False
        )
        result = self.execute(folder, input=inp, sink=sink, timeout_ms=timeout_ms)
        return result, sink

    def isolation(self) -> frozenset[str]:
        """The isolation properties the runtime declares here."""
        status = self.guarded("engine_status", lambda: self.runtimes.engine_status(self.runtime))
        return status.isolation if status is not None else frozenset()


def describe(result: ExecutionResult, sink: RecordingSink) -> str:
    """A run's result and output, for assertion messages."""
    return (
        f"exit_code={result.exit_code} status={result.status} timed_out={result.timed_out} "
        f"error={result.error_message()!r}\nstdout: {sink.stdout_text[-2000:]!r}\n"
        f"stderr: {sink.stderr_text[-2000:]!r}\nproblems: {sink.problems!r}"
    )


def assert_ok(result: ExecutionResult, sink: RecordingSink) -> None:
    """The run succeeded with exit status 0."""
    assert result.status == "success" and result.exit_code == 0, describe(result, sink)


def _lines(sink: RecordingSink, prefix: str) -> list[str]:
    return [
        line[len(prefix) :].strip()
        for line in sink.stdout_text.splitlines()
        if line.startswith(prefix)
    ]


def files_containing(roots: Sequence[Path], needles: Sequence[bytes], since: float) -> list[str]:
    """Files under ``roots`` changed since ``since`` (up to 64 MB each) holding any needle."""
    hits = []
    for root in roots:
        for folder, _dirs, files in os.walk(root):
            for name in files:
                path = Path(folder, name)
                try:
                    st = path.lstat()
                    if not path.is_file() or path.is_symlink() or st.st_size > MAX_SCANNED_FILE:
                        continue
                    if max(st.st_mtime, st.st_ctime) < since:
                        continue
                    data = path.read_bytes()
                except OSError:
                    continue
                if any(n in data for n in needles):
                    hits.append(str(path))
    return hits


def _new_temp_entries(since: float) -> list[Path]:
    """Top-level entries of the temporary folder changed since ``since``."""
    found = []
    with contextlib.suppress(OSError), os.scandir(tempfile.gettempdir()) as entries:
        for entry in entries:
            with contextlib.suppress(OSError):
                st = entry.stat(follow_symlinks=False)
                if max(st.st_mtime, st.st_ctime) >= since:
                    found.append(Path(entry.path))
    return found


MOUNT_PROBE = r"""
probe() {
  p=$1
  if [ ! -d "$p" ]; then echo "MODE $p missing"; return; fi
  f="$p/.contract-probe-$$"
  if (echo x > "$f") 2>/dev/null; then rm -f "$f"; echo "MODE $p rw"; return; fi
  # The agent controls the sandbox: it tries to make the mount writable again.
  mount -o remount,rw,bind "$p" 2>/dev/null; mount -o remount,rw "$p" 2>/dev/null
  umount "$p" 2>/dev/null
  if (echo x > "$f") 2>/dev/null; then rm -f "$f"; echo "MODE $p rw-after-remount"; return; fi
  echo "MODE $p ro"
}
"""


class RuntimeContract:
    """Subclass as ``class TestXContract(RuntimeContract): runtime_name = "x"``."""

    runtime_name: ClassVar[str] = ""
    runtime_plugin: ClassVar[Any] = None
    runtime_distribution: ClassVar[str | None] = None
    agent_command_supported: ClassVar[bool] = True
    workspace_in_sandbox: ClassVar[str | None] = WORKSPACE
    persistent_state: ClassVar[bool] = False
    short_timeout_ms: ClassVar[int] = 2000
    run_timeout_ms: ClassVar[int] = 120_000
    deadline_grace_s: ClassVar[float] = 45.0
    skip_tests: ClassVar[Mapping[str, str]] = {}

    # ----------------------------------------------------------------- fixtures

    @pytest.fixture
    def runtime_env(self) -> dict[str, str]:
        """Environment variables for the runtime's settings; override to add some."""
        return {}

    @pytest.fixture
    def runtime_group_config(self) -> dict[str, Any]:
        """``containerConfig`` keys every test group gets besides ``runtime``."""
        return {}

    @pytest.fixture(autouse=True)
    def _contract_skip(self, request: pytest.FixtureRequest) -> None:
        if not self.runtime_name:
            pytest.fail(f"{type(self).__name__}: set runtime_name = '<your runtime>'")
        name = getattr(request.node, "originalname", None) or request.node.name
        reason = self.skip_tests.get(name)
        if reason:
            pytest.skip(f"{self.runtime_name}: {reason}")

    @pytest.fixture
    def contract_registry(self) -> Registry:
        """A registry holding the runtime under test (and nothing else)."""
        registry = Registry()
        plugin = self.runtime_plugin
        if plugin is not None:
            if isinstance(plugin, str):
                plugin = importlib.import_module(plugin)
            registry.register(self.runtime_name, plugin)
            return registry
        registry.load_entry_points([self.runtime_name])
        if self.runtime_name not in registry.names():
            pytest.fail(
                f"runtime {self.runtime_name!r} is not installed: no entry point named "
                f"{self.runtime_name!r} in the group 'nanoclaw_runtimes'. Install the "
                "distribution that declares it (pip install -e .), or set runtime_plugin."
            )
        return registry

    @pytest.fixture
    def contract_project(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[NanoclawProject]:
        """A fresh project; the core's variables are removed from this process's environment."""
        helper = NanoclawProject()
        for name in list(os.environ):
            if name not in KEPT and (
                name in setting_env() or name.startswith(("NANOCLAW_", "CONTAINER_"))
            ):
                monkeypatch.delenv(name)
        monkeypatch.setenv("NANOCLAW_MOUNT_ALLOWLIST", str(helper.allowlist_path))
        try:
            yield helper
        finally:
            helper.remove()

    @pytest.fixture
    def contract(
        self,
        contract_project: NanoclawProject,
        contract_registry: Registry,
        runtime_env: dict[str, str],
        runtime_group_config: dict[str, Any],
    ) -> ContractHarness:
        """The harness of one contract test."""
        info = contract_registry.get(self.runtime_name)
        environ = clean_environ(
            settings_classes=[info.settings_class], allowlist=contract_project.allowlist_path
        )
        environ.update(runtime_env)
        runtimes = Runtimes(contract_project.root, environ=environ, registry=contract_registry)
        return ContractHarness(
            project=contract_project,
            runtimes=runtimes,
            runtime=self.runtime_name,
            registry=contract_registry,
            environ=environ,
            group_config=dict(runtime_group_config),
            run_timeout_ms=self.run_timeout_ms,
            deadline_grace_s=self.deadline_grace_s,
        )

    def _needs_agent(self) -> None:
        if not self.agent_command_supported:
            pytest.skip(f"{self.runtime_name}: agent_command_supported = False")

    def _needs(self, contract: ContractHarness, prop: str) -> None:
        if prop not in contract.isolation():
            pytest.skip(f"{self.runtime_name} does not declare {prop!r} isolation")

    def _needs_layout(self) -> None:
        if self.workspace_in_sandbox is None:
            pytest.skip(f"{self.runtime_name} shows no sandbox layout (workspace_in_sandbox)")

    # ----------------------------------------------------------------- the plugin itself

    def test_skip_reasons_name_real_tests(self) -> None:
        """Every entry of ``skip_tests`` names a test of this suite and gives a reason."""
        tests = {n for n in dir(RuntimeContract) if n.startswith("test_")}
        for name, reason in self.skip_tests.items():
            assert name in tests, f"skip_tests: {name!r} is not a contract test; known: {tests}"
            assert str(reason).strip(), f"skip_tests: {name!r} needs a reason"

    def test_runtime_is_registered(self, contract: ContractHarness) -> None:
        info = contract.registry.get(self.runtime_name)
        assert "execute" in info.hooks, f"{self.runtime_name} does not implement execute"
        assert set(info.hooks) <= set(HOOK_NAMES), f"unknown hooks: {info.hooks}"
        if self.runtime_plugin is None:
            assert not info.distribution.startswith("("), (
                f"entry point {self.runtime_name!r} has no distribution: {info.distribution}"
            )
            if self.runtime_distribution is not None:
                assert info.distribution == self.runtime_distribution

    def test_runtime_settings_are_declared(self, contract: ContractHarness) -> None:
        from ..settings.fields import fields_of
        from ..settings.resolve import Sources, resolve

        cls = contract.registry.call(self.runtime_name, "runtime_settings")
        if cls is None:
            return  # a runtime without settings
        fields = fields_of(cls)  # raises with the field and the fix when a declaration is wrong
        for f in fields:
            assert f.info.help.strip(), f"setting {f.name} of {self.runtime_name} has no help"
        found = resolve(cls, Sources(environ={}))
        assert not found.problems, f"the defaults of {cls.__qualname__} fail: {found.problems}"
        assert isinstance(found.settings, cls)

    def test_engine_status_is_reported(self, contract: ContractHarness) -> None:
        status = contract.guarded(
            "engine_status", lambda: contract.runtimes.engine_status(self.runtime_name)
        )
        assert isinstance(status, EngineStatus), f"engine_status returned {status!r}"
        assert status.engine.strip(), "EngineStatus.engine is empty"
        assert status.available, (
            f"the engine is not available here, the contract cannot run: {status.detail}; "
            f"fix: {status.fix or '(none given)'}"
        )
        unknown = set(status.isolation) - set(ISOLATION_PROPERTIES)
        assert not unknown, f"unknown isolation names {unknown}; known: {ISOLATION_PROPERTIES}"

    def test_group_config_selects_the_runtime(self, contract: ContractHarness) -> None:
        contract.group("contract-a")
        # The group's own choice wins over CONTAINER_RUNTIME (here: a runtime not installed).
        contract.environ["CONTAINER_RUNTIME"] = "not-installed-runtime"
        assert contract.runtimes.plan("contract-a").runtime == self.runtime_name
        result, sink = contract.run("contract-a", "exit 0")
        assert_ok(result, sink)
        logs = contract.project.run_logs("contract-a")
        assert len(logs) == 1, f"expected one run log, found {logs}"
        assert f"Runtime: {self.runtime_name}\n" in logs[-1].read_text()

    def test_prepare_is_idempotent(self, contract: ContractHarness) -> None:
        if "prepare" not in contract.registry.get(self.runtime_name).hooks:
            pytest.skip(f"{self.runtime_name} does not implement prepare")
        contract.group("contract-a")
        for _ in range(2):
            summary = contract.guarded("prepare", lambda: contract.runtimes.prepare("contract-a"))
            assert summary is None or isinstance(summary, str), f"prepare returned {summary!r}"
        assert_ok(*contract.run("contract-a", "exit 0"))

    # ----------------------------------------------------------------- agent and command mode

    def test_agent_answers_with_streamed_blocks(self, contract: ContractHarness) -> None:
        self._needs_agent()
        contract.group("contract-a")
        prompt = f"contract ping {_token()}"
        result, sink = contract.ask("contract-a", prompt)
        assert_ok(result, sink)
        assert result.outputs, "the agent's output blocks were not parsed"
        assert sink.outputs == list(result.outputs), "the sink did not see every block, in order"
        answers = [o.result for o in result.outputs if o.result is not None]
        assert answers and prompt in answers[0], f"not the example agent's answer: {answers}"
        assert result.outputs[-1].new_session_id, "the final session block was lost"
        assert sink.stdout.count(b"---NANOCLAW_OUTPUT_START---\n") == len(result.outputs), (
            "stdout did not reach the sink as the agent printed it"
        )

    def test_agent_runs_in_the_workspace(self, contract: ContractHarness) -> None:
        self._needs_agent()
        workspace = contract.group("contract-a")
        for n in (1, 2):
            result, sink = contract.ask("contract-a", f"message {n}")
            assert_ok(result, sink)
            assert f"Message {n} " in (result.outputs[0].result or ""), result.outputs
        assert (workspace / ".example-agent-history").read_text().strip() == "2"

    def test_command_stdout_passes_through_byte_for_byte(self, contract: ContractHarness) -> None:
        contract.group("contract-a")
        tok = _token()
        script = f"printf 'out-{tok}\\000\\377\\r\\nend'; echo err-{tok} >&2"
        result, sink = contract.run("contract-a", script)
        assert_ok(result, sink)
        assert f"out-{tok}".encode() + b"\x00\xff\r\nend" in sink.stdout, describe(result, sink)
        # Some engines mix stderr into stdout (a VM console); it must come out somewhere.
        assert f"err-{tok}" in sink.stderr_text + sink.stdout_text, describe(result, sink)
        assert not result.outputs

    def test_command_exit_status_passes_through(self, contract: ContractHarness) -> None:
        contract.group("contract-a")
        result, sink = contract.run("contract-a", "exit 3")
        assert result.exit_code == 3, describe(result, sink)
        assert result.status == "error" and not result.timed_out
        assert (result.error_message() or "").startswith("Container exited with code 3")

    def test_workspace_is_the_working_directory(self, contract: ContractHarness) -> None:
        workspace = contract.group("contract-a")
        tok = _token()
        (workspace / "from-host.txt").write_text(f"host-{tok}\n")
        result, sink = contract.run(
            "contract-a", f"pwd; cat from-host.txt; echo sandbox-{tok} > from-sandbox.txt"
        )
        assert_ok(result, sink)
        lines = [line.strip() for line in sink.stdout_text.splitlines() if line.strip()]
        assert len(lines) >= 2 and lines[1] == f"host-{tok}", describe(result, sink)
        if self.workspace_in_sandbox is not None:
            assert lines[0] == self.workspace_in_sandbox, describe(result, sink)
        else:  # no sandbox: the working directory is the host folder itself
            assert os.path.realpath(lines[0]) == os.path.realpath(workspace), lines[0]
        assert (workspace / "from-sandbox.txt").read_text().strip() == f"sandbox-{tok}"

    def test_blocks_stream_before_the_run_ends(self, contract: ContractHarness) -> None:
        workspace = contract.group("contract-a")
        tok = _token()

        class Releasing(RecordingSink):
            def on_output(self, output: Any) -> None:
                super().on_output(output)
                (workspace / "release.flag").write_text("go")
                os.chmod(workspace / "release.flag", 0o666)

        # The command waits (up to 60 s) for a file that only the sink creates, when it
        # receives the block: a runtime that holds blocks back until the end fails here.
        script = (
            f"cat > /dev/null; {block_script('first-' + tok)}\n"
            "i=0; while [ ! -e release.flag ]; do i=$((i+1)); "
            "if [ $i -gt 600 ]; then echo never-released; exit 7; fi; sleep 0.1; done\n"
            "echo released"
        )
        self._needs_agent()
        result, sink = contract.agent("contract-a", script, sink=Releasing())
        assert_ok(result, sink)
        assert "released" in sink.stdout_text.split(), describe(result, sink)
        assert [o.result for o in result.outputs] == [f"first-{tok}"]

    # ----------------------------------------------------------------- timeouts

    def test_timeout_without_output_is_an_error_and_leaves_nothing_running(
        self, contract: ContractHarness
    ) -> None:
        workspace = contract.group("contract-a")
        script = "i=0; while :; do i=$((i+1)); echo $i > heartbeat.txt; sleep 0.2; done"
        result, sink = contract.run("contract-a", script, timeout_ms=self.short_timeout_ms)
        assert result.timed_out, describe(result, sink)
        assert result.status == "error" and not result.outputs
        assert result.error_message() == f"Container timed out after {self.short_timeout_ms}ms"
        heartbeat = workspace / "heartbeat.txt"
        assert heartbeat.exists(), (
            f"the command never started within {self.short_timeout_ms} ms; "
            "raise short_timeout_ms for this runtime"
        )
        time.sleep(1.0)
        before = heartbeat.read_text()
        time.sleep(2.0)
        assert heartbeat.read_text() == before, "the timed-out command is still running"

    def test_idle_after_output_is_success(self, contract: ContractHarness) -> None:
        self._needs_agent()
        tok = _token()
        script = f"cat > /dev/null; {block_script('done-' + tok)}\nsleep 60"
        result, sink = contract.agent("contract-a", script, timeout_ms=self.short_timeout_ms)
        assert result.timed_out, describe(result, sink)
        assert result.status == "success" and result.error_message() is None
        assert [o.result for o in result.outputs] == [f"done-{tok}"]

    # ----------------------------------------------------------------- mounts and files

    def _mount_modes(self, contract: ContractHarness, folder: str) -> dict[str, str]:
        plan = contract.runtimes.plan(folder)
        paths = [m.container_path for m in plan.mounts.mounts if not m.is_file]
        script = MOUNT_PROBE + "".join(f"probe {p}\n" for p in paths)
        result, sink = contract.run(folder, script)
        assert_ok(result, sink)
        seen = dict(line.split(" ", 1) for line in _lines(sink, "MODE "))
        expected = {m.container_path: "ro" if m.readonly else "rw" for m in plan.mounts.mounts}
        wrong = {
            p: f"{seen.get(p, 'not probed')} (expected {mode})"
            for p, mode in expected.items()
            if seen.get(p) != mode
        }
        assert not wrong, f"group {folder}: mounts not shown with their mode: {wrong}"
        return seen

    def _allow_extra(self, contract: ContractHarness) -> Path:
        shared = contract.project.base / "shared"
        (shared / "docs").mkdir(parents=True, exist_ok=True)
        (shared / "work").mkdir(parents=True, exist_ok=True)
        for p in (shared, shared / "docs", shared / "work"):
            os.chmod(p, 0o777)
        contract.project.write_allowlist(
            {"allowedRoots": [{"path": str(shared), "allowReadWrite": True}]}
        )
        return shared

    def test_contract_mounts_have_their_modes(self, contract: ContractHarness) -> None:
        """Every mount of a group (read-only ones really read-only, even to an agent that tries
        to remount them) and of the main group, additional mounts included."""
        self._needs_layout()
        shared = self._allow_extra(contract)
        extra = [
            {"hostPath": str(shared / "docs"), "containerPath": "docs"},
            {"hostPath": str(shared / "work"), "containerPath": "work", "readonly": False},
        ]
        contract.group("contract-a", additionalMounts=extra)
        seen = self._mount_modes(contract, "contract-a")
        assert seen["/workspace/global"] == "ro" and seen["/workspace/extra/work"] == "ro"
        contract.group("main", additionalMounts=extra)
        seen = self._mount_modes(contract, "main")
        assert seen["/workspace/project"] == "ro" and seen["/workspace/global"] == "rw"
        assert seen["/workspace/extra/work"] == "rw"

    def test_config_change_in_a_run_is_refused(self, contract: ContractHarness) -> None:
        """What a sandbox writes to its group's config.json never decides the next run."""
        path = contract.group("contract-a")
        before = (path / "config.json").read_bytes()
        script = (
            'printf \'%s\' \'{"containerConfig": {"runtime": "elsewhere"}}\' '
            "> config.json 2>/dev/null; true"
        )
        assert_ok(*contract.run("contract-a", script))
        plan = contract.runtimes.plan("contract-a")
        assert plan.runtime == self.runtime_name
        assert plan.config.data == before, "the config written in the sandbox is in force"

    def test_config_json_is_read_only_inside(self, contract: ContractHarness) -> None:
        """``masks``: /workspace/group/config.json shows the trusted config, read-only."""
        self._needs(contract, "masks")
        path = contract.group("contract-a")
        before = (path / "config.json").read_bytes()
        script = (
            "cat config.json; echo; echo '{}' > config.json 2>/dev/null && echo WROTE; "
            "mount -o remount,rw,bind config.json 2>/dev/null; umount config.json 2>/dev/null; "
            "echo '{}' > config.json 2>/dev/null && echo WROTE-AFTER-REMOUNT; true"
        )
        result, sink = contract.run("contract-a", script)
        assert_ok(result, sink)
        assert "WROTE" not in sink.stdout_text, f"config.json is writable: {describe(result, sink)}"
        assert json.loads(before)["containerConfig"]["runtime"] in sink.stdout_text
        assert (path / "config.json").read_bytes() == before

    def test_project_env_is_masked_for_main(self, contract: ContractHarness) -> None:
        """``masks``: the main group sees the project read-only, its .env empty."""
        self._needs(contract, "masks")
        self._needs_layout()
        tok = _token()
        contract.project.write_env(f"NC_CONTRACT_DOTENV=dotenv-{tok}\n")
        contract.group("main")
        result, sink = contract.run("main", "cat /workspace/project/.env 2>&1; true")
        assert result.exit_code == 0, describe(result, sink)
        assert f"dotenv-{tok}" not in sink.stdout_text, "the main group reads the project's .env"

    def test_files_left_behind_are_not_privileged(self, contract: ContractHarness) -> None:
        workspace = contract.group("contract-a")
        script = (
            "echo x > owned.txt; mkdir owned.d; chmod 4755 owned.txt 2>/dev/null; "
            "mknod owned.dev c 1 3 2>/dev/null; mkfifo owned.fifo 2>/dev/null; true"
        )
        assert_ok(*contract.run("contract-a", script))
        problems = []
        for name in ("owned.txt", "owned.d", "owned.dev", "owned.fifo"):
            try:
                st = os.lstat(workspace / name)
            except FileNotFoundError:
                continue
            if os.geteuid() == 0 and st.st_uid == 0:
                problems.append(f"{name} belongs to root")
            if (st.st_mode & 0o170000) in (0o020000, 0o060000):
                problems.append(f"{name} is a device node")
            if st.st_mode & 0o4000 and st.st_uid == 0:
                problems.append(f"{name} is setuid root")
        assert (workspace / "owned.txt").exists(), "the sandbox could not write its workspace"
        assert not problems, problems

    # ----------------------------------------------------------------- secrets and environment

    def test_secrets_never_reach_argv_logs_or_files(self, contract: ContractHarness) -> None:
        """Secrets of the input and values of the sandbox's env never appear on any host command
        line (scanned while the run sleeps), in the run log or in a file left behind."""
        since = time.time() - 1
        env_secret = f"sk-env-{_token()}{_token()}"
        # Passed through from the host's environment by name: no file of the test holds it.
        contract.environ["NC_CONTRACT_TOKEN"] = env_secret
        contract.group("contract-a", env=["NC_CONTRACT_TOKEN"])
        script = (
            'case "$NC_CONTRACT_TOKEN" in sk-env-*) echo ENV-OK;; esac; '
            'echo "$NC_CONTRACT_TOKEN" > token-copy.txt; sleep 2'
        )
        secrets = [env_secret]
        with ArgvWatch(secrets) as watch:
            result, sink = contract.run("contract-a", script)
        assert_ok(result, sink)
        assert "ENV-OK" in sink.stdout_text, "the group's env did not reach the sandbox"
        if self.agent_command_supported:
            input_secret = f"sk-input-{_token()}{_token()}"
            secrets.append(input_secret)
            agent = (
                'input=$(cat); sleep 2; case "$input" in *sk-input-*) '
                f"{block_script('secrets-yes')};; *) {block_script('secrets-no')};; esac"
            )
            contract.group("contract-s", agentCommand=["sh", "-c", agent])
            with ArgvWatch(secrets) as agent_watch:
                result, sink = contract.ask(
                    "contract-s", "hi", secrets={"ANTHROPIC_API_KEY": input_secret}, debug=True
                )
            assert_ok(result, sink)
            assert [o.result for o in result.outputs] == ["secrets-yes"], describe(result, sink)
            watch.hits += agent_watch.hits
        assert watch.scans > 5, "the command lines were not scanned while the run went on"
        assert not watch.hits, f"a secret was on a host command line: {watch.hits}"
        logs = contract.project.run_logs("contract-a") + contract.project.run_logs("contract-s")
        assert logs, "no run log written"
        from ..runs import runs_dir

        roots = sorted({contract.project.base, runs_dir(), *_new_temp_entries(since)})
        found = files_containing(roots, [s.encode() for s in secrets], since)
        # The sandbox itself wrote its token into its workspace; nothing else may hold one.
        found = [f for f in found if not f.endswith("/contract-a/token-copy.txt")]
        assert not found, f"secret values written to disk in clear: {found}"

    def test_host_environment_does_not_reach_the_sandbox(
        self, contract: ContractHarness, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        tok = f"canary-{_token()}"
        monkeypatch.setenv("NC_CONTRACT_HOST_CANARY", tok)
        contract.environ["NC_CONTRACT_HOST_CANARY"] = tok
        contract.group("contract-a")
        result, sink = contract.run(
            "contract-a", "env; tr '\\0' '\\n' < /proc/self/environ 2>/dev/null; true"
        )
        assert_ok(result, sink)
        assert "PATH=" in sink.stdout_text, describe(result, sink)
        assert tok not in sink.stdout_text, "the host's environment reached the sandbox"

    # ----------------------------------------------------------------- declared isolation

    def test_network_isolation(self, contract: ContractHarness) -> None:
        """``network``: only ``lo`` inside, and a listener on the host's loopback unreachable."""
        self._needs(contract, "network")
        contract.group("contract-a")
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.setblocking(False)
        port = listener.getsockname()[1]
        script = (
            "if [ -r /proc/net/dev ]; then tail -n +3 /proc/net/dev | cut -d: -f1 | "
            "sed 's/^ */IFACE /'; fi\n"
            'for i in /sys/class/net/*; do [ -e "$i" ] && echo "IFACE ${i##*/}"; done\n'
            "if command -v python3 >/dev/null; then echo TOOL python3; python3 -c "
            f"\"import socket; socket.create_connection(('127.0.0.1', {port}), 2)\" "
            "2>/dev/null && echo CONNECTED; fi\n"
            f"if command -v nc >/dev/null; then echo TOOL nc; nc -w 2 127.0.0.1 {port} "
            "</dev/null 2>/dev/null && echo CONNECTED; fi\n"
            "true"
        )
        try:
            result, sink = contract.run("contract-a", script)
            try:
                conn, _ = listener.accept()
                conn.close()
                reached = True
            except BlockingIOError:
                reached = False
        finally:
            listener.close()
        assert_ok(result, sink)
        interfaces = set(_lines(sink, "IFACE "))
        assert not reached and "CONNECTED" not in sink.stdout_text, (
            f"the sandbox reached a listener on the host's 127.0.0.1:{port}"
        )
        assert interfaces or _lines(sink, "TOOL "), "neither interfaces nor a client to probe"
        assert interfaces <= {"lo"}, f"network interfaces besides lo: {sorted(interfaces)}"

    def test_pid_isolation(self, contract: ContractHarness) -> None:
        """``pid``: host processes (a marked one, and this test process) are invisible."""
        self._needs(contract, "pid")
        contract.group("contract-a")
        tok = f"hostproc{_token()}"
        marked = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(120)", tok],
            stdin=subprocess.DEVNULL,
        )
        me = os.getpid()
        script = (
            f"{_split(tok)}; n=0; for f in /proc/[0-9]*/cmdline; do "
            "c=$(tr '\\0' ' ' < \"$f\" 2>/dev/null) || continue; "
            'case "$c" in *"$t"*) n=$((n+1));; esac; done; echo "SEEN $n"; '
            f"tr '\\0' ' ' < /proc/{me}/cmdline 2>/dev/null | sed 's/^/TESTPID /'; echo; true"
        )
        try:
            result, sink = contract.run("contract-a", script)
        finally:
            marked.kill()
            marked.wait()
        assert_ok(result, sink)
        assert _lines(sink, "SEEN ") == ["0"], f"host processes are visible: {sink.stdout_text}"
        own = " ".join(sys.argv[:1])
        assert not any(own in line for line in _lines(sink, "TESTPID ")), (
            "the test process is visible from the sandbox"
        )

    def test_filesystem_isolation(self, contract: ContractHarness) -> None:
        """``filesystem``: another group's files, the project, folders outside it, the temporary
        folder and the home folder are invisible."""
        self._needs(contract, "filesystem")
        contract.group("contract-a")
        other = contract.group("contract-b")
        tok = _token()
        canaries = [
            other / f"canary-{tok}.txt",
            contract.project.base / "outside" / f"canary-{tok}",
        ]
        temp = Path(tempfile.gettempdir()) / f"nanoclaw-contract-canary-{tok}"
        canaries.append(temp)
        home = Path.home() / f".nanoclaw-contract-canary-{tok}"
        with contextlib.suppress(OSError):
            home.write_text(tok)
            canaries.append(home)
        for path in canaries:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(tok)
            os.chmod(path, 0o644)
        checks = "".join(f"[ -e {p} ] && echo SEEN {p}\n" for p in canaries)
        checks += f"[ -e {contract.project.root / 'groups'} ] && echo SEEN project\n"
        checks += (
            "find /workspace /home /tmp /root /mnt /srv /opt /var /run /media -maxdepth 6 "
            f"-name '*canary-{tok}*' 2>/dev/null | sed 's/^/SEEN /'; true"
        )
        try:
            result, sink = contract.run("contract-a", checks)
        finally:
            for path in (temp, home):
                with contextlib.suppress(OSError):
                    path.unlink()
        assert_ok(result, sink)
        seen = _lines(sink, "SEEN ")
        assert not seen, f"the sandbox sees host files: {seen}"

    # ----------------------------------------------------------------- state

    def test_reset_starts_the_group_from_scratch(self, contract: ContractHarness) -> None:
        if "reset" not in contract.registry.get(self.runtime_name).hooks:
            assert not self.persistent_state, "a runtime that keeps state must implement reset"
            pytest.skip(f"{self.runtime_name} keeps nothing and does not implement reset")
        workspace = contract.group("contract-a")
        contract.group("contract-b")
        (workspace / "keep.txt").write_text("the workspace is the group's, not the runtime's")
        tok = _token()
        write = f'echo {tok} > "$HOME/contract-state.txt"'
        read = 'cat "$HOME/contract-state.txt" 2>/dev/null || echo no-state'
        for folder in ("contract-a", "contract-b"):
            assert_ok(*contract.run(folder, write))
        if self.persistent_state:
            result, sink = contract.run("contract-a", read)
            assert tok in sink.stdout_text, "state outside the workspace did not persist"
        removed = contract.guarded("reset", lambda: contract.runtimes.reset("contract-a"))
        assert isinstance(removed, list) and all(isinstance(r, str) for r in removed), removed
        if self.persistent_state:
            assert removed, "reset of a group with state reported nothing removed"
        result, sink = contract.run("contract-a", read)
        assert_ok(result, sink)
        assert tok not in sink.stdout_text and "no-state" in sink.stdout_text
        assert (workspace / "keep.txt").exists(), "reset deleted the group's workspace"
        if self.persistent_state:
            result, sink = contract.run("contract-b", read)
            assert tok in sink.stdout_text, "reset of one group touched another group's state"

    def test_stats_returns_rows(self, contract: ContractHarness) -> None:
        if "stats" not in contract.registry.get(self.runtime_name).hooks:
            assert not self.persistent_state, "a runtime that keeps state must implement stats"
            pytest.skip(f"{self.runtime_name} keeps nothing and does not implement stats")
        contract.group("contract-a")
        assert_ok(*contract.run("contract-a", 'echo x > "$HOME/contract-stats.txt"'))
        rows = contract.guarded("stats", lambda: contract.runtimes.stats([self.runtime_name]))
        assert isinstance(rows, list)
        for row in rows:
            assert isinstance(row, StatsRow), row
            assert row.runtime == self.runtime_name and row.kind.strip(), row
            assert row.apparent_mb >= 0 and row.allocated_mb >= 0, row
        if self.persistent_state:
            assert any(r.group == "contract-a" for r in rows), f"no row for the group: {rows}"
