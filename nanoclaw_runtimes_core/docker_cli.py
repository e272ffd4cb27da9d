"""The ``nanoclaw-runtimes-docker`` command: the docker (and Apple ``container``) command lines
NanoClaw v1 issues, run through nanoclaw-runtimes.

Install it as ``docker`` (or ``container``) on NanoClaw's PATH, or point
NanoClaw's ``CONTAINER_RUNTIME_BIN`` at it. Called as ``container`` it speaks
the Apple dialect (``stop``'s default grace of 5 s, Apple's messages and version
line); ``NANOCLAW_DOCKER_DIALECT=apple|docker`` overrides the name. Every command
of both dialects is accepted either way. See docs/nanoclaw.md.

Exit statuses, as docker's: ``run`` passes the agent's status through; 125 when
this tool, the runtime or its engine failed (one ``nanoclaw-runtimes-docker:``
line says why), 126/127 when the command could not be started; 143 after
``stop``, 137 after ``kill``; 1 when ``stop``, ``rm`` or ``info`` failed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from .adapter import PROG
from .adapter.flags import ENGINE_FAILURE, AdapterError

DIALECT_ENV = "NANOCLAW_DOCKER_DIALECT"
ACTIVE_ENV = "NANOCLAW_RUNTIMES_DOCKER_ACTIVE"
"""Set while this tool runs: a process of its own inheriting it was started by this tool."""
STOOD_IN = ("docker", "podman", "container")
COMMANDS = ("run", "stop", "kill", "rm", "ps", "ls", "info", "system", "version", "build")
ALIASES = {"list": "ls", "delete": "rm"}
USAGE = f"""usage: {PROG} COMMAND [ARGS...]   (installed as `docker` or `container`)

Runs NanoClaw's agent containers through nanoclaw-runtimes (the group's runtime).

  run -i --rm --name N [-e K=V]... [--user U:G] [--add-host H:IP]
      (-v HOST:CTR[:ro] | --mount type=bind,source=H,target=C[,readonly])... IMAGE [CMD...]
  stop [-t SECONDS] NAME...      kill NAME...      rm [-f] NAME...
  ps [-a] [-q] [--filter name=X] [--format TEMPLATE]
  ls [-a] [-q] [--format json|table]                (Apple container)
  info        system status|start                   version, --version
  build [-t TAG] CONTEXT         (prepares the default runtime's base)
"""


def dialect_of(argv0: str, environ: dict[str, str] | os._Environ[str]) -> str:
    """``apple`` when called as ``container`` (or told so), else ``docker``."""
    forced = environ.get(DIALECT_ENV, "").strip().lower()
    if forced in ("apple", "docker"):
        return forced
    return "apple" if os.path.basename(argv0) == "container" else "docker"


def hide_self(argv0: str, environ: dict[str, str] | os._Environ[str]) -> None:
    """Drop from PATH the folders where ``docker``/``podman``/``container`` is this tool, so
    that a runtime whose engine is the real one (the container runtime on Docker) finds that
    engine, never this tool again."""
    me = os.path.realpath(argv0)
    if not os.path.isfile(me):
        return
    entries = environ.get("PATH", "").split(os.pathsep)
    keep = [
        entry
        for entry in entries
        if not any(
            os.path.realpath(os.path.join(entry or ".", name)) == me
            for name in STOOD_IN
            if os.path.lexists(os.path.join(entry or ".", name))
        )
    ]
    if keep != entries:
        environ["PATH"] = os.pathsep.join(keep)


def _dispatch(command: str, rest: list[str], dialect: str) -> int:
    if command == "run":
        from .adapter.run import run
        from .adapter.run_args import parse_run

        return run(parse_run(rest), stdin=sys.stdin.buffer)
    if command in ("stop", "kill", "rm"):
        from .adapter import manage

        handler = {"stop": manage.stop, "kill": manage.kill, "rm": manage.rm}[command]
        return handler(rest, dialect=dialect)
    if command in ("ps", "ls"):
        from .adapter import listing

        return listing.ps(rest) if command == "ps" else listing.ls(rest)
    from .adapter import system

    if command == "info":
        return system.info(rest)
    if command == "system":
        return system.system(rest)
    if command == "version":
        return system.version(rest, dialect=dialect)
    return system.build(rest)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command line; returns the exit status."""
    words = list(sys.argv[1:] if argv is None else argv)
    argv0 = sys.argv[0] if sys.argv else PROG
    dialect = dialect_of(argv0, os.environ)
    if os.environ.get(ACTIVE_ENV):
        _error(
            "called by itself: a runtime's engine found this tool as its own docker/podman/"
            "container; put the link in a folder of its own (see docs/nanoclaw.md)"
        )
        return ENGINE_FAILURE
    os.environ[ACTIVE_ENV] = str(os.getpid())
    hide_self(argv0, os.environ)
    try:
        while words and words[0].startswith("-"):
            flag = words.pop(0)
            if flag in ("--version", "-v"):
                from .adapter.system import version_line

                print(version_line(dialect))
                return 0
            if flag in ("-h", "--help"):
                print(USAGE, end="")
                return 0
            raise AdapterError(f"unknown flag: {flag} (global flags: --version, --help)")
        if not words or words[0] == "help":
            print(USAGE, end="")
            return 0
        command, rest = words[0], words[1:]
        command = ALIASES.get(command, command)
        if command == "container" and rest:
            # docker's management form: `docker container ls|run|stop ...`; its ls is ps.
            command, rest = rest[0], rest[1:]
            command = "ps" if command in ("ls", "list") else ALIASES.get(command, command)
        if command not in COMMANDS:
            raise AdapterError(f"unknown command {command!r} (supported: {', '.join(COMMANDS)})")
        return _dispatch(command, rest, dialect)
    except AdapterError as exc:
        _error(str(exc))
        return exc.status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1
    except Exception as exc:
        from .errors import UserError

        if not isinstance(exc, UserError):
            raise
        _error("; ".join(str(exc).splitlines()) or type(exc).__name__)
        return ENGINE_FAILURE
    finally:
        os.environ.pop(ACTIVE_ENV, None)


def _error(message: str) -> None:
    try:
        sys.stderr.write(f"{PROG}: {message}\n")
        sys.stderr.flush()
    except OSError:
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
