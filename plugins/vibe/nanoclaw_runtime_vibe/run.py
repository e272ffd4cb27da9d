"""One execution in the guest: run folder, script, boot, and reading the result back."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from nanoclaw_runtimes_core.models import ExecuteRequest, ExecutionResult, Mount, OutputSink
from nanoclaw_runtimes_core.process import ProcessResult
from nanoclaw_runtimes_core.protocol import MarkerDecoder, strip_control

from .engines import (
    CONSOLE_BEGIN,
    CONSOLE_END,
    GUEST_RUN_DIR,
    INPUT_NAME,
    STATUS_MARKER,
    BootSpec,
    Engine,
)
from .rundir import run_folder, write_private
from .script import SCRIPT_NAME, agent_words, render, write_command_files
from .vibe_engine import failure_message

NO_STATUS = "the guest stopped before the script reported its exit status"


class ConsoleGate(OutputSink):
    """Command mode: pass console text on only while the command runs (not the echo, the boot
    noise or the power-off messages), as text without control codes."""

    def __init__(self, inner: OutputSink) -> None:
        self._inner = inner
        self._state = "before"

    def on_output(self, output):  # type: ignore[no-untyped-def]
        self._inner.on_output(output)

    def on_stdout(self, data: bytes) -> None:
        if self._state == "after":
            return
        text = strip_control(data.decode("utf-8", errors="replace")).strip()
        if self._state == "before":
            if text == CONSOLE_BEGIN:
                self._state = "open"
            return
        if text.endswith(CONSOLE_END):
            self._state = "after"
            # the command's last line may lack its newline: the marker then ends that line
            end = data.rfind(CONSOLE_END.encode())
            data = data[:end] if end > 0 else b""
        if data:  # a console has no clean bytes: drop its control codes and carriage returns
            self._inner.on_stdout(strip_control(data.decode("utf-8", errors="replace")).encode())

    def on_stderr(self, data: bytes) -> None:
        self._inner.on_stderr(data)

    def on_problem(self, message: str) -> None:
        self._inner.on_problem(message)


def interpret(result: ProcessResult, engine: str) -> ExecutionResult:
    """The run's result: the script's own status, or what went wrong with the VM."""
    if result.timed_out:
        return result.to_result()
    if result.exit_code != 0:
        return result.to_result(error=failure_message(engine, result.exit_code, result.stderr_tail))
    if result.reported_status is None:
        tail = strip_control(result.text[-600:].decode("utf-8", errors="replace")).strip()
        return result.to_result(
            exit_code=None, error=NO_STATUS + (f"; last console output: {tail}" if tail else "")
        )
    return result.to_result(exit_code=result.reported_status)


def run_in_guest(
    engine: Engine,
    request: ExecuteRequest,
    *,
    disk: Path,
    base: Path,
    raw_stdout: Callable[[bytes], None] | None = None,
) -> ExecutionResult:
    """Write the run folder, boot ``disk`` with ``engine``, and interpret what came back.

    The run folder (input with its secrets, script) is removed on every way out.
    """
    settings = request.settings
    command_mode = request.command is not None
    with run_folder() as run:
        if command_mode:
            assert request.command is not None
            write_command_files(run, request.command)
            text = render(use_command_files=True)
        else:
            write_private(run / INPUT_NAME, request.input_json())
            text = render(agent=agent_words(settings.agent_command))
        script = run / SCRIPT_NAME
        write_private(script, text.encode(), mode=0o700)
        mounts = (
            *request.mounts,
            Mount(host_path=run, container_path=GUEST_RUN_DIR, readonly=True),
        )
        spec = BootSpec(
            disk=disk,
            base=base,
            mounts=mounts,
            cpus=settings.cpus,
            ram_mb=settings.ram,
            script=script,
            run_dir=run,
        )
        sink = ConsoleGate(request.sink) if command_mode else request.sink
        result = engine.boot(
            spec,
            settings=settings,
            sink=sink,
            timeout_ms=request.timeout_ms,
            decoder=MarkerDecoder(status_marker=STATUS_MARKER),
            raw_stdout=raw_stdout,
            passthrough=command_mode,
        )
    return interpret(result, engine.name)
