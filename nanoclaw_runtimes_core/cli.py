"""The ``nanoclaw-runtimes`` command.

Exit statuses: in ``run``, the sandbox's own status passes through (agent mode and
command mode alike); otherwise 0 success, 1 the run failed (engine or runtime
error), 2 usage error, 3 configuration error, 4 out of disk space, 124 timeout
with no output, 130 interrupted, 143 stopped (SIGTERM, ``stop``).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from .errors import ExitStatus, RuntimeFailure, UserError
from .models import OutputSink

if TYPE_CHECKING:
    import argparse

    from .dispatch import Runtimes
    from .models import ExecutionResult

PROG = "nanoclaw-runtimes"


def _add_run(sub: Any) -> None:
    run = sub.add_parser(
        "run",
        help="run a group's agent (ContainerInput on stdin) or a command",
        usage="%(prog)s [-h] [--runtime NAME] [--timeout MS] [--name NAME] GROUP [-- COMMAND...]",
        description="Without COMMAND: read a ContainerInput JSON object on stdin, run the group's "
        "agent and pass its stdout and stderr through as they come. With -- COMMAND...: run that "
        "command in the group's sandbox. Either way the sandbox's exit status is passed through.",
    )
    run.add_argument("group")
    run.add_argument("--runtime", metavar="NAME", help="use this runtime instead of the group's")
    run.add_argument(
        "--timeout", metavar="MS", type=_milliseconds, help="idle timeout in milliseconds"
    )
    run.add_argument(
        "--name", metavar="NAME", help="a name for `ps` and `stop` (default: generated)"
    )


def _add_prepare(sub: Any) -> None:
    prep = sub.add_parser("prepare", help="prepare a group, or a runtime's base with --base")
    prep.add_argument("group", nargs="?")
    prep.add_argument("--base", metavar="RUNTIME", help="build the runtime's base image or VM")
    prep.add_argument(
        "--minimal", action="store_true", help="with --base: a minimal base (where supported)"
    )
    prep.add_argument("--force", action="store_true", help="rebuild even if it exists")
    prep.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a runtime's build option (repeatable; `plugins` lists them)",
    )


def _add_reset(sub: Any) -> None:
    reset = sub.add_parser("reset", help="throw away the state a group's runtime keeps")
    reset.add_argument("group")
    reset.add_argument("--yes", action="store_true", help="do not ask for confirmation")


def _add_stats(sub: Any) -> None:
    stats = sub.add_parser("stats", help="what each group's runtime keeps, and what it costs")
    stats.add_argument("--json", action="store_true")


def _add_warm(sub: Any) -> None:
    warm = sub.add_parser("warm", help="sandboxes kept booted between runs (warm VMs); --stop them")
    warm.add_argument("group", nargs="?", help="with --stop: only this group's")
    warm.add_argument("--stop", action="store_true", help="power them off (their state stays)")
    warm.add_argument("--json", action="store_true")


def _add_ps(sub: Any) -> None:
    ps = sub.add_parser("ps", help="runs in progress on this host")
    ps.add_argument("--json", action="store_true")


def _add_stop(sub: Any) -> None:
    stop = sub.add_parser("stop", help="stop a run in progress (by the name `ps` shows)")
    stop.add_argument("name")
    stop.add_argument(
        "-t", "--time", type=float, default=15.0, metavar="S", help="grace in seconds"
    )


def _add_resident(sub: Any) -> None:
    resident = sub.add_parser(
        "resident", help="this user's resident helpers (NANOCLAW_RESIDENT); --stop them"
    )
    resident.add_argument("--stop", action="store_true", help="stop them (runs in progress end)")
    resident.add_argument("--json", action="store_true")


def _add_plugins(sub: Any) -> None:
    plugins = sub.add_parser("plugins", help="installed runtimes, their engines and settings")
    plugins.add_argument("--json", action="store_true")


def _add_config(sub: Any) -> None:
    cfg = sub.add_parser("config", help="configuration commands")
    cfg_sub = cfg.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    check = cfg_sub.add_parser("check", help="validate group configs (all, or one)")
    check.add_argument("group", nargs="?")
    trust = cfg_sub.add_parser("trust", help="accept a group's config.json changed during a run")
    trust.add_argument("group")
    cfg_sub.add_parser("schema", help="print the JSON Schema of config.json for installed runtimes")


def _add_doctor(sub: Any) -> None:
    doctor = sub.add_parser("doctor", help="engines, limits, base images, settings, groups")
    doctor.add_argument("--json", action="store_true")


SUBCOMMANDS = {
    "run": _add_run,
    "prepare": _add_prepare,
    "reset": _add_reset,
    "stats": _add_stats,
    "warm": _add_warm,
    "ps": _add_ps,
    "stop": _add_stop,
    "resident": _add_resident,
    "plugins": _add_plugins,
    "config": _add_config,
    "doctor": _add_doctor,
}


def _parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser; with ``only``, just that subcommand (every run builds one
    parser, and building all of them costs more than the run's own planning)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run NanoClaw agents in per-group sandboxes chosen by runtime plugins.",
        epilog="Exit statuses: run passes the sandbox's status through; otherwise 0 ok, 1 run "
        "failed, 2 usage, 3 config, 4 no disk space, 124 timeout, 130 interrupted.",
    )
    parser.add_argument(
        "--root",
        metavar="DIR",
        help="NanoClaw project root (default: $NANOCLAW_ROOT or the current folder)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, add in SUBCOMMANDS.items():
        if only is None or name == only:
            add(sub)
    return parser


def _subcommand(words: list[str]) -> str | None:
    """The subcommand named on the command line (skipping ``--root DIR``), if it is known."""
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--root":
            i += 2
            continue
        if word.startswith("-"):
            return None  # --help, --root=DIR or a mistake: the full parser says what to do
        return word if word in SUBCOMMANDS else None
    return None


def _valid_milliseconds(text: str) -> bool:
    return text.isascii() and text.isdigit() and 0 < int(text) <= 2**31 - 1


def _milliseconds(text: str) -> int:
    if not _valid_milliseconds(text):
        import argparse

        raise argparse.ArgumentTypeError(
            f"expected milliseconds from 1 to {2**31 - 1}, got {text!r}"
        )
    return int(text)


_RUN_OPTIONS = {"--runtime": "runtime", "--timeout": "timeout", "--name": "name"}


def _plain_run(words: list[str]) -> Any | None:
    """The parsed arguments of a plain ``[--root DIR] run [--runtime NAME] [--timeout MS]
    [--name NAME] GROUP`` (options in any order, each once, every value a word of its own
    not starting with ``-``), as argparse would give them; None for anything else, which
    argparse parses (and explains). Every chat message is a ``run``: argparse and what it
    imports (gettext, locale, shutil) cost more than the rest of the command line."""
    found: dict[str, Any] = {"root": None, "runtime": None, "timeout": None, "name": None}
    rest = list(words)
    if rest[:1] == ["--root"]:
        if len(rest) < 2 or not rest[1] or rest[1].startswith("-"):
            return None
        found["root"] = rest[1]
        rest = rest[2:]
    if rest[:1] != ["run"]:
        return None
    group = None
    seen: set[str] = set()
    i = 1
    while i < len(rest):
        word = rest[i]
        if word in _RUN_OPTIONS:
            if word in seen or i + 1 == len(rest):
                return None
            value = rest[i + 1]
            if not value or value.startswith("-"):
                return None
            if word == "--timeout":
                if not _valid_milliseconds(value):
                    return None
                found["timeout"] = int(value)
            else:
                found[_RUN_OPTIONS[word]] = value
            seen.add(word)
            i += 2
            continue
        if group is not None or not word or word.startswith("-"):
            return None
        group = word
        i += 1
    if group is None:
        return None
    return SimpleNamespace(command="run", group=group, **found)


# --------------------------------------------------------------------------- output


def _err(message: str) -> None:
    sys.stderr.write(f"{PROG}: {message}\n")
    sys.stderr.flush()


class _CliSink(OutputSink):
    """Passes the sandbox's stdout and stderr through byte for byte; problems as warnings."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def on_stdout(self, data: bytes) -> None:
        with self._lock:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()

    def on_stderr(self, data: bytes) -> None:
        with self._lock:
            sys.stderr.buffer.write(data)
            sys.stderr.buffer.flush()

    def on_problem(self, message: str) -> None:
        with self._lock:
            _err(f"warning: {message}")


