"""The ``nanoclaw-runtimes`` command.

Exit statuses: 0 success; 1 the run failed (or a runtime raised); 2 usage
error; 3 configuration error; 124 timeout with no output; 130 interrupted;
``run GROUP -- COMMAND`` passes the command's own status through.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .errors import ExitStatus, RuntimeFailure, UserError
from .models import ContainerOutput, OutputSink

if TYPE_CHECKING:
    from .api import Runtimes

PROG = "nanoclaw-runtimes"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run NanoClaw agents in per-group sandboxes chosen by runtime plugins.",
        epilog="Exit statuses: 0 ok, 1 run failed, 2 usage, 3 config, 124 timeout, "
        "130 interrupted; `run -- COMMAND` passes the command's status through.",
    )
    parser.add_argument(
        "--root",
        metavar="DIR",
        help="NanoClaw project root (default: $NANOCLAW_ROOT or the current folder)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser(
        "run",
        help="run a group's agent (ContainerInput on stdin) or a command",
        usage="%(prog)s [-h] [--runtime NAME] [--timeout MS] GROUP [-- COMMAND...]",
        description="Without COMMAND: read a ContainerInput JSON object on stdin, run the "
        "group's agent and print its output blocks as they arrive. With -- COMMAND...: run "
        "that command in the group's sandbox and pass its exit status through.",
    )
    run.add_argument("group")
    run.add_argument("--runtime", metavar="NAME", help="use this runtime instead of the group's")
    run.add_argument(
        "--timeout",
        metavar="MS",
        type=_positive_int,
        help="idle timeout in milliseconds (each output block restarts it)",
    )

    prep = sub.add_parser("prepare", help="prepare a group, or a runtime's base with --base")
    prep.add_argument("group", nargs="?")
    prep.add_argument("--base", metavar="RUNTIME", help="build the runtime's base image or VM")
    prep.add_argument(
        "--minimal",
        action="store_true",
        help="with --base: a minimal base that builds in seconds (where supported)",
    )
    prep.add_argument("--force", action="store_true", help="rebuild even if it exists")
    prep.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a runtime-specific build option (repeatable; see the runtime's docs)",
    )

    reset = sub.add_parser("reset", help="throw away the state a group's runtime keeps")
    reset.add_argument("group")
    reset.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    stats = sub.add_parser("stats", help="disk cost per group and runtime")
    stats.add_argument("--json", action="store_true")

    plugins = sub.add_parser("plugins", help="list installed runtimes")
    plugins.add_argument("--json", action="store_true")

    cfg = sub.add_parser("config", help="configuration commands")
    cfg_sub = cfg.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    check = cfg_sub.add_parser("check", help="validate group configs (all, or one)")
    check.add_argument("group", nargs="?")

    sub.add_parser("doctor", help="check engines, base images, config and data folder")
    return parser


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(text)


# --------------------------------------------------------------------------- output


def _err(message: str) -> None:
    sys.stderr.write(f"{PROG}: {message}\n")
    sys.stderr.flush()


class _CliSink(OutputSink):
    """Prints blocks (agent mode) or raw output (command mode) as it arrives."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def on_output(self, output: ContainerOutput) -> None:
        from .protocol import encode_output

        with self._lock:
            sys.stdout.write(encode_output(output))
            sys.stdout.flush()

    def on_stdout(self, data: bytes) -> None:
        with self._lock:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()

    def on_stderr(self, data: bytes) -> None:
        sys.stderr.buffer.write(data)
        sys.stderr.buffer.flush()

    def on_problem(self, message: str) -> None:
        _err(f"warning: {message}")


def _progress():  # type: ignore[no-untyped-def]
    """A progress reporter: a rich bar on a terminal, plain lines otherwise."""
    if not sys.stderr.isatty():

        def plain(message: str, fraction: float | None) -> None:
            pct = f" ({fraction:.0%})" if fraction is not None else ""
            _err(f"{message}{pct}")

        return plain, None
    from rich.progress import Progress

    bar = Progress(transient=False)
    task = bar.add_task("preparing", total=1.0)

    def fancy(message: str, fraction: float | None) -> None:
        bar.update(task, description=message, completed=fraction if fraction is not None else None)

    return fancy, bar


# --------------------------------------------------------------------------- commands


