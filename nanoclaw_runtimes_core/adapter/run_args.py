"""``run``'s command line: the flags NanoClaw (docker and Apple ``container``) passes, checked.

Accepted: ``-i``, ``--rm``, ``--name``, ``-e``, ``--add-host``, ``--user``,
``-v HOST:CTR[:ro|rw]``, ``--mount type=bind,source=,target=[,readonly]``,
``--entrypoint``, then ``IMAGE [COMMAND...]``. Flags a sandbox cannot honour
(``-t``, ``-d``, ``--network``, ...) are refused by name, as is any other flag.
"""

from __future__ import annotations

import csv
import os
import posixpath
from collections.abc import Mapping, Sequence

from ..record import Record
from .flags import TRUE_WORDS, AdapterError, Flag, parse

RUN_FLAGS = (
    Flag(names=("-i", "--interactive"), dest="interactive"),
    Flag(names=("--rm",), dest="rm"),
    Flag(names=("--name",), dest="name", value=True),
    Flag(names=("-e", "--env"), dest="env", value=True),
    Flag(names=("--add-host",), dest="add_host", value=True),
    Flag(names=("-u", "--user"), dest="user", value=True),
    Flag(names=("-v", "--volume"), dest="volume", value=True),
    Flag(names=("--mount",), dest="volume", value=True),
    Flag(names=("--entrypoint",), dest="entrypoint", value=True),
    Flag(
        names=("-t", "--tty"),
        dest="tty",
        refused="a sandbox gets no terminal; NanoClaw runs without -t",
    ),
    Flag(
        names=("-d", "--detach"),
        dest="detach",
        refused="runs are attached: `run` returns when the agent ends",
    ),
    Flag(
        names=("--network", "--net"),
        dest="network",
        value=True,
        refused="the network is the runtime's setting (containerConfig.network)",
    ),
    Flag(
        names=("-w", "--workdir"),
        dest="workdir",
        value=True,
        refused="the working directory is always /workspace/group",
    ),
    Flag(names=("--env-file",), dest="env_file", value=True, refused="pass each variable with -e"),
    Flag(
        names=("-p", "--publish"),
        dest="publish",
        value=True,
        refused="sandboxes publish no ports",
    ),
    Flag(names=("--privileged",), dest="privileged", refused="sandboxes are never privileged"),
)


class MountArg(Record):
    """One ``-v`` or ``--mount``: host path, container path, read-only, and the flag as given."""

    host: str
    container: str
    readonly: bool
    given: str


class RunArgs(Record):
    """A parsed ``run`` command line."""

    interactive: bool
    name: str | None
    env: tuple[tuple[str, str], ...]
    add_hosts: tuple[str, ...]
    user: str | None
    mounts: tuple[MountArg, ...]
    entrypoint: str | None
    image: str
    command: tuple[str, ...]

    def mount_at(self, container: str) -> MountArg | None:
        """The mount at ``container`` (the last one given, as docker refuses duplicates)."""
        found = [m for m in self.mounts if m.container == container]
        return found[-1] if found else None


def parse_run(words: Sequence[str], environ: Mapping[str, str] | None = None) -> RunArgs:
    """Parse ``run``'s arguments (after the word ``run``); raises AdapterError (status 125)."""
    parsed = parse(words, RUN_FLAGS, command="run", interspersed=False)
    if not parsed.positionals:
        raise AdapterError("run: an image is required: run [FLAGS] IMAGE [COMMAND...]")
    image, *command = parsed.positionals
    mounts = tuple(_mount(text) for text in parsed.values.get("volume", ()))
    seen: set[str] = set()
    for m in mounts:
        if m.container in seen:
            raise AdapterError(f"run: {m.given}: duplicate mount point: {m.container}")
        seen.add(m.container)
    env = tuple(
        pair
        for text in parsed.values.get("env", ())
        if (pair := _env(text, os.environ if environ is None else environ)) is not None
    )
    hosts = tuple(parsed.values.get("add_host", ()))
    for host in hosts:
        if ":" not in host and "=" not in host:
            raise AdapterError(f"run: --add-host {host}: expected HOST:IP")
    user = parsed.value("user")
    if user is not None and not user.strip():
        raise AdapterError("run: --user is empty: expected uid[:gid] or a user name")
    entrypoint = parsed.value("entrypoint")
    return RunArgs(
        interactive=parsed.bools.get("interactive", False),
        name=parsed.value("name"),
        env=env,
        add_hosts=hosts,
        user=user,
        mounts=mounts,
        entrypoint=entrypoint if entrypoint else None,
        image=image,
        command=tuple(command),
    )


