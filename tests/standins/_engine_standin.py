"""What the `container` stand-in (Apple's tool) keeps and how it runs a container, on Linux.

A "container" is a real sandbox: the image's command run under bubblewrap, in its own
session (killing the client does not kill it, as with the real tool's VM), with the
host's system folders read-only as its root file system, the image's files (what its
Dockerfile COPYs) and the mounts bound in, read-only ones enforced, a private /tmp, its
own PID namespace (with `--init` the command is not PID 1; without it the command IS PID 1
and, as in the real tool, ignores SIGTERM unless it handles it), no network unless one
is attached, and the requested user.

State folder: see :func:`state_dir`::

    containers/<id>.json    one record per container (status, pid, labels, config)
    images/<key>.json       {"reference", "entrypoint", "cmd", "env", "workdir", "user",
                             "labels", "files": {container path: stored file}}
    images/<key>.files/     the files the image's Dockerfile COPYs
    registry/<key>.json     images `image pull` (and `run`'s implicit pull) can fetch
    calls.jsonl             the argv of every call, one JSON object a line
    down                    present: the service is not registered (XPC errors)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")


class Fail(Exception):
    """A tool error: ``message`` to stderr, exit with ``code``."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def state_dir(tool: str) -> Path:
    """``$<TOOL>_STANDIN_STATE``, else a folder under the system temp dir. (Engines give their
    tools a minimal environment: tests put a wrapper first on PATH that sets it.)"""
    root = os.environ.get(f"{tool.upper()}_STANDIN_STATE")
    path = Path(root or Path(tempfile.gettempdir()) / f"{tool}-standin-{os.getuid()}")
    for sub in ("containers", "images", "registry"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    return path


def log_call(state: Path, argv: list[str]) -> None:
    with open(state / "calls.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"argv": argv, "time": time.time()}) + "\n")


# --------------------------------------------------------------------------- images


def image_key(ref: str) -> str:
    if ":" not in ref.rsplit("/", 1)[-1] and "@" not in ref:
        ref += ":latest"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", ref)


def load_image(state: Path, ref: str, *, where: str = "images") -> dict[str, Any] | None:
    path = state / where / f"{image_key(ref)}.json"
    return json.loads(path.read_text()) if path.exists() else None


def save_image(state: Path, ref: str, spec: dict[str, Any]) -> None:
    spec = {**spec, "reference": ref}
    (state / "images" / f"{image_key(ref)}.json").write_text(json.dumps(spec))


def build_image(
    state: Path, ref: str, dockerfile: Path, context: Path, labels: dict[str, str]
) -> None:
    """Record the image a Dockerfile describes: FROM (which must exist), COPY (files kept),
    ENV, WORKDIR, USER, LABEL, ENTRYPOINT and CMD. RUN steps cannot run without a root
    file system of the image and are skipped."""
    spec: dict[str, Any] = {
        "entrypoint": [],
        "cmd": [],
        "env": {},
        "workdir": "/",
        "user": "",
        "labels": {},
        "files": {},
    }
    files_dir = state / "images" / f"{image_key(ref)}.files"
    shutil.rmtree(files_dir, ignore_errors=True)
    files_dir.mkdir(parents=True)
    text = dockerfile.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        match = re.match(r"\s*([A-Za-z]+)\s+(.*)$", line)
        if not match or line.lstrip().startswith("#"):
            continue
        word, value = match.group(1).upper(), match.group(2).strip()
        if word == "FROM":
            base = load_image(state, value) or load_image(state, value, where="registry")
            if base is None:
                raise Fail(f"Error: image not found: {value}", 1)
            spec.update({k: v for k, v in base.items() if k in ("env", "workdir", "user", "cmd")})
            spec["env"] = dict(base.get("env", {}))
        elif word == "COPY":
            *sources, dest = value.split()
            for source in sources:
                src = context / source
                target = dest if not dest.endswith("/") else dest + Path(source).name
                stored = files_dir / f"{len(spec['files'])}-{Path(source).name}"
                shutil.copy2(src, stored)
                spec["files"][target] = str(stored)
        elif word == "ENV":
            for key, val in re.findall(r'(\w+)=("[^"]*"|\S+)', value):
                spec["env"][key] = val.strip('"')
        elif word == "WORKDIR":
            spec["workdir"] = value
        elif word == "USER":
            spec["user"] = value
        elif word == "LABEL":
            for key, val in re.findall(r'([\w.-]+)=("[^"]*"|\S+)', value):
                spec["labels"][key] = val.strip('"')
        elif word in ("ENTRYPOINT", "CMD"):
            try:
                words = json.loads(value)
            except ValueError:
                words = ["/bin/sh", "-c", value]
            spec[word.lower()] = words
    spec["labels"].update(labels)
    save_image(state, ref, spec)


# --------------------------------------------------------------------------- containers


def record_path(state: Path, ident: str) -> Path:
    return state / "containers" / f"{ident}.json"


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def refresh(record: dict[str, Any]) -> dict[str, Any]:
    """A "running" record whose sandbox is gone shows as stopped."""
    if record.get("status") in ("running", "stopping") and not alive(record.get("pid")):
        record["status"] = "stopped"
    return record


def load(state: Path, ident: str) -> dict[str, Any] | None:
    try:
        return refresh(json.loads(record_path(state, ident).read_text()))
    except (OSError, ValueError):
        return None


def save(state: Path, record: dict[str, Any]) -> None:
    path = record_path(state, record["id"])
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path)


def remove(state: Path, ident: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        record_path(state, ident).unlink()


def all_records(state: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted((state / "containers").glob("*.json")):
        with contextlib.suppress(OSError, ValueError):
            out.append(refresh(json.loads(path.read_text())))
    return out


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def signal_container(record: dict[str, Any], sig: int) -> None:
    pid = record.get("pid")
    if pid:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)


def stop_container(record: dict[str, Any], timeout_s: float, sig: int = signal.SIGTERM) -> None:
    """The stop signal to the container's init, up to ``timeout_s`` to end, then SIGKILL.

    With ``--init`` the init passes the signal on (every process of the sandbox gets it);
    without, the command is PID 1 of its namespace and gets it alone, so it ignores it unless
    it handles it, as the kernel does for a namespace's init."""
    init = record.get("init_pid")
    if sig != signal.SIGKILL and not record.get("init") and init:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(init, sig)
    else:
        signal_container(record, sig)
    deadline = time.monotonic() + timeout_s
    while alive(record.get("pid")) and time.monotonic() < deadline:
        time.sleep(0.02)
    if alive(record.get("pid")):
        signal_container(record, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while alive(record.get("pid")) and time.monotonic() < deadline:
            time.sleep(0.02)


def _host_path(path: str, binds: list[tuple[str, str, bool]], files: dict[str, str]) -> str:
    """Where a path of the container lies on the host (its root file system is the host's)."""
    if path in files:
        return files[path]
    best = None
    for source, target, _ro in binds:
        inside = path == target or path.startswith(target.rstrip("/") + "/")
        if inside and (best is None or len(target) > len(best[1])):
            best = (source, target)
    return best[0] + path[len(best[1]) :] if best else path


def executable_found(
    name: str,
    env: dict[str, str],
    workdir: str,
    binds: list[tuple[str, str, bool]],
    files: dict[str, str],
) -> bool:
    """vmexec's lookup: a path (relative to the working directory) must exist; a bare name
    is searched on the container's PATH."""
    if "/" in name:
        full = name if name.startswith("/") else os.path.normpath(os.path.join(workdir, name))
        return os.path.exists(_host_path(full, binds, files))
    for folder in env.get("PATH", "").split(":"):
        candidate = _host_path(os.path.join(folder or ".", name), binds, files)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return True
    return False


def sandbox_argv(
    *,
    command: list[str],
    home: str | None,
    workdir: str,
    binds: list[tuple[str, str, bool]],
    files: dict[str, str],
    network: bool,
    init: bool,
    user: tuple[int, int] | None,
) -> list[str]:
    """The bubblewrap command line of one container (see the module docstring); its
    environment is the process's (:func:`run_container`), never a command-line word, as the
    real tool's environment travels inside its VM."""
    bwrap = shutil.which("bwrap") or "/usr/bin/bwrap"
    argv = [bwrap, "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--hostname", "container"]
    if not network:
        argv.append("--unshare-net")
    for folder in SYSTEM:
        if os.path.islink(folder):
            argv += ["--symlink", os.readlink(folder), folder]
        elif os.path.isdir(folder):
            argv += ["--ro-bind", folder, folder]
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/home"]
    argv += ["--tmpfs", "/opt", "--tmpfs", "/workspace", "--tmpfs", "/run"]
    if home and home.startswith("/home/"):
        argv += ["--perms", "01777", "--dir", home]
    if workdir and workdir != "/" and not any(t == workdir for _, t, _ in binds):
        argv += ["--perms", "0755", "--dir", workdir]  # a real image's WORKDIR exists
    for target, stored in files.items():
        # as root bwrap makes missing parents 0700; an image's folders are 0755
        argv += ["--perms", "0755", "--dir", os.path.dirname(target), "--ro-bind", stored, target]
    for source, target, readonly in binds:
        parent = os.path.dirname(target.rstrip("/"))
        if parent not in ("", "/", "/workspace", "/home", "/tmp", "/opt", "/run"):
            argv += ["--perms", "0755", "--dir", parent]
        argv += ["--ro-bind" if readonly else "--bind", source, target]
    drop: list[str] = []
    if os.geteuid() != 0:
        uid, gid = user if user is not None else (0, 0)
        argv += ["--unshare-user", "--uid", str(uid), "--gid", str(gid)]
    elif user is not None and user != (0, 0):
        # The real tool reads shared folders as the macOS user and the container acts on them
        # as that user: here the mounts are made as root, then the command drops to the user.
        drop = ["setpriv", f"--reuid={user[0]}", f"--regid={user[1]}", "--clear-groups", "--"]
    argv += ["--chdir", workdir or "/"]
    argv += ["--cap-drop", "ALL"] if os.geteuid() == 0 and not drop else []
    if not init:
        argv.append("--as-pid-1")
    return [*argv, "--", *drop, *command]


def run_container(
    state: Path,
    record: dict[str, Any],
    argv: list[str],
    *,
    env: dict[str, str],
    interactive: bool,
    remove_after: bool,
    on_signal: Callable[[int, int], bool],
) -> int:
    """Start the sandbox, wait for it and return its status (128+N for signal N).

    ``on_signal(signum, count)`` is called for SIGINT/SIGTERM/SIGHUP the client receives; it
    returns whether to forward the signal to the container (the real tool forwards them,
    and gives up after the third)."""
    info_read, info_write = os.pipe()
    bwrap, rest = argv[0], argv[1:]
    proc = subprocess.Popen(
        [bwrap, "--info-fd", str(info_write), *rest],
        env=env,
        stdin=None if interactive else subprocess.DEVNULL,
        start_new_session=True,
        pass_fds=(info_write,),
    )
    os.close(info_write)
    with os.fdopen(info_read, "rb") as info:
        raw = info.read()
    try:
        init_pid = int(json.loads(raw or b"{}").get("child-pid") or 0) or None
    except ValueError:
        init_pid = None
    record.update(status="running", pid=proc.pid, init_pid=init_pid, startedDate=now().isoformat())
    save(state, record)
    count = {"n": 0}

    def forward(signum: int, _frame: object) -> None:
        count["n"] += 1
        if on_signal(signum, count["n"]):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    code = proc.wait()
    status = 128 - code if code < 0 else code
    if remove_after:
        remove(state, record["id"])
    else:
        record.update(status="stopped", exitCode=status, pid=None)
        save(state, record)
    return status


def main_wrapper(fn: Callable[[list[str]], int]) -> None:
    try:
        code = fn(sys.argv[1:])
    except Fail as exc:
        if str(exc):
            sys.stderr.write(str(exc).rstrip("\n") + "\n")
        code = exc.code
    except BrokenPipeError:
        code = 1
    sys.stdout.flush()
    raise SystemExit(code)
