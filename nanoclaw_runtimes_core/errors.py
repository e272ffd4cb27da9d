"""Errors with messages meant for the user, and the exit status each maps to.

Every error a user can fix is a :class:`UserError` whose message says what was
wrong, where (file and JSON path, variable or flag) and how to fix it. The CLI
prints it without a traceback and exits with its :attr:`~UserError.exit_status`.
"""

from __future__ import annotations

from collections.abc import Iterable


class ExitStatus:
    """Documented exit statuses of the ``nanoclaw-runtimes`` command.

    In agent mode and command mode the sandbox's own status passes through;
    these are the statuses of the tool itself.
    """

    OK = 0
    RUN_FAILED = 1
    USAGE = 2
    CONFIG = 3
    NO_SPACE = 4
    TIMEOUT = 124
    INTERRUPTED = 130


class UserError(Exception):
    """A problem the user can fix; the message says what, where and how."""

    exit_status = ExitStatus.USAGE


class ConfigError(UserError):
    """One or more invalid settings. ``problems`` holds one line each, e.g.
    ``groups/dev/config.json: containerConfig.cpus: expected an integer, got "four"``.
    """

    exit_status = ExitStatus.CONFIG

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class RuntimeNotFound(ConfigError):
    """The configured runtime name is not installed."""

    def __init__(self, message: str) -> None:
        super().__init__(message.splitlines())


class PluginError(UserError):
    """A runtime plugin could not be loaded or broke the plugin contract; the message names
    the runtime, its distribution and the fix."""

    exit_status = ExitStatus.CONFIG


class EngineUnavailable(UserError):
    """The runtime's engine is not usable on this host."""

    exit_status = ExitStatus.RUN_FAILED


class NoSpace(UserError):
    """The host ran out of disk space (or quota) while writing; nothing half-written is kept."""

    exit_status = ExitStatus.NO_SPACE


class RuntimeFailure(Exception):
    """An unexpected exception raised inside a runtime plugin's hook."""

    exit_status = ExitStatus.RUN_FAILED

    def __init__(self, runtime: str, distribution: str, hook: str, cause: BaseException) -> None:
        self.runtime = runtime
        self.distribution = distribution
        self.hook = hook
        self.cause = cause
        super().__init__(
            f"runtime {runtime!r} (from {distribution}) failed in {hook}: "
            f"{type(cause).__name__}: {cause}"
        )