def _env(text: str, environ: Mapping[str, str]) -> tuple[str, str] | None:
    """``-e K=V``, or ``-e K`` taking this process's value (left out when it has none)."""
    key, eq, value = text.partition("=")
    if not key or any(c.isspace() for c in key):
        raise AdapterError(f"run: -e {text}: invalid environment variable name {key!r}")
    if eq:
        return key, value
    return (key, environ[key]) if key in environ else None


def _mount(text: str) -> MountArg:
    if text.startswith(("type=", "source=", "src=", "target=", "destination=", "dst=")) or (
        "=" in text.split(",", 1)[0]
    ):
        return _mount_csv(text)
    return _volume(text)


def _volume(text: str) -> MountArg:
    """``-v HOST:CTR[:MODE]``; only bind mounts of absolute host paths exist here."""
    given = f"-v {text}"
    parts = text.split(":")
    if len(parts) == 1:
        raise AdapterError(
            f"run: {given}: anonymous volumes are not supported; give HOST:CONTAINER paths"
        )
    if len(parts) > 3:
        raise AdapterError(f"run: {given}: invalid volume specification (too many ':')")
    host, container = parts[0], parts[1]
    readonly = False
    for option in parts[2].split(",") if len(parts) == 3 else []:
        if option == "ro":
            readonly = True
        elif option == "rw":
            readonly = False
        else:
            raise AdapterError(f"run: {given}: unsupported volume option {option!r} (ro or rw)")
    return MountArg(
        host=_host_path(host, given),
        container=_container_path(container, given),
        readonly=readonly,
        given=given,
    )


def _mount_csv(text: str) -> MountArg:
    """``--mount type=bind,source=H,target=C[,readonly]`` (docker and Apple ``container``)."""
    given = f"--mount {text}"
    try:
        fields = next(csv.reader([text]))
    except (csv.Error, StopIteration):
        raise AdapterError(f"run: {given}: invalid field list") from None
    kind, source, target, readonly = None, None, None, False
    for item in fields:
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if key == "type":
            kind = value
        elif key in ("source", "src"):
            source = value
        elif key in ("target", "destination", "dst"):
            target = value
        elif key in ("readonly", "ro"):
            flag = TRUE_WORDS.get(value.lower()) if eq else True
            if flag is None:
                raise AdapterError(f"run: {given}: {key}={value}: expected true or false")
            readonly = flag
        else:
            raise AdapterError(
                f"run: {given}: unsupported mount field {key!r} (type, source, target, readonly)"
            )
    if kind not in ("bind", "virtiofs"):
        raise AdapterError(
            f"run: {given}: only type=bind mounts are supported"
            + (f", not type={kind}" if kind else " (type= is missing)")
        )
    if not source or not target:
        raise AdapterError(f"run: {given}: source= and target= are required")
    return MountArg(
        host=_host_path(source, given),
        container=_container_path(target, given),
        readonly=readonly,
        given=given,
    )


def _host_path(path: str, given: str) -> str:
    if not path.startswith("/"):
        raise AdapterError(
            f"run: {given}: {path!r} is not an absolute host path; named volumes are not supported"
        )
    return posixpath.normpath(path)


def _container_path(path: str, given: str) -> str:
    if not path.startswith("/"):
        raise AdapterError(f"run: {given}: the container path {path!r} must be absolute")
    return posixpath.normpath(path)