def _progress() -> Any:
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


def _run_status(result: ExecutionResult, *, agent_mode: bool) -> int:
    """The exit status of ``run``: the sandbox's own, or ours when the run did not finish."""
    if result.error is not None:
        _err(result.error)
        return ExitStatus.RUN_FAILED
    for problem in result.block_problems:
        if "larger than" in problem or "ended inside a block" in problem:
            _err(f"output lost: {problem}")
    if result.timed_out:
        if agent_mode and result.output_count:
            _err(f"idle for {result.timeout_ms} ms after output; sandbox stopped (success)")
            return ExitStatus.OK
        what = "without an output block" if agent_mode else "with no output"
        _err(f"Container timed out after {result.timeout_ms}ms {what}")
        return ExitStatus.TIMEOUT
    return result.exit_code if result.exit_code is not None else ExitStatus.RUN_FAILED


def cmd_run(rt: Runtimes, args: argparse.Namespace) -> int:
    sink = _CliSink()
    common: dict[str, Any] = dict(
        runtime=args.runtime, timeout_ms=args.timeout, sink=sink, run_name=args.name
    )
    if args.sandbox_command:
        result = rt.execute(args.group, command=tuple(args.sandbox_command), **common)
        return _run_status(result, agent_mode=False)
    from .protocol import MAX_INPUT, InputError, decode_input

    if sys.stdin.isatty():
        raise UserError(
            "run GROUP reads a ContainerInput JSON object on stdin; "
            "pipe one in, or give a command after --"
        )
    try:
        inp = decode_input(sys.stdin.buffer.read(MAX_INPUT + 1))
    except InputError as exc:
        raise UserError(str(exc)) from None
    result = rt.execute(args.group, input=inp, **common)
    return _run_status(result, agent_mode=True)