def cmd_run(rt: Runtimes, args: argparse.Namespace) -> int:
    argv = args.sandbox_command
    sink = _CliSink()
    if argv:
        result = rt.execute(
            args.group,
            command=tuple(argv),
            runtime=args.runtime,
            timeout_ms=args.timeout,
            sink=sink,
        )
        if result.timed_out:
            _err(f"timed out after {result.timeout_ms} ms without output")
            return ExitStatus.TIMEOUT
        if result.error:
            _err(result.error)
            return ExitStatus.RUN_FAILED
        return result.exit_code if result.exit_code is not None else ExitStatus.RUN_FAILED
    from .protocol import InputError, decode_input

    if sys.stdin.isatty():
        raise UserError(
            "run GROUP reads a ContainerInput JSON object on stdin; pipe one in, "
            "or give a command after --"
        )
    try:
        inp = decode_input(sys.stdin.buffer.read())
    except InputError as exc:
        raise UserError(str(exc)) from None
    result = rt.execute(
        args.group, input=inp, runtime=args.runtime, timeout_ms=args.timeout, sink=sink
    )
    if result.status == "success":
        if result.timed_out:
            _err(f"idle for {result.timeout_ms} ms after output; sandbox stopped (success)")
        return ExitStatus.OK
    _err(result.error_message() or "run failed")
    return ExitStatus.TIMEOUT if result.timed_out else ExitStatus.RUN_FAILED


def cmd_prepare(rt: Runtimes, args: argparse.Namespace) -> int:
    if (args.group is None) == (args.base is None):
        raise UserError("prepare: give a GROUP or --base RUNTIME (one of them)")
    report, bar = _progress()
    options: dict[str, object] = {"minimal": args.minimal}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--option {item!r}: expected KEY=VALUE")
        options[key] = value
    if bar is not None:
        with bar:
            summary = rt.prepare(
                args.group,
                base_runtime=args.base,
                progress=report,
                force=args.force,
                options=options,
            )
    else:
        summary = rt.prepare(
            args.group, base_runtime=args.base, progress=report, force=args.force, options=options
        )
    print(summary or "nothing to do")
    return ExitStatus.OK


def cmd_reset(rt: Runtimes, args: argparse.Namespace) -> int:
    runtime = rt.runtime_for(args.group)
    if not args.yes:
        if not sys.stdin.isatty():
            raise UserError(f"reset {args.group}: pass --yes to confirm (stdin is not a terminal)")
        answer = input(
            f"Throw away everything runtime {runtime!r} keeps for group {args.group!r}? [y/N] "
        )
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing changed")
            return ExitStatus.OK
    removed = rt.reset(args.group)
    print("\n".join(f"removed {item}" for item in removed) or "nothing to remove")
    return ExitStatus.OK


def cmd_stats(rt: Runtimes, args: argparse.Namespace) -> int:
    rows = rt.stats()
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "runtime": r.runtime,
                        "group": r.group,
                        "kind": r.kind,
                        "path": r.path,
                        "apparentMB": round(r.apparent_mb, 1),
                        "allocatedMB": round(r.allocated_mb, 1),
                        "modified": r.modified.isoformat() if r.modified else None,
                        "note": r.note,
                    }
                    for r in rows
                ],
                indent=2,
            )
        )
        return ExitStatus.OK
    from rich.console import Console
    from rich.table import Table

    table = Table("runtime", "group", "kind", "apparent MB", "allocated MB", "modified", "note")
    for r in rows:
        table.add_row(
            r.runtime,
            r.group or "-",
            r.kind,
            f"{r.apparent_mb:,.1f}",
            f"{r.allocated_mb:,.1f}",
            r.modified.strftime("%Y-%m-%d %H:%M") if r.modified else "-",
            r.note,
        )
    Console().print(table if rows else "no runtime keeps anything yet")
    return ExitStatus.OK


def _plugin_rows(rt: Runtimes) -> list[dict[str, Any]]:
    rows = []
    for info in rt.registry.infos():
        try:
            status = rt.engine_status(info.name)
        except UserError as exc:
            status, problem = None, str(exc)
        else:
            problem = ""
        rows.append(
            {
                "name": info.name,
                "distribution": info.distribution,
                "version": info.version,
                "module": info.module,
                "hooks": list(info.hooks),
                "engine": status.engine if status else None,
                "available": status.available if status else None,
                "engineVersion": status.version if status else None,
                "detail": (status.detail if status else problem),
            }
        )
    return rows


