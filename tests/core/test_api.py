"""The dispatcher: runtime choice, exclusion, bounds, timeouts, logs."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

from nanoclaw_runtimes_core.api import Runtimes
from nanoclaw_runtimes_core.errors import (
    ConfigError,
    EngineUnavailable,
    RuntimeNotFound,
    UserError,
)
from nanoclaw_runtimes_core.models import ContainerInput
from nanoclaw_runtimes_core.plugins import Registry
from nanoclaw_runtimes_core.testing import RecordingSink

from .conftest import SubprocessRuntime, make_group


def agent_input(folder: str, **extra: object) -> ContainerInput:
    return ContainerInput(
        prompt="hello", group_folder=folder, chat_jid="c@g.us", is_main=folder == "main", **extra
    )  # type: ignore[arg-type]


def interval_command(log: Path, seconds: float) -> list[str]:
    code = (
        "import sys, time\n"
        "log = open(sys.argv[1], 'a'); log.write(f'start {time.time()}\\n'); log.flush()\n"
        f"time.sleep({seconds})\n"
        "log.write(f'end {time.time()}\\n'); log.close()\n"
    )
    return [sys.executable, "-c", code, str(log)]


def peak_overlap(*logs: Path) -> int:
    events = []
    for log in logs:
        for line in log.read_text().splitlines():
            kind, stamp = line.split()
            events.append((float(stamp), 0 if kind == "end" else 1))
    running = peak = 0
    for _, starts in sorted(events):
        running += 1 if starts else -1
        peak = max(peak, running)
    return peak


def test_agent_run_streams_blocks_and_writes_a_redacted_log(runtimes: Runtimes, root: Path) -> None:
    make_group(root, "dev", '{"containerConfig": {"runtime": "subproc"}}')
    sink = RecordingSink()
    result = runtimes.execute(
        "dev",
        input=agent_input("dev", secrets={"API_KEY": "s3cr3t-v4lue"}),
        sink=sink,
        debug=True,
    )
    assert result.status == "success" and len(result.outputs) == 2
    assert sink.outputs == list(result.outputs)
    assert "You said: 'hello'" in (result.outputs[0].result or "")
    logs = list((root / "groups" / "dev" / "logs").glob("container-*.log"))
    assert len(logs) == 1
    text = logs[0].read_text()
    assert "Runtime: subproc" in text and "Exit Code: 0" in text
    assert "s3cr3t-v4lue" not in text and "[REDACTED]" in text


def test_input_for_another_group_is_refused(runtimes: Runtimes, root: Path) -> None:
    make_group(root, "dev", '{"containerConfig": {"runtime": "subproc"}}')
    with pytest.raises(UserError, match="groupFolder is 'other'"):
        runtimes.execute("dev", input=agent_input("other"))


def test_command_mode_passes_exit_status(runtimes: Runtimes, root: Path) -> None:
    make_group(root, "dev", '{"containerConfig": {"runtime": "subproc"}}')
    result = runtimes.execute("dev", command=["sh", "-c", "exit 7"])
    assert result.exit_code == 7 and result.status == "error"


def test_runtime_choice_precedence(root: Path, environ: dict[str, str]) -> None:
    registry = Registry()
    registry.register("container", SubprocessRuntime(available=False), distribution="a")
    registry.register("vibe", SubprocessRuntime(), distribution="b")
    registry.register("tart", SubprocessRuntime(), distribution="c")
    make_group(root, "auto")
    make_group(root, "pinned", '{"containerConfig": {"runtime": "tart"}}')
    rt = Runtimes(root, environ=environ, registry=registry)
    # Auto-detection: container comes first but its engine is off here.
    assert rt.runtime_for("auto") == "vibe"
    (root / ".env").write_text("CONTAINER_RUNTIME=container\n")
    assert rt.runtime_for("auto") == "container"
    rt_env = Runtimes(root, environ={**environ, "CONTAINER_RUNTIME": "tart"}, registry=registry)
    assert rt_env.runtime_for("auto") == "tart"  # environment beats .env
    assert rt.runtime_for("pinned") == "tart"  # group config beats both
    with pytest.raises(EngineUnavailable, match="switched off\nfix: switch it on"):
        rt.execute("auto", command=["true"])


def test_unknown_runtime_names_the_source_lists_installed_and_says_how_to_install(
    runtimes: Runtimes, root: Path
) -> None:
    make_group(root, "dev", '{"containerConfig": {"runtime": "vibe"}}')
    with pytest.raises(RuntimeNotFound) as info:
        runtimes.execute("dev", command=["true"])
    text = str(info.value)
    assert "groups/dev/config.json: containerConfig.runtime: unknown runtime 'vibe'" in text
    assert "installed runtimes: subproc" in text
    assert "pip install nanoclaw-runtime-vibe" in text


def test_every_config_problem_at_once(runtimes: Runtimes, root: Path) -> None:
    make_group(
        root,
        "dev",
        '{"containerConfig": {"runtime": "subproc", "cpus": "4", "flavor": "x", "timeout": -5}}',
    )
    with pytest.raises(ConfigError) as info:
        runtimes.plan("dev")
    problems = "\n".join(info.value.problems)
    assert 'containerConfig.cpus: expected an integer, got "4"' in problems
    assert 'containerConfig.flavor: unknown key; did you mean "flavour"?' in problems
    assert "containerConfig.timeout" in problems
    assert all(p.startswith("groups/dev/config.json: ") for p in info.value.problems)


def test_timeout_precedence(runtimes: Runtimes, root: Path, environ: dict[str, str]) -> None:
    make_group(root, "a", '{"containerConfig": {"runtime": "subproc"}}')
    make_group(root, "b", '{"containerConfig": {"runtime": "subproc", "timeout": 1234}}')
    assert runtimes.plan("a").timeout_ms == 60_000  # the runtime's own default
    assert runtimes.plan("b").timeout_ms == 1234
    assert runtimes.plan("b", timeout_ms=99).timeout_ms == 99
    environ["SUBPROC_TIMEOUT"] = "4321"
    assert runtimes.plan("a").timeout_ms == 4321


def test_same_group_runs_never_overlap_and_groups_run_side_by_side(
    runtimes: Runtimes, root: Path, tmp_path: Path
) -> None:
    for folder in ("one", "two"):
        make_group(root, folder, '{"containerConfig": {"runtime": "subproc"}}')
    logs = {folder: tmp_path / f"{folder}.log" for folder in ("one", "two")}
    threads = [
        threading.Thread(
            target=runtimes.execute,
            args=(folder,),
            kwargs={"command": interval_command(logs[folder], 0.4)},
        )
        for folder in ("one", "two")
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert peak_overlap(logs["one"]) == 1 and peak_overlap(logs["two"]) == 1
    assert len(logs["one"].read_text().splitlines()) == 6
    assert peak_overlap(logs["one"], logs["two"]) == 2


def test_concurrency_bound_across_groups(
    root: Path, environ: dict[str, str], runtime, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    registry = Registry()
    registry.register("subproc", runtime, distribution="tests")
    rt = Runtimes(root, environ={**environ, "MAX_CONCURRENT_CONTAINERS": "2"}, registry=registry)
    folders = [f"g{i}" for i in range(5)]
    for folder in folders:
        make_group(root, folder, '{"containerConfig": {"runtime": "subproc"}}')
    logs = [tmp_path / f"{f}.log" for f in folders]
    threads = [
        threading.Thread(
            target=rt.execute, args=(f,), kwargs={"command": interval_command(log, 0.4)}
        )
        for f, log in zip(folders, logs, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert peak_overlap(*logs) == 2


def test_reset_waits_for_a_running_execution(
    runtimes: Runtimes, root: Path, tmp_path: Path
) -> None:
    group = make_group(root, "dev", '{"containerConfig": {"runtime": "subproc"}}')
    (group / "state").write_text("x")
    log = tmp_path / "run.log"
    worker = threading.Thread(
        target=runtimes.execute, args=("dev",), kwargs={"command": interval_command(log, 1.0)}
    )
    worker.start()
    while not log.exists():
        time.sleep(0.02)
    assert runtimes.reset("dev") == ["state"]
    reset_done = time.time()
    worker.join()
    ended = float(log.read_text().splitlines()[-1].split()[1])
    assert ended <= reset_done


def test_stats_rows_carry_the_runtime_name_and_the_runtime_gets_its_groups(
    root: Path, environ: dict[str, str]
) -> None:
    mine, other = SubprocessRuntime(), SubprocessRuntime()
    registry = Registry()
    registry.register("subproc", mine, distribution="tests")
    registry.register("other", other, distribution="tests")
    make_group(root, "a", '{"containerConfig": {"runtime": "subproc"}}')
    make_group(root, "b", '{"containerConfig": {"runtime": "other"}}')
    make_group(root, "c")  # no runtime named: CONTAINER_RUNTIME decides
    make_group(root, "broken", "{not json")
    rt = Runtimes(root, environ={**environ, "CONTAINER_RUNTIME": "subproc"}, registry=registry)
    rows = rt.stats(["subproc"])
    assert [(r.runtime, r.group, r.kind) for r in rows] == [("subproc", "g", "disk")]
    assert mine.stats_groups == ["a", "c"]


def test_prepare_is_called_before_execute(
    runtimes: Runtimes, root: Path, runtime: SubprocessRuntime
) -> None:
    make_group(root, "dev", '{"containerConfig": {"runtime": "subproc"}}')
    runtimes.execute("dev", command=["true"])
    assert runtime.calls == ["prepare", "execute"]
    assert runtimes.prepare("dev") == "ready"


def test_rejected_mounts_are_reported_not_silently_dropped(
    runtimes: Runtimes, root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    make_group(
        root,
        "dev",
        '{"containerConfig": {"runtime": "subproc", "additionalMounts": '
        f'[{{"hostPath": "{outside}"}}]}}}}',
    )
    sink = RecordingSink()
    runtimes.execute("dev", command=["true"], sink=sink)
    assert sink.problems and str(outside) in sink.problems[0]
    assert runtimes.check_config("dev")["dev"]


def test_an_empty_command_is_refused_before_any_runtime_runs(
    runtimes: Runtimes, root: Path, runtime: SubprocessRuntime
) -> None:
    make_group(root, "dev", '{"containerConfig": {"runtime": "subproc"}}')
    with pytest.raises(UserError, match="command after `--` is empty"):
        runtimes.execute("dev", command=[])
    assert runtime.calls == []