def _prepare_options(rt: Runtimes, runtime: str, args: argparse.Namespace) -> dict[str, Any]:
    from .settings.fields import fields_of
    from .settings.values import from_text

    items = list(args.option) + (["minimal=true"] if args.minimal else [])
    if not items:
        return {}
    cls = getattr(rt.registry.get(runtime).settings_class, "prepare_options", None)
    declared = {f.name: f for f in fields_of(cls)} if cls is not None else {}
    options: dict[str, Any] = {}
    problems = []
    for item in items:
        key, sep, value = item.partition("=")
        flag = "--minimal" if item == "minimal=true" and args.minimal else f"--option {item}"
        if not sep or not key:
            problems.append(f"{flag}: expected KEY=VALUE")
            continue
        f = declared.get(key)
        if f is None:
            known = ", ".join(sorted(declared)) or "none"
            problems.append(
                f"{flag}: runtime {runtime!r} has no build option {key!r} (its options: {known})"
            )
            continue
        try:
            parsed = from_text(value, f.type, words=f.info.words)
            for check in f.info.validators:
                check(parsed)
        except ValueError as exc:
            problems.append(f"{flag}: {exc}")
            continue
        options[key] = parsed
    if problems:
        from .errors import ConfigError

        raise ConfigError(problems)
    return options


def cmd_prepare(rt: Runtimes, args: argparse.Namespace) -> int:
    if (args.group is None) == (args.base is None):
        raise UserError("prepare: give a GROUP or --base RUNTIME (one of them)")
    runtime = args.base or rt.plan(args.group).runtime
    options = _prepare_options(rt, runtime, args)
    report, bar = _progress()
    kwargs: dict[str, Any] = dict(
        base_runtime=args.base, progress=report, force=args.force, options=options
    )
    if bar is not None:
        with bar:
            summary = rt.prepare(args.group, **kwargs)
    else:
        summary = rt.prepare(args.group, **kwargs)
    print(summary or "nothing to do")
    return ExitStatus.OK


def cmd_reset(rt: Runtimes, args: argparse.Namespace) -> int:
    runtime = rt.plan(args.group).runtime
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
    print("\n".join(removed) or "nothing to remove")
    return ExitStatus.OK


