"""Shared machinery of the container-engine stand-ins (`docker`/`podman`, `container`).

A "container" here is a real local process: `run` starts the image's command as a
subprocess in its own session (so killing the client does not kill it, as with a
real engine) and records it in a state folder; `stop`, `kill`, `rm` and `ps`/`ls`
act on those records from separate invocations, so leaks stay visible.

State folder: ``$<TOOL>_STANDIN_STATE`` (TOOL = DOCKER, PODMAN, CONTAINER), else a
folder under the system temp dir. It holds ``containers/<name>.json``,
``images/<ref>.json`` (``{"entrypoint": [...], "cmd": [...]}``), ``calls.jsonl``
(the argv of every call) and ``down`` (present: the daemon/service is not running;
``<TOOL>_STANDIN_DOWN=1`` does the same).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


class Fail(Exception):
    """An engine error: ``message`` to stderr, exit with ``code``."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def tool_name() -> str:
    return Path(sys.argv[0]).name


def state_dir(tool: str) -> Path:
    env = f"{tool.upper()}_STANDIN_STATE"
    root = os.environ.get(env) or str(Path(tempfile.gettempdir()) / f"{tool}-standin-{os.getuid()}")
    path = Path(root)
    (path / "containers").mkdir(parents=True, exist_ok=True)
    (path / "images").mkdir(parents=True, exist_ok=True)
    return path


def is_down(tool: str, state: Path) -> bool:
    return os.environ.get(f"{tool.upper()}_STANDIN_DOWN") == "1" or (state / "down").exists()


def log_call(state: Path, argv: list[str]) -> None:
    with open(state / "calls.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"argv": argv, "time": time.time()}) + "\n")


# --------------------------------------------------------------------------- images


def image_key(ref: str) -> str:
    if ":" not in ref.rsplit("/", 1)[-1]:
        ref += ":latest"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", ref)


def load_image(state: Path, ref: str) -> dict | None:
    path = state / "images" / f"{image_key(ref)}.json"
    return json.loads(path.read_text()) if path.exists() else None


def save_image(state: Path, ref: str, spec: dict) -> None:
    (state / "images" / f"{image_key(ref)}.json").write_text(json.dumps(spec))


def parse_dockerfile(path: Path) -> dict:
    """ENTRYPOINT and CMD of a Dockerfile (exec form, or shell form wrapped in sh -c)."""
    spec: dict = {"entrypoint": [], "cmd": []}
    text = path.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        m = re.match(r"\s*(ENTRYPOINT|CMD)\s+(.*)$", line, re.IGNORECASE)
        if not m:
            continue
        value = m.group(2).strip()
        try:
            words = json.loads(value)
        except ValueError:
            words = ["/bin/sh", "-c", value]
        spec[m.group(1).lower()] = words
    return spec


# --------------------------------------------------------------------------- containers


def record_path(state: Path, name: str) -> Path:
    return state / "containers" / f"{name}.json"


def load(state: Path, name: str) -> dict | None:
    path = record_path(state, name)
    try:
        return refresh(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def save(state: Path, record: dict) -> None:
    path = record_path(state, record["name"])
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path)


def remove(state: Path, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        record_path(state, name).unlink()


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) is not running.
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        if fields[0] == "Z":
            return False
    return True


def refresh(record: dict) -> dict:
    """A "running" record whose process is gone (its client was killed) shows as exited."""
    if record.get("status") == "running" and not alive(record.get("pid")):
        record["status"] = "exited"
        record.setdefault("exit_code", 137)
    return record


def all_records(state: Path) -> list[dict]:
    out = []
    for path in sorted((state / "containers").glob("*.json")):
        with contextlib.suppress(OSError, ValueError):
            out.append(refresh(json.loads(path.read_text())))
    return out


def new_id() -> str:
    return secrets.token_hex(32)


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


def signal_container(record: dict, sig: int) -> None:
    pid = record.get("pid")
    if pid:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)


def stop_container(record: dict, timeout_s: float) -> None:
    """SIGTERM, wait up to ``timeout_s``, then SIGKILL — what `docker stop -t N` does."""
    signal_container(record, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while alive(record.get("pid")) and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive(record.get("pid")):
        signal_container(record, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while alive(record.get("pid")) and time.monotonic() < deadline:
            time.sleep(0.05)


# --------------------------------------------------------------------------- running


def host_path_for(container_path: str, binds: list[tuple[str, str]]) -> str | None:
    """The host folder shown at ``container_path``, through the bind mounts."""
    best = None
    for host, target in binds:
        target = target.rstrip("/") or "/"
        inside = container_path == target or container_path.startswith(target + "/")
        if inside and (best is None or len(target) > len(best[1])):
            best = (host, target)
    if best is None:
        return None
    return best[0] + container_path[len(best[1]) :]


def run_container(
    state: Path,
    *,
    name: str,
    image: str,
    command: list[str],
    labels: dict[str, str],
    env: dict[str, str],
    workdir: str | None,
    binds: list[tuple[str, str]],
    interactive: bool,
    remove_after: bool,
    not_found: tuple[str, int],
    not_executable: tuple[str, int],
) -> int:
    """Start ``command`` as the container's process, wait for it, and return its status.

    ``not_found``/``not_executable``: the engine's (message, exit status) when the
    command cannot be started.
    """
    cwd = host_path_for(workdir, binds) if workdir else None
    scratch = state / "rootfs" / name
    scratch.mkdir(parents=True, exist_ok=True)
    if cwd is None or not Path(cwd).is_dir():
        cwd = str(scratch)
    child_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(scratch),
        "HOSTNAME": name[:12],
        **env,
    }
    exe = command[0]
    resolved = exe if "/" in exe else shutil.which(exe, path=child_env["PATH"])
    if resolved is None or not os.path.exists(resolved):
        shutil.rmtree(scratch, ignore_errors=True)
        raise Fail(not_found[0].format(exe=exe), not_found[1])
    if not os.access(resolved, os.X_OK) or os.path.isdir(resolved):
        shutil.rmtree(scratch, ignore_errors=True)
        raise Fail(not_executable[0].format(exe=exe), not_executable[1])
    record = {
        "name": name,
        "id": new_id(),
        "image": image,
        "command": command,
        "labels": labels,
        "status": "created",
        "created": now(),
        "pid": None,
    }
    save(state, record)
    proc = subprocess.Popen(
        command,
        executable=resolved,
        stdin=None if interactive else subprocess.DEVNULL,
        cwd=cwd,
        env=child_env,
        start_new_session=True,
    )
    record.update(status="running", pid=proc.pid, started=now())
    save(state, record)

    def forward(signum: int, _frame: object) -> None:  # the client proxies signals (sig-proxy)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    code = proc.wait()
    status = 128 - code if code < 0 else code
    shutil.rmtree(scratch, ignore_errors=True)
    if remove_after:
        remove(state, name)
    else:
        record.update(status="exited", exit_code=status, pid=None, finished=now())
        save(state, record)
    return status


def main_wrapper(fn) -> None:
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
