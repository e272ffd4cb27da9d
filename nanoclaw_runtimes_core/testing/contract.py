"""The contract suite: what every runtime must do, checked through the real dispatcher.

A runtime proves itself in a few lines::

    # tests/conftest.py
    pytest_plugins = ["nanoclaw_runtimes_core.testing"]

    # tests/test_contract.py
    from nanoclaw_runtimes_core.testing.contract import RuntimeContract

    class TestMineContract(RuntimeContract):
        runtime_name = "mine"

Every test builds a fresh project, selects the runtime through a group's
``config.json`` (``containerConfig.runtime``) and drives it with
:class:`~nanoclaw_runtimes_core.api.Runtimes`, so the hooks are called exactly
as the CLI calls them. Commands are small ``sh`` scripts run in the sandbox;
agent-mode tests expect the example agent
(``python3 -m nanoclaw_runtimes_core.example_agent``) to answer.

Class attributes a subclass may set:

``runtime_name``
    The runtime's name (its entry point's name). Required.
``runtime_plugin``
    A plugin object, module or module name to register in process instead of
    loading the installed entry point.
``runtime_distribution``
    When set, the distribution the entry point must come from.
``agent_command_supported``
    False when the runtime cannot run the example agent as its agent (e.g. its
    agent is baked into an image): the agent-mode tests are skipped.
``workspace_in_sandbox``
    The working directory the sandbox reports (``/workspace/group``); None for
    a runtime without isolation, whose working directory is the host folder.
``persistent_state``
    True when files outside the workspace (``$HOME``) persist between runs until
    ``reset`` (e.g. a VM disk image); False for ephemeral sandboxes.
``short_timeout_ms`` / ``run_timeout_ms``
    The idle timeout of the timeout tests (long enough for the sandbox to start
    and run a command, raise it for slow sandboxes) and of every other run.
``skip_tests``
    ``{"test_name": "why this runtime cannot pass it"}``; the reason is shown.

Fixtures a subclass may override: ``runtime_env`` (a dict of environment
variables for the runtime's settings, e.g. the path of a stand-in engine) and
``runtime_group_config`` (``containerConfig`` keys every test group gets).
"""

from __future__ import annotations

import importlib
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import attrs
import pytest

from ..api import Runtimes
from ..models import ContainerInput, EngineStatus, ExecutionResult, StatsRow
from ..plugins import HOOK_NAMES, Registry
from ..settings import describe_settings, get_converter, resolve_settings
from . import ALLOWLIST_ENV, NanoclawProject, RecordingSink, clean_environ

__all__ = ["ContractHarness", "RuntimeContract", "block_script"]

WORKSPACE = "/workspace/group"
MAX_SCANNED_FILE = 64 * 2**20


def block_script(result: str) -> str:
    """``sh`` that prints one success block whose result is ``result`` (letters, digits, ``-``).

    The markers are assembled at run time, so they never appear literally in
    the script (a console that echoes the script, like vibe's, cannot fake one).
    """
    payload = '{"status":"success","result":"' + result + '"}'
    return (
        f'm=NANOCLAW_OUTPUT; printf "%s\\n" "---${{m}}_START---" \'{payload}\' "---${{m}}_END---"'
    )


def _token() -> str:
    return uuid.uuid4().hex[:12]


@attrs.define
class ContractHarness:
    """One test's project, runtime and helpers to run things in a group's sandbox."""

    project: NanoclawProject
    runtimes: Runtimes
    runtime: str
    registry: Registry
    environ: dict[str, str]
    group_config: Mapping[str, Any]
    run_timeout_ms: int

    def group(self, folder: str, **config: Any) -> Path:
        """A group whose config selects the runtime under test; returns its host folder."""
        return self.project.group(folder, {"runtime": self.runtime, **self.group_config, **config})

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
        result = self.runtimes.execute(
            folder,
            command=("sh", "-c", script),
            sink=sink,
            timeout_ms=timeout_ms or self.run_timeout_ms,
        )
        return result, sink

    def ask(
        self,
        folder: str,
        prompt: str,
        *,
        secrets: Mapping[str, str] | None = None,
        debug: bool | None = None,
    ) -> tuple[ExecutionResult, RecordingSink]:
        """Send ``prompt`` to the group's agent (agent mode)."""
        sink = RecordingSink()
        inp = ContainerInput(
            prompt=prompt,
            group_folder=folder,
            chat_jid="contract@g.us",
            is_main=False,
            assistant_name="Andy",
            secrets=dict(secrets) if secrets else None,
        )
        result = self.runtimes.execute(
            folder, input=inp, sink=sink, timeout_ms=self.run_timeout_ms, debug=debug
        )
        return result, sink