def cmd_stats(rt: Runtimes, args: argparse.Namespace) -> int:
    rows = rt.stats()
    if args.json:
        print(json.dumps([_row_json(r) for r in rows], indent=2))
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


def _row_json(r: Any) -> dict[str, Any]:
    return {
        "runtime": r.runtime,
        "group": r.group,
        "kind": r.kind,
        "path": r.path,
        "apparentMB": round(r.apparent_mb, 1),
        "allocatedMB": round(r.allocated_mb, 1),
        "modified": r.modified.isoformat() if r.modified else None,
        "note": r.note,
        **dict(r.details),
    }


WARM_KINDS = ("warm-vm", "spare-vm")


def cmd_warm(rt: Runtimes, args: argparse.Namespace) -> int:
    rows = [r for r in rt.stats() if r.kind in WARM_KINDS]
    if args.stop:
        groups = [args.group] if args.group else sorted({r.group for r in rows if r.group})
        stopped = []
        for group in groups:
            stopped += rt.reset(group, scope="warm")
        print("\n".join(stopped) or "nothing was kept warm")
        return ExitStatus.OK
    if args.json:
        print(json.dumps([_row_json(r) for r in rows], indent=2))
    elif not rows:
        print("nothing is kept warm")
    for r in rows if not args.json else ():
        print(f"{r.runtime}  {r.group or '-'}  {r.kind}  {r.note}")
    return ExitStatus.OK


def cmd_ps(args: argparse.Namespace) -> int:
    from . import runs

    found = runs.live_runs()
    if args.json:
        print(
            json.dumps(
                [{k: str(v) if k == "folder" else v for k, v in r.__dict__.items()} for r in found],
                indent=2,
            )
        )
        return ExitStatus.OK
    for r in found:
        print(f"{r.name}  group {r.group}  runtime {r.runtime}  pid {r.pid}  root {r.root}")
    if not found:
        print("no runs in progress")
    return ExitStatus.OK


def cmd_stop(args: argparse.Namespace) -> int:
    from . import runs

    record = runs.find(args.name)
    if record is None:
        raise UserError(f"no run named {args.name!r} is in progress (see `{PROG} ps`)")
    if not runs.request_stop(record, grace=args.time, wait_s=args.time + 15):
        _err(f"{args.name} did not stop within {args.time + 15:.0f} s; killing it")
        os.kill(record.pid, signal.SIGKILL)
    return ExitStatus.OK


def cmd_resident(args: argparse.Namespace) -> int:
    import time

    from .resident import control

    found = control.stop() if args.stop else control.helpers()
    if args.json:
        print(json.dumps([{**h.__dict__, "socket": str(h.socket)} for h in found], indent=2))
        return ExitStatus.OK
    verb = "stopped" if args.stop else "serving"
    for h in found:
        memory = f", {h.rss_mb:.0f} MB" if h.rss_mb is not None else ""
        age = time.time() - h.started
        print(f"pid {h.pid}  {verb} {h.socket}  (up {age:.0f} s{memory})")
    if not found:
        print("no resident helper is running")
    return ExitStatus.OK


def _plugin_rows(rt: Runtimes) -> list[dict[str, Any]]:
    from .settings.fields import fields_of

    rows = []
    for info in rt.registry.infos():
        row: dict[str, Any] = {
            "name": info.name,
            "distribution": info.distribution,
            "version": info.version,
            "module": info.module,
            "hooks": list(info.hooks),
            "error": info.error,
        }
        if info.error is None:
            try:
                status = rt.engine_status(info.name)
            except UserError as exc:
                status, row["error"] = None, str(exc)
            row.update(
                engine=status.engine if status else None,
                available=status.available if status else None,
                engineVersion=status.version if status else None,
                detail=status.detail if status else "",
                fix=status.fix if status else "",
                isolation=sorted(status.isolation) if status else [],
            )
            row["settings"] = [
                {"name": f.name, "env": f.info.env, "key": f.info.key, "help": f.info.help}
                for f in (fields_of(info.settings_class) if info.settings_class else ())
            ]
        rows.append(row)
    return rows