def cmd_plugins(rt: Runtimes, args: argparse.Namespace) -> int:
    rows = _plugin_rows(rt)
    if args.json:
        print(json.dumps(rows, indent=2))
        return ExitStatus.OK
    if not rows:
        print("no runtimes installed; try: pip install nanoclaw-runtime-container")
    for row in rows:
        state = "available" if row["available"] else "not available"
        print(
            f"{row['name']}: {row['distribution']} {row['version']} — engine "
            f"{row['engine']} {state}{': ' + row['detail'] if row['detail'] else ''}"
        )
        print(f"    hooks: {', '.join(row['hooks'])}")
    return ExitStatus.OK


def cmd_config(rt: Runtimes, args: argparse.Namespace) -> int:
    report = rt.check_config(args.group)
    bad = 0
    for group, problems in report.items():
        if problems:
            bad += 1
            for problem in problems:
                print(problem)
        else:
            print(f"{group}: ok (runtime {rt.runtime_for(group)})")
    if not report:
        print("no groups found under groups/")
    return ExitStatus.CONFIG if bad else ExitStatus.OK


def cmd_doctor(rt: Runtimes, args: argparse.Namespace) -> int:
    problems = 0
    print(f"project root: {rt.project.root}")
    data = rt.project.data_dir
    try:
        data.mkdir(parents=True, exist_ok=True)
        probe = data / ".doctor-probe"
        probe.write_text("ok")
        probe.unlink()
        print(f"ok   data folder {data} is writable")
    except OSError as exc:
        problems += 1
        print(
            f"FAIL data folder {data} is not writable: {exc}\n     fix: check its owner and "
            "permissions, or pass --root"
        )
    for row in _plugin_rows(rt):
        if row["available"] is False:
            # An engine missing here is a fact, not a failure, unless a group needs it.
            print(f"--   {row['name']}: engine {row['engine']} not available: {row['detail']}")
        else:
            version = f" {row['engineVersion']}" if row["engineVersion"] else ""
            print(f"ok   {row['name']}: engine {row['engine']}{version} {row['detail']}")
    for row in rt.stats():
        if row.kind == "base":
            print(
                f"ok   {row.runtime} base {row.path}: {row.apparent_mb:,.0f} MB apparent, "
                f"{row.allocated_mb:,.0f} MB allocated"
            )
    for group, found in rt.check_config().items():
        if found:
            problems += 1
            print(f"FAIL group {group}:")
            for problem in found:
                print(f"     {problem}")
        else:
            runtime = rt.runtime_for(group)
            status = rt.engine_status(runtime)
            if status is not None and not status.available:
                problems += 1
                print(
                    f"FAIL group {group} runs on {runtime}, whose engine is not available: "
                    f"{status.detail}" + (f"\n     fix: {status.fix}" if status.fix else "")
                )
            else:
                print(f"ok   group {group}: runtime {runtime}")
    return ExitStatus.CONFIG if problems else ExitStatus.OK


COMMANDS = {
    "run": cmd_run,
    "prepare": cmd_prepare,
    "reset": cmd_reset,
    "stats": cmd_stats,
    "plugins": cmd_plugins,
    "config": cmd_config,
    "doctor": cmd_doctor,
}


def _terminate(signum: int, frame: Any) -> None:
    # Turn SIGTERM into an exception so every cleanup path (finally blocks) runs.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    # Everything after the first "--" is the sandbox's command, never our options.
    command: list[str] = []
    if "--" in words:
        at = words.index("--")
        words, command = words[:at], words[at + 1 :]
    args = _parser().parse_args(words)
    if command and args.command != "run":
        _err(f"{args.command}: unexpected arguments after --: {' '.join(command)}")
        return ExitStatus.USAGE
    args.sandbox_command = command
    from .api import Runtimes

    root = args.root or os.environ.get("NANOCLAW_ROOT") or "."
    if not os.path.isdir(root):
        _err(f"--root: {root} is not a folder")
        return ExitStatus.USAGE
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return COMMANDS[args.command](Runtimes(root), args)
    except UserError as exc:
        lines = str(exc).splitlines() or [type(exc).__name__]
        for line in lines:
            _err(line)
        return exc.exit_status
    except RuntimeFailure as exc:
        _err(str(exc))
        if os.environ.get("NANOCLAW_DEBUG"):
            import traceback

            traceback.print_exception(exc.cause)
        else:
            _err("set NANOCLAW_DEBUG=1 for the traceback; report it to the runtime's authors")
        return exc.exit_status
    except KeyboardInterrupt:
        _err("interrupted")
        return ExitStatus.INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