def _describe(result: ExecutionResult, sink: RecordingSink) -> str:
    return (
        f"exit_code={result.exit_code} status={result.status} timed_out={result.timed_out} "
        f"error={result.error_message()!r}\nstdout: {sink.stdout_text[-2000:]!r}\n"
        f"stderr: {sink.stderr_text[-2000:]!r}\nproblems: {sink.problems!r}"
    )


def _assert_ok(result: ExecutionResult, sink: RecordingSink) -> None:
    assert result.status == "success" and result.exit_code == 0, _describe(result, sink)


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
    def contract(
        self,
        nanoclaw_project: NanoclawProject,
        contract_registry: Registry,
        runtime_env: dict[str, str],
        runtime_group_config: dict[str, Any],
    ) -> ContractHarness:
        """The harness of one contract test."""
        info = contract_registry.get(self.runtime_name)
        environ = clean_environ(settings_classes=[info.settings_class])
        environ[ALLOWLIST_ENV] = str(nanoclaw_project.allowlist_path)
        environ.update(runtime_env)
        runtimes = Runtimes(nanoclaw_project.root, environ=environ, registry=contract_registry)
        return ContractHarness(
            project=nanoclaw_project,
            runtimes=runtimes,
            runtime=self.runtime_name,
            registry=contract_registry,
            environ=environ,
            group_config=dict(runtime_group_config),
            run_timeout_ms=self.run_timeout_ms,
        )

    def _needs_agent(self) -> None:
        if not self.agent_command_supported:
            pytest.skip(
                f"{self.runtime_name}: cannot run the example agent "
                "(agent_command_supported = False)"
            )

    # ----------------------------------------------------------------- the suite itself

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
        cls = contract.registry.call(self.runtime_name, "runtime_settings")
        if cls is None:
            return  # a runtime without settings
        assert attrs.has(cls), f"runtime_settings returned {cls!r}, not an attrs class"
        for doc in describe_settings(cls):
            assert doc.help.strip(), f"setting {doc.name} of {self.runtime_name} has no help text"
            assert doc.env or doc.key, f"setting {doc.name}: give it an env variable or a key"
        for field in attrs.fields(attrs.resolve_types(cls)):
            # A group key's type must be one the strict JSON converter can read.
            get_converter().get_structure_hook(field.type)
        defaults = resolve_settings(
            cls, group_values=None, group_file="", environ=contract.environ, dotenv={}
        )
        assert isinstance(defaults, cls)

    def test_group_config_selects_the_runtime(self, contract: ContractHarness) -> None:
        contract.group("contract-a")
        # The group's own choice wins over CONTAINER_RUNTIME (here: a runtime not installed).
        contract.environ["CONTAINER_RUNTIME"] = "not-installed-runtime"
        assert contract.runtimes.runtime_for("contract-a") == self.runtime_name
        result, sink = contract.run("contract-a", "exit 0")
        _assert_ok(result, sink)
        logs = contract.project.run_logs("contract-a")
        assert logs, "the dispatcher wrote no run log"
        assert f"Runtime: {self.runtime_name}\n" in logs[-1].read_text()

    def test_engine_status_is_reported(self, contract: ContractHarness) -> None:
        status = contract.runtimes.engine_status(self.runtime_name)
        assert isinstance(status, EngineStatus), f"engine_status returned {status!r}"
        assert status.engine.strip(), "EngineStatus.engine is empty"
        assert status.available, (
            f"the engine is not available here, the contract cannot run: {status.detail}; "
            f"fix: {status.fix or '(none given)'}"
        )

    def test_prepare_is_idempotent(self, contract: ContractHarness) -> None:
        if "prepare" not in contract.registry.get(self.runtime_name).hooks:
            pytest.skip(f"{self.runtime_name} does not implement prepare")
        contract.group("contract-a")
        for _ in range(2):
            summary = contract.runtimes.prepare("contract-a")
            assert summary is None or isinstance(summary, str), f"prepare returned {summary!r}"
        result, sink = contract.run("contract-a", "exit 0")
        _assert_ok(result, sink)

    def test_agent_answers_with_streamed_blocks(self, contract: ContractHarness) -> None:
        self._needs_agent()
        contract.group("contract-a")
        prompt = f"contract ping {_token()}"
        result, sink = contract.ask("contract-a", prompt)
        _assert_ok(result, sink)
        assert result.outputs, "the agent's output blocks were not parsed"
        assert sink.outputs == list(result.outputs), "the sink did not see every block, in order"
        answers = [o.result for o in result.outputs if o.result is not None]
        assert answers and prompt in answers[0], f"not the example agent's answer: {answers}"
        assert all(o.status == "success" for o in result.outputs)
        assert result.outputs[-1].new_session_id, "the final session block was lost"

    def test_agent_runs_in_the_workspace(self, contract: ContractHarness) -> None:
        self._needs_agent()
        workspace = contract.group("contract-a")
        for n in (1, 2):
            result, sink = contract.ask("contract-a", f"message {n}")
            _assert_ok(result, sink)
            assert f"Message {n} " in (result.outputs[0].result or ""), result.outputs
        # The example agent counts messages in its working directory.
        assert (workspace / ".example-agent-history").read_text().strip() == "2"

    def test_command_stdout_passes_through(self, contract: ContractHarness) -> None:
        contract.group("contract-a")
        tok = _token()
        result, sink = contract.run("contract-a", f"echo out-{tok}; echo err-{tok} >&2")
        _assert_ok(result, sink)
        assert f"out-{tok}\n" in sink.stdout_text, _describe(result, sink)
        # Some engines mix stderr into stdout (a VM console); it must come out somewhere.
        assert f"err-{tok}" in sink.stderr_text + sink.stdout_text, _describe(result, sink)
        assert not result.outputs

    def test_command_exit_status_passes_through(self, contract: ContractHarness) -> None:
        contract.group("contract-a")
        result, sink = contract.run("contract-a", "exit 3")
        assert result.exit_code == 3, _describe(result, sink)
        assert result.status == "error" and not result.timed_out
        assert "3" in (result.error_message() or "")

    def test_workspace_is_the_working_directory(self, contract: ContractHarness) -> None:
        workspace = contract.group("contract-a")
        tok = _token()
        (workspace / "from-host.txt").write_text(f"host-{tok}\n")
        result, sink = contract.run(
            "contract-a", f"pwd; cat from-host.txt; echo sandbox-{tok} > from-sandbox.txt"
        )
        _assert_ok(result, sink)
        lines = [line.strip() for line in sink.stdout_text.splitlines() if line.strip()]
        assert len(lines) >= 2 and lines[1] == f"host-{tok}", _describe(result, sink)
        if self.workspace_in_sandbox is not None:
            assert lines[0] == self.workspace_in_sandbox, _describe(result, sink)
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

        # The command waits (up to 60 s) for a file that only the sink creates, when it
        # receives the block: a runtime that holds blocks back until the end fails here.
        script = (
            f"{block_script('first-' + tok)}\n"
            "i=0; while [ ! -e release.flag ]; do i=$((i+1)); "
            "if [ $i -gt 600 ]; then echo never-released; exit 7; fi; sleep 0.1; done\n"
            "echo released"
        )
        result, sink = contract.run("contract-a", script, sink=Releasing())
        _assert_ok(result, sink)
        assert "released" in sink.stdout_text.split(), _describe(result, sink)
        assert [o.result for o in result.outputs] == [f"first-{tok}"]
        assert sink.outputs == list(result.outputs)

    def test_timeout_without_output_is_an_error_and_leaves_nothing_running(
        self, contract: ContractHarness
    ) -> None:
        workspace = contract.group("contract-a")
        script = "i=0; while :; do i=$((i+1)); echo $i > heartbeat.txt; sleep 0.2; done"
        result, sink = contract.run("contract-a", script, timeout_ms=self.short_timeout_ms)
        assert result.timed_out, _describe(result, sink)
        assert result.status == "error" and not result.outputs
        assert result.error_message() == f"Container timed out after {self.short_timeout_ms} ms"
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
        contract.group("contract-a")
        tok = _token()
        script = f"{block_script('done-' + tok)}\nsleep 60"
        result, sink = contract.run("contract-a", script, timeout_ms=self.short_timeout_ms)
        assert result.timed_out, _describe(result, sink)
        assert result.status == "success" and result.error_message() is None
        assert [o.result for o in result.outputs] == [f"done-{tok}"]
        assert sink.outputs == list(result.outputs)

    def test_groups_do_not_see_each_other(self, contract: ContractHarness) -> None:
        a = contract.group("contract-a")
        b = contract.group("contract-b")
        tok = _token()
        result, sink = contract.run(
            "contract-a", f'echo {tok} > private-a.txt; echo {tok} > "$HOME/private-a-home.txt"'
        )
        _assert_ok(result, sink)
        assert (a / "private-a.txt").exists()
        probe = (
            'cat private-a.txt ../contract-a/private-a.txt "$HOME/private-a-home.txt" '
            "2>/dev/null; find /workspace \"$HOME\" -name 'private-a*' 2>/dev/null; true"
        )
        result, sink = contract.run("contract-b", probe)
        _assert_ok(result, sink)
        assert tok not in sink.stdout_text, f"group b read group a's files: {sink.stdout_text!r}"
        assert "private-a" not in sink.stdout_text, f"group b sees: {sink.stdout_text!r}"
        assert not (b / "private-a.txt").exists()

    def test_reset_starts_the_group_from_scratch(self, contract: ContractHarness) -> None:
        workspace = contract.group("contract-a")
        contract.group("contract-b")
        (workspace / "keep.txt").write_text("the workspace is the group's, not the runtime's")
        tok = _token()
        write = f'echo {tok} > "$HOME/contract-state.txt"'
        read = 'cat "$HOME/contract-state.txt" 2>/dev/null || echo no-state'
        for folder in ("contract-a", "contract-b"):
            _assert_ok(*contract.run(folder, write))
        if self.persistent_state:
            result, sink = contract.run("contract-a", read)
            assert tok in sink.stdout_text, "state outside the workspace did not persist"
        removed = contract.runtimes.reset("contract-a")
        assert isinstance(removed, list) and all(isinstance(r, str) for r in removed), removed
        if self.persistent_state:
            assert removed, "reset of a group with state reported nothing removed"
        result, sink = contract.run("contract-a", read)
        _assert_ok(result, sink)
        assert tok not in sink.stdout_text and "no-state" in sink.stdout_text
        assert (workspace / "keep.txt").exists(), "reset deleted the group's workspace"
        if self.persistent_state:
            result, sink = contract.run("contract-b", read)
            assert tok in sink.stdout_text, "reset of one group touched another group's state"

    def test_stats_returns_rows(self, contract: ContractHarness) -> None:
        assert "stats" in contract.registry.get(self.runtime_name).hooks, (
            f"{self.runtime_name} does not implement stats (return [] if it keeps nothing)"
        )
        contract.group("contract-a")
        _assert_ok(*contract.run("contract-a", 'echo x > "$HOME/contract-stats.txt"'))
        rows = contract.runtimes.stats([self.runtime_name])
        assert isinstance(rows, list)
        for row in rows:
            assert isinstance(row, StatsRow), row
            assert row.runtime == self.runtime_name and row.kind.strip(), row
            assert row.apparent_mb >= 0 and row.allocated_mb >= 0, row
            assert row.group is None or isinstance(row.group, str), row
        if self.persistent_state:
            assert any(r.group == "contract-a" for r in rows), f"no row for the group: {rows}"

    def test_secrets_never_reach_logs_or_disk(self, contract: ContractHarness) -> None:
        self._needs_agent()
        contract.group("contract-a")
        secrets = {"ANTHROPIC_API_KEY": f"sk-contract-{_token()}", "OTHER": f"pw-{_token()}"}
        result, sink = contract.ask("contract-a", "hello", secrets=secrets, debug=True)
        _assert_ok(result, sink)
        logs = contract.project.run_logs("contract-a")
        assert logs, "no run log written"
        assert "=== Input ===" in logs[-1].read_text(), "debug run log lacks the input"
        found = _files_containing(contract.project.root, [v.encode() for v in secrets.values()])
        assert not found, f"secret values written to disk in clear: {found}"


def _files_containing(root: Path, needles: Sequence[bytes]) -> list[str]:
    """Files under ``root`` (up to 64 MB each) that contain any of ``needles``."""
    hits = []
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = Path(folder, name)
            try:
                if path.is_symlink() or path.stat().st_size > MAX_SCANNED_FILE:
                    continue
                data = path.read_bytes()
            except OSError:
                continue
            if any(n in data for n in needles):
                hits.append(str(path.relative_to(root)))
    return hits