def cmd_plugins(rt: Runtimes, args: argparse.Namespace) -> int:
    rows = _plugin_rows(rt)
    if args.json:
        print(json.dumps(rows, indent=2))
        return ExitStatus.OK
    if not rows:
        print("no runtimes installed; try: pip install nanoclaw-runtime-container")
    for row in rows:
        if row["error"]:
            print(f"{row['name']}: {row['distribution']} {row['version']} — BROKEN: {row['error']}")
            continue
        state = "available" if row["available"] else "not available"
        detail = f": {row['detail']}" if row["detail"] else ""
        print(
            f"{row['name']}: {row['distribution']} {row['version']} — "
            f"engine {row['engine']} {state}{detail}"
        )
        if row["isolation"]:
            print(f"    isolation: {', '.join(row['isolation'])}")
        print(f"    hooks: {', '.join(row['hooks'])}")
        for s in row["settings"]:
            names = " / ".join(
                n for n in (s["env"], f"containerConfig.{s['key']}" if s["key"] else None) if n
            )
            print(f"    {names}: {s['help']}")
    return ExitStatus.OK


def cmd_config(rt: Runtimes, args: argparse.Namespace) -> int:
    if args.config_command == "trust":
        was = rt.trust_config(args.group)
        print(
            f"groups/{args.group}/config.json is trusted"
            + (" (it had been refused)" if was else "")
        )
        return ExitStatus.OK
    if args.config_command == "schema":
        from .settings.schema import config_schema

        classes = {}
        for info in rt.registry.infos():
            if info.error is None:
                classes[info.name] = info.settings_class
        print(json.dumps(config_schema(classes), indent=2))
        return ExitStatus.OK
    report = rt.check_config(args.group)
    bad = 0
    for group, problems in report.items():
        if problems:
            bad += 1
            for problem in problems:
                print(problem if problem.startswith(("groups/", ".env")) else f"{group}: {problem}")
        else:
            print(f"{group}: ok (runtime {rt.plan(group).runtime})")
    if not report:
        print("no groups found under groups/")
    return ExitStatus.CONFIG if bad else ExitStatus.OK


def cmd_doctor(rt: Runtimes, args: argparse.Namespace) -> int:
    from .doctor import report

    found = report(rt)
    if args.json:
        print(json.dumps(found, indent=2, default=str))
    else:
        for line in found["lines"]:
            print(line)
    return ExitStatus.CONFIG if found["failures"] else ExitStatus.OK


COMMANDS = {
    "run": cmd_run,
    "prepare": cmd_prepare,
    "reset": cmd_reset,
    "stats": cmd_stats,
    "warm": cmd_warm,
    "plugins": cmd_plugins,
    "config": cmd_config,
    "doctor": cmd_doctor,
}
NO_PROJECT_COMMANDS = {"ps": cmd_ps, "stop": cmd_stop, "resident": cmd_resident}


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
    args = _plain_run(words) or _parser(_subcommand(words)).parse_args(words)
    if command and args.command != "run":
        _err(f"{args.command}: unexpected arguments after --: {' '.join(command)}")
        return ExitStatus.USAGE
    args.sandbox_command = command
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        if args.command in NO_PROJECT_COMMANDS:
            return NO_PROJECT_COMMANDS[args.command](args)
        from .dispatch import Runtimes

        root = args.root or os.environ.get("NANOCLAW_ROOT") or "."
        return COMMANDS[args.command](Runtimes(root), args)
    except UserError as exc:
        for line in str(exc).splitlines() or [type(exc).__name__]:
            _err(line)
        return exc.exit_status
    except RuntimeFailure as exc:
        _err(str(exc))
        if _debug():
            import traceback

            traceback.print_exception(exc.cause)
        else:
            _err("set NANOCLAW_DEBUG=1 for the traceback; report it to the runtime's authors")
        return exc.exit_status
    except KeyboardInterrupt:
        _err("interrupted")
        return ExitStatus.INTERRUPTED
    except OSError as exc:
        from .errors import NoSpace

        if exc.errno in (28, 122):  # ENOSPC, EDQUOT
            _err(f"no space left on the device: {exc}")
            return NoSpace.exit_status
        _err(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
        return ExitStatus.RUN_FAILED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _debug() -> bool:
    return os.environ.get("NANOCLAW_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
