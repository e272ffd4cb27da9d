"""NanoClaw v1's host side of a container run, in Python, as its TypeScript does it.

Follows ``src/container-runner.ts``, ``src/container-runtime.ts`` and the callers of
``runContainerAgent`` at v1.2.0 and v1.2.53 (commit da9a73b). ``apple=True`` with version
1.2.0 is that version's ``convert-to-apple-container`` skill (the ``container`` binary,
``--mount ...,readonly``, no ``.env`` shadow, ``RUN_UID``/``RUN_GID`` for main, ``system
status``, ``ls --format json``, ``container stop NAME``):

- the mounts (``buildVolumeMounts``: folders created, ``settings.json`` written, the
  agent-runner source copied, ``/dev/null`` over ``.env``, v1.2.53's ``store`` and main
  ``global``) and the argv (``buildContainerArgs``: ``--name nanoclaw-<safe>-<ms>``,
  ``-e TZ``, OneCLI's ``-e``/single-file ``-v`` for v1.2.53, ``--add-host`` on Linux,
  ``--user`` when the uid is neither 0 nor 1000, ``-v h:c[:ro]`` or Apple's ``--mount``);
- ``spawn(bin, args)`` found on PATH, one compact ``JSON.stringify(input)`` on stdin, then
  ``stdin.end()`` (v1.2.0 adds ``secrets`` from ``.env``);
- stdout chunk by chunk, each decoded on its own (``data.toString()``), into a log
  accumulator capped at ``CONTAINER_MAX_OUTPUT_SIZE`` UTF-16 units (truncation flag) and an
  uncapped parse buffer scanned for START ... END pairs; every block that parses resets the
  hard timeout ``max(configTimeout, IDLE_TIMEOUT + 30 s)``; stderr never does;
- on timeout: v1.2.0 ``exec("docker stop NAME", {timeout: 15000})`` and SIGKILL of the
  ``run`` process when it fails; v1.2.53 ``execSync("docker stop -t 1 NAME")``, which blocks
  the event loop (no stdout is handled meanwhile), SIGKILL when it throws;
- the result on ``close`` (exit and every pipe closed), and NanoClaw's own
  ``groups/<folder>/logs/container-<ts>.log``;
- at start ``docker info`` (10 s) and the orphan cleanup (``ps --filter name=nanoclaw-
  --format '{{.Names}}'`` then ``stop``) through ``/bin/sh``, as ``execSync`` runs them;
  Apple: ``container system status`` / ``system start``, ``ls --format json``.

The liberties: ``grace_floor_ms`` (NanoClaw's fixed 30 s in ``IDLE_TIMEOUT + 30 s``) can be
shortened, so a test of the hard timeout does not wait half a minute; ``read_size`` sets the size
of each pipe read (arbitrary chunking); ``sh_env`` can break the ``execSync`` commands' environment
(a ``stop`` that fails).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import signal
import string
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

OUTPUT_START = "---NANOCLAW_OUTPUT_START---"
OUTPUT_END = "---NANOCLAW_OUTPUT_END---"
STOP_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
SECRET_KEYS = (
    "CLAUDE_CODE_OAUTH_TOKEN",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_AUTH_TOKEN",
)
VERSIONS = ("1.2.0", "1.2.53")


def js_length(text: str) -> int:
    """``string.length`` in JavaScript: UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def js_slice(text: str, units: int) -> str:
    """``text.slice(0, units)`` in UTF-16 units (a split surrogate pair is dropped)."""
    return text.encode("utf-16-le")[: units * 2].decode("utf-16-le", errors="ignore")


def iso_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class OneCli:
    """What OneCLI's gateway answers (SDK 0.2.0's ``applyContainerConfig``): ``-e`` variables and
    a CA file the SDK writes into the temp folder and mounts read-only."""

    env: dict[str, str]
    ca_container_path: str = "/tmp/onecli-proxy-ca.pem"
    """Chosen by the gateway (``caCertificateContainerPath``)."""
    combined_ca: bool = True


@dataclass
class Mount:
    host: str
    container: str
    readonly: bool


@dataclass
class Outcome:
    """What ``runContainerAgent`` resolved, and what the host saw on the way."""

    status: str
    result: str | None
    error: str | None
    new_session_id: str | None
    code: int | None
    timed_out: bool
    had_streaming_output: bool
    outputs: list[dict[str, Any]]
    parse_failures: int
    stdout: str
    stderr: str
    stdout_raw: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    stderr_lines: list[str]
    duration_ms: int
    args: list[str]
    name: str
    log_file: Path
    stop_calls: list[tuple[str, int | None, float]] = field(default_factory=list)
    """Each timeout stop: the shell command, its status (None: timed out), its seconds."""
    sigkilled: bool = False
    first_output_s: float | None = None


class NanoClawHost:
    """One NanoClaw process of ``version`` over the project ``root``.

    ``env`` is NanoClaw's environment: its PATH decides which ``docker`` (or ``container``)
    runs, and the adapter inherits it (``CONTAINER_TIMEOUT``, ``IDLE_TIMEOUT``, ...).
    """

    def __init__(
        self,
        root: Path,
        *,
        version: str,
        env: dict[str, str],
        apple: bool = False,
        timezone_name: str = "UTC",
        container_timeout_ms: int = 1_800_000,
        idle_timeout_ms: int = 1_800_000,
        grace_floor_ms: int = 30_000,
        max_output: int = 10_485_760,
        image: str = "nanoclaw-agent:latest",
        onecli: OneCli | None = None,
        uid: int | None = None,
        gid: int | None = None,
        read_size: Callable[[], int] | None = None,
        sh_env: dict[str, str] | None = None,
    ) -> None:
        if version not in VERSIONS:
            raise ValueError(f"version must be one of {VERSIONS}")
        self.root = root
        self.version = version
        self.env = env
        self.apple = apple
        self.bin = "container" if apple else "docker"
        self.timezone = timezone_name
        self.container_timeout_ms = container_timeout_ms
        self.idle_timeout_ms = idle_timeout_ms
        self.grace_floor_ms = grace_floor_ms
        self.max_output = max_output
        self.image = image
        self.onecli = onecli
        self.uid = os.getuid() if uid is None else uid
        self.gid = os.getgid() if gid is None else gid
        self.read_size = read_size or (lambda: 65536)
        self.sh_env = sh_env if sh_env is not None else env
        """The environment of ``execSync`` commands: NanoClaw's own; a test may break it."""
        self.tmpdir = Path(env.get("TMPDIR") or "/tmp")
        self.pace = 1.0
        """How much slower than bubblewrap the runtime under test is (set by the tests)."""
        self.log: list[tuple[str, str]] = []
        """NanoClaw's logger: (level, message)."""

    @property
    def new(self) -> bool:
        return self.version == "1.2.53"

    # ------------------------------------------------------------------ execSync through sh

    def sh(self, command: str, *, timeout: float | None) -> subprocess.CompletedProcess[str]:
        """``execSync(command)``: ``/bin/sh -c`` with NanoClaw's environment and cwd; raises
        like execSync on a non-zero status or a timeout."""
        result = subprocess.run(
            ["/bin/sh", "-c", command],
            cwd=self.root,
            env=self.sh_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise subprocess.CalledProcessError(
                result.returncode, command, result.stdout, result.stderr
            )
        return result

    def ensure_runtime_running(self) -> None:
        """``ensureContainerRuntimeRunning``: ``docker info`` within 10 s (Apple: ``system
        status``, else ``system start`` within 30 s); raises as NanoClaw does."""
        try:
            if self.apple:
                try:
                    self.sh("container system status", timeout=None)
                except subprocess.CalledProcessError:
                    self.log.append(("info", "Starting container runtime..."))
                    self.sh("container system start", timeout=30)
            else:
                self.sh("docker info", timeout=10)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            self.log.append(("error", "Failed to reach container runtime"))
            raise RuntimeError("Container runtime is required but failed to start") from exc

    def stop_container(self, name: str, *, timeout: float | None = None) -> None:
        """``docker stop NAME`` (v1.2.0), v1.2.53's ``stopContainer`` (the name checked, then
        ``docker stop -t 1 NAME``), or the Apple variants' ``container stop NAME``."""
        if self.new and not STOP_NAME.match(name):
            raise ValueError(f"Invalid container name: {name}")
        if self.apple:
            self.sh(f"container stop {name}", timeout=timeout)
        elif self.new:
            self.sh(f"docker stop -t 1 {name}", timeout=timeout)
        else:
            self.sh(f"docker stop {name}", timeout=timeout)

    def cleanup_orphans(self) -> list[str]:
        """``cleanupOrphans``: the running ``nanoclaw-`` containers, each stopped."""
        try:
            if self.apple:
                out = self.sh("container ls --format json", timeout=None).stdout
                entries = json.loads(out or "[]")
                orphans = [
                    e["configuration"]["id"]
                    for e in entries
                    if e["status"] == "running" and e["configuration"]["id"].startswith("nanoclaw-")
                ]
            else:
                out = self.sh(
                    "docker ps --filter name=nanoclaw- --format '{{.Names}}'", timeout=None
                ).stdout
                orphans = [line for line in out.strip().split("\n") if line]
        except (subprocess.CalledProcessError, ValueError, KeyError) as exc:
            self.log.append(("warn", f"Failed to clean up orphaned containers: {exc}"))
            return []
        for name in orphans:
            with contextlib.suppress(subprocess.CalledProcessError, ValueError):
                self.stop_container(name, timeout=60)
        if orphans:
            self.log.append(("info", f"Stopped orphaned containers: {orphans}"))
        return orphans

    # ------------------------------------------------------------------ mounts and argv

    def build_mounts(
        self, folder: str, is_main: bool, *, additional: list[Mount] = ()
    ) -> list[Mount]:
        """``buildVolumeMounts`` of this version (with its side effects on the project)."""
        root = self.root
        group_dir = root / "groups" / folder
        mounts: list[Mount] = []
        global_dir = root / "groups" / "global"
        if is_main:
            mounts.append(Mount(str(root), "/workspace/project", True))
            if (root / ".env").exists() and not self.apple:
                mounts.append(Mount("/dev/null", "/workspace/project/.env", True))
            if self.new:
                mounts.append(Mount(str(root / "store"), "/workspace/project/store", False))
            mounts.append(Mount(str(group_dir), "/workspace/group", False))
            if self.new and global_dir.exists():
                mounts.append(Mount(str(global_dir), "/workspace/global", False))
        else:
            mounts.append(Mount(str(group_dir), "/workspace/group", False))
            if global_dir.exists():
                mounts.append(Mount(str(global_dir), "/workspace/global", True))
        sessions = root / "data" / "sessions" / folder / ".claude"
        sessions.mkdir(parents=True, exist_ok=True)
        settings = sessions / "settings.json"
        if not settings.exists():
            settings.write_text(
                json.dumps(
                    {
                        "env": {
                            "CLAUDE_CODE_EXPERIMENTAL_AGENT_TEAMS": "1",
                            "CLAUDE_CODE_ADDITIONAL_DIRECTORIES_CLAUDE_MD": "1",
                            "CLAUDE_CODE_DISABLE_AUTO_MEMORY": "0",
                        }
                    },
                    indent=2,
                )
                + "\n"
            )
        mounts.append(Mount(str(sessions), "/home/node/.claude", False))
        ipc = root / "data" / "ipc" / folder
        for sub in ("messages", "tasks", "input"):
            (ipc / sub).mkdir(parents=True, exist_ok=True)
        mounts.append(Mount(str(ipc), "/workspace/ipc", False))
        source = root / "container" / "agent-runner" / "src"
        cache = root / "data" / "sessions" / folder / "agent-runner-src"
        if source.exists():
            if self.new:
                index, cached = source / "index.ts", cache / "index.ts"
                if (
                    not cache.exists()
                    or not cached.exists()
                    or (index.exists() and index.stat().st_mtime > cached.stat().st_mtime)
                ):
                    shutil.copytree(source, cache, dirs_exist_ok=True)
            elif not cache.exists():
                shutil.copytree(source, cache)
        mounts.append(Mount(str(cache), "/app/src", False))
        mounts.extend(additional)
        return mounts

    def _onecli_args(self, args: list[str]) -> None:
        """OneCLI SDK 0.2.0's ``applyContainerConfig(args, {addHostMapping: false})``."""
        if self.onecli is None:
            self.log.append(("warn", "OneCLI gateway not reachable: no credentials"))
            return
        for key, value in self.onecli.env.items():
            args += ["-e", f"{key}={value}"]
        ca = self.tmpdir / "onecli-proxy-ca.pem"
        ca.write_text("-----BEGIN CERTIFICATE-----\nMIIonecliproxy\n-----END CERTIFICATE-----\n")
        args += ["-v", f"{ca}:{self.onecli.ca_container_path}:ro"]
        if self.onecli.combined_ca:
            combined = self.tmpdir / "onecli-combined-ca.pem"
            combined.write_text(ca.read_text() + "# system bundle\n")
            args += ["-e", "SSL_CERT_FILE=/tmp/onecli-combined-ca.pem"]
            args += ["-v", f"{combined}:/tmp/onecli-combined-ca.pem:ro"]
        self.log.append(("info", "OneCLI gateway config applied"))

    def build_args(self, mounts: list[Mount], name: str, *, is_main: bool) -> list[str]:
        """``buildContainerArgs`` of this version."""
        args = ["run", "-i", "--rm", "--name", name, "-e", f"TZ={self.timezone}"]
        if self.new and not self.apple:
            self._onecli_args(args)
            args.append("--add-host=host.docker.internal:host-gateway")
        if self.uid not in (0, 1000):
            if self.apple and is_main:
                args += ["-e", f"RUN_UID={self.uid}", "-e", f"RUN_GID={self.gid}"]
            else:
                args += ["--user", f"{self.uid}:{self.gid}"]
            args += ["-e", "HOME=/home/node"]
        for m in mounts:
            if m.readonly:
                if self.apple:
                    args += ["--mount", f"type=bind,source={m.host},target={m.container},readonly"]
                else:
                    args += ["-v", f"{m.host}:{m.container}:ro"]
            else:
                args += ["-v", f"{m.host}:{m.container}"]
        args.append(self.image)
        return args

    def read_secrets(self) -> dict[str, str]:
        """v1.2.0's ``readSecrets``: the four keys from ``.env`` (not from the environment)."""
        found: dict[str, str] = {}
        env_file = self.root / ".env"
        if not env_file.exists():
            return found
        for line in env_file.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, _, value = line.partition("=")
            key, value = key.strip(), value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            if key in SECRET_KEYS and value:
                found[key] = value
        return found

    # ------------------------------------------------------------------ IPC, as group-queue.ts

    def send_message(self, folder: str, text: str) -> Path:
        """``sendMessage``: ``input/<ms>-<4 base36>.json`` written atomically."""
        folder_path = self.root / "data" / "ipc" / folder / "input"
        folder_path.mkdir(parents=True, exist_ok=True)
        tag = "".join(random.choices(string.ascii_lowercase + string.digits, k=4))
        path = folder_path / f"{int(time.time() * 1000)}-{tag}.json"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"type": "message", "text": text}, separators=(",", ":")))
        os.rename(tmp, path)
        return path

    def close_stdin(self, folder: str) -> None:
        """``closeStdin``: an empty ``input/_close``."""
        with contextlib.suppress(OSError):
            (self.root / "data" / "ipc" / folder / "input" / "_close").write_text("")

    # ------------------------------------------------------------------ runContainerAgent

    def container_name(self, folder: str) -> str:
        safe = re.sub(r"[^a-zA-Z0-9-]", "-", folder)
        return f"nanoclaw-{safe}-{int(time.time() * 1000)}"

    def hard_timeout_ms(self, group_timeout_ms: int | None = None) -> int:
        config = group_timeout_ms or self.container_timeout_ms
        return max(config, self.idle_timeout_ms + self.grace_floor_ms)

    def run_container_agent(
        self,
        folder: str,
        input: dict[str, Any],
        on_output: Callable[[dict[str, Any]], None] | None = None,
        *,
        on_process: Callable[[subprocess.Popen[bytes], str], None] | None = None,
        group_timeout_ms: int | None = None,
        additional: list[Mount] = (),
        name: str | None = None,
        wait_s: float = 300.0,
    ) -> Outcome:
        """``runContainerAgent(group, input, onProcess, onOutput)``; ``wait_s`` bounds the test."""
        started = time.monotonic()
        group_dir = self.root / "groups" / folder
        group_dir.mkdir(parents=True, exist_ok=True)
        is_main = bool(input.get("isMain"))
        mounts = self.build_mounts(folder, is_main, additional=list(additional))
        name = name or self.container_name(folder)
        args = self.build_args(mounts, name, is_main=is_main)
        logs_dir = group_dir / "logs"
        logs_dir.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(
            [self.bin, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=self.root,
            env=self.env,
        )
        if on_process is not None:
            on_process(proc, name)
        sent = dict(input)
        if not self.new:
            sent["secrets"] = self.read_secrets()
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        proc.stdin.write(json.dumps(sent, separators=(",", ":"), ensure_ascii=False).encode())
        proc.stdin.close()

        loop = threading.RLock()  # Node's event loop: one handler at a time
        state: dict[str, Any] = {
            "stdout": "",
            "stderr": "",
            "raw": bytearray(),
            "out_trunc": False,
            "err_trunc": False,
            "buffer": "",
            "session": None,
            "had_output": False,
            "timed_out": False,
            "outputs": [],
            "parse_failures": 0,
            "stderr_lines": [],
            "stops": [],
            "sigkilled": False,
            "first": None,
        }
        timeout_ms = self.hard_timeout_ms(group_timeout_ms)
        timer: list[threading.Timer | None] = [None]
        stoppers: list[threading.Thread] = []

        def kill_on_timeout() -> None:
            with loop:
                state["timed_out"] = True
                self.log.append(("error", "Container timeout, stopping gracefully"))
                if self.new:  # v1.2.53 and the apple-container branch: synchronous
                    t0 = time.monotonic()
                    try:
                        # execSync without a timeout; bounded here only so a test cannot hang.
                        self.stop_container(name, timeout=120)
                        state["stops"].append(("stop", 0, time.monotonic() - t0))
                    except (
                        subprocess.CalledProcessError,
                        ValueError,
                        subprocess.TimeoutExpired,
                    ) as exc:
                        code = getattr(exc, "returncode", None)
                        state["stops"].append(("stop", code, time.monotonic() - t0))
                        self.log.append(("warn", "Graceful stop failed, force killing"))
                        state["sigkilled"] = True
                        proc.kill()
                    return

            def stop_async() -> None:
                t0 = time.monotonic()
                try:
                    self.stop_container(name, timeout=15)
                    state["stops"].append(("stop", 0, time.monotonic() - t0))
                except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                    code = getattr(exc, "returncode", None)
                    state["stops"].append(("stop", code, time.monotonic() - t0))
                    with loop:
                        self.log.append(("warn", "Graceful stop failed, force killing"))
                        state["sigkilled"] = True
                        proc.kill()

            stopper = threading.Thread(target=stop_async, daemon=True)
            stoppers.append(stopper)
            stopper.start()

        def reset_timeout() -> None:
            if timer[0] is not None:
                timer[0].cancel()
            timer[0] = threading.Timer(timeout_ms / 1000, kill_on_timeout)
            timer[0].daemon = True
            timer[0].start()

        def on_stdout(data: bytes) -> None:
            chunk = data.decode("utf-8", errors="replace")
            with loop:
                state["raw"] += data
                if not state["out_trunc"]:
                    remaining = self.max_output - js_length(state["stdout"])
                    if js_length(chunk) > remaining:
                        state["stdout"] += js_slice(chunk, remaining)
                        state["out_trunc"] = True
                        self.log.append(("warn", "Container stdout truncated due to size limit"))
                    else:
                        state["stdout"] += chunk
                state["buffer"] += chunk
                while (start := state["buffer"].find(OUTPUT_START)) != -1:
                    end = state["buffer"].find(OUTPUT_END, start)
                    if end == -1:
                        break
                    text = state["buffer"][start + len(OUTPUT_START) : end].strip()
                    state["buffer"] = state["buffer"][end + len(OUTPUT_END) :]
                    try:
                        parsed = json.loads(text)
                    except ValueError:
                        state["parse_failures"] += 1
                        self.log.append(("warn", "Failed to parse streamed output chunk"))
                        continue
                    if isinstance(parsed, dict) and parsed.get("newSessionId"):
                        state["session"] = parsed["newSessionId"]
                    state["had_output"] = True
                    if state["first"] is None:
                        state["first"] = time.monotonic() - started
                    reset_timeout()
                    state["outputs"].append(parsed)
                    if on_output is not None:
                        on_output(parsed)

        def on_stderr(data: bytes) -> None:
            chunk = data.decode("utf-8", errors="replace")
            with loop:
                state["stderr_lines"] += [line for line in chunk.strip().split("\n") if line]
                if state["err_trunc"]:
                    return
                remaining = self.max_output - js_length(state["stderr"])
                if js_length(chunk) > remaining:
                    state["stderr"] += js_slice(chunk, remaining)
                    state["err_trunc"] = True
                    self.log.append(("warn", "Container stderr truncated due to size limit"))
                else:
                    state["stderr"] += chunk

        def pump(stream: Any, handle: Callable[[bytes], None]) -> None:
            fd = stream.fileno()
            while data := os.read(fd, max(1, self.read_size())):
                handle(data)

        readers = [
            threading.Thread(target=pump, args=(proc.stdout, on_stdout), daemon=True),
            threading.Thread(target=pump, args=(proc.stderr, on_stderr), daemon=True),
        ]
        reset_timeout()
        for reader in readers:
            reader.start()
        try:
            code = proc.wait(timeout=wait_s)
            for reader in readers:
                reader.join(timeout=wait_s)
                if reader.is_alive():
                    raise TimeoutError("the run exited but a pipe stayed open (close never comes)")
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise TimeoutError(f"the run did not end within {wait_s} s") from None
        finally:
            if timer[0] is not None:
                timer[0].cancel()
        with loop:
            outcome = self._close(folder, input, name, args, mounts, code, started, state)
        # v1.2.0's exec('stop') callback may come after 'close'; the outcome records it either way.
        for stopper in stoppers:
            stopper.join(timeout=30)
        return outcome

    def _close(
        self,
        folder: str,
        input: dict[str, Any],
        name: str,
        args: list[str],
        mounts: list[Mount],
        code: int,
        started: float,
        state: dict[str, Any],
    ) -> Outcome:
        """The ``close`` handler: the log file, then the result."""
        js_code: int | None = None if code < 0 else code  # a signal death gives code null
        duration = int((time.monotonic() - started) * 1000)
        logs_dir = self.root / "groups" / folder / "logs"
        stamp = iso_now().replace(":", "-").replace(".", "-")
        log_file = logs_dir / f"container-{stamp}.log"
        common = dict(
            new_session_id=state["session"],
            code=js_code,
            timed_out=state["timed_out"],
            had_streaming_output=state["had_output"],
            outputs=state["outputs"],
            parse_failures=state["parse_failures"],
            stdout=state["stdout"],
            stderr=state["stderr"],
            stdout_raw=bytes(state["raw"]),
            stdout_truncated=state["out_trunc"],
            stderr_truncated=state["err_trunc"],
            stderr_lines=state["stderr_lines"],
            duration_ms=duration,
            args=args,
            name=name,
            log_file=log_file,
            stop_calls=state["stops"],
            sigkilled=state["sigkilled"],
            first_output_s=state["first"],
        )
        if state["timed_out"]:
            log_file.write_text(
                "\n".join(
                    [
                        "=== Container Run Log (TIMEOUT) ===",
                        f"Timestamp: {iso_now()}",
                        f"Group: {folder}",
                        f"Container: {name}",
                        f"Duration: {duration}ms",
                        f"Exit Code: {'null' if js_code is None else js_code}",
                        f"Had Streaming Output: {'true' if state['had_output'] else 'false'}",
                    ]
                )
            )
            if state["had_output"]:
                return Outcome(status="success", result=None, error=None, **common)
            config = self.container_timeout_ms
            return Outcome(
                status="error",
                result=None,
                error=f"Container timed out after {config}ms",
                **{**common, "new_session_id": None},
            )
        lines = [
            "=== Container Run Log ===",
            f"Timestamp: {iso_now()}",
            f"Group: {folder}",
            f"IsMain: {'true' if input.get('isMain') else 'false'}",
            f"Duration: {duration}ms",
            f"Exit Code: {'null' if js_code is None else js_code}",
            f"Stdout Truncated: {'true' if state['out_trunc'] else 'false'}",
            f"Stderr Truncated: {'true' if state['err_trunc'] else 'false'}",
            "",
        ]
        summary = [
            "=== Input Summary ===",
            f"Prompt length: {js_length(input.get('prompt', ''))} chars",
            f"Session ID: {input.get('sessionId') or 'new'}",
            "",
        ]
        verbose = self.env.get("LOG_LEVEL") in ("debug", "trace")
        if verbose or js_code != 0:
            # v1.2.0: the whole input; v1.2.53: the whole input only when verbose.
            if verbose or not self.new:
                lines += ["=== Input ===", json.dumps(input, indent=2, ensure_ascii=False), ""]
            else:
                lines += summary
            lines += [
                "=== Container Args ===",
                " ".join(args),
                "",
                "=== Mounts ===",
                *[f"{m.host} -> {m.container}{' (ro)' if m.readonly else ''}" for m in mounts],
                "",
                f"=== Stderr{' (TRUNCATED)' if state['err_trunc'] else ''} ===",
                state["stderr"],
                "",
                f"=== Stdout{' (TRUNCATED)' if state['out_trunc'] else ''} ===",
                state["stdout"],
            ]
        else:
            lines += [
                *summary,
                "=== Mounts ===",
                *[f"{m.container}{' (ro)' if m.readonly else ''}" for m in mounts],
                "",
            ]
        log_file.write_text("\n".join(lines))
        if js_code != 0:
            return Outcome(
                status="error",
                result=None,
                error=f"Container exited with code {'null' if js_code is None else js_code}: "
                f"{state['stderr'][-200:]}",
                **common,
            )
        return Outcome(status="success", result=None, error=None, **common)

    # ------------------------------------------------------------------ the callers

    def process_messages(
        self,
        folder: str,
        prompt: str,
        *,
        is_main: bool = False,
        session_id: str | None = None,
        follow_ups: list[tuple[int, str]] = (),
        **kwargs: Any,
    ) -> tuple[Outcome, list[str]]:
        """``processGroupMessages``: the results sent to the chat; the idle timer writes
        ``_close`` ``IDLE_TIMEOUT`` after the last result; ``follow_ups`` are (blocks seen,
        text): messages a chat sends once that many blocks came, piped in through IPC as
        ``queue.sendMessage`` does."""
        sent: list[str] = []
        idle: list[threading.Timer | None] = [None]
        pending = sorted(follow_ups)
        seen = [0]

        def reset_idle() -> None:
            if idle[0] is not None:
                idle[0].cancel()
            idle[0] = threading.Timer(self.idle_timeout_ms / 1000, self.close_stdin, args=(folder,))
            idle[0].daemon = True
            idle[0].start()

        def on_output(block: dict[str, Any]) -> None:
            result = block.get("result")
            seen[0] += 1
            if result:
                text = re.sub(r"<internal>[\s\S]*?</internal>", "", result).strip()
                if text:
                    sent.append(text)
                reset_idle()
            while pending and pending[0][0] <= seen[0]:
                self.send_message(folder, pending.pop(0)[1])

        inp: dict[str, Any] = {"prompt": prompt}
        if session_id:
            inp["sessionId"] = session_id
        inp.update(
            groupFolder=folder, chatJid=f"{folder}@g.us", isMain=is_main, assistantName="Andy"
        )
        try:
            outcome = self.run_container_agent(folder, inp, on_output, **kwargs)
        finally:
            if idle[0] is not None:
                idle[0].cancel()
        return outcome, sent

    def run_task(
        self,
        folder: str,
        prompt: str,
        *,
        script: str | None = None,
        close_delay_s: float = 10.0,
        **kwargs: Any,
    ) -> tuple[Outcome, list[str]]:
        """``runTask``: ``isScheduledTask``, v1.2.53's ``script``; ``_close`` ``close_delay_s``
        (NanoClaw: 10 s) after a result (v1.2.53: after any success block)."""
        sent: list[str] = []
        closing: list[threading.Timer] = []

        def schedule_close() -> None:
            if not closing:
                timer = threading.Timer(close_delay_s, self.close_stdin, args=(folder,))
                timer.daemon = True
                timer.start()
                closing.append(timer)

        def on_output(block: dict[str, Any]) -> None:
            if block.get("result"):
                sent.append(block["result"])
                schedule_close()
            elif self.new and block.get("status") == "success":
                schedule_close()

        inp: dict[str, Any] = {
            "prompt": prompt,
            "groupFolder": folder,
            "chatJid": f"{folder}@g.us",
            "isMain": False,
            "isScheduledTask": True,
            "assistantName": "Andy",
        }
        if script is not None and self.new:
            inp["script"] = script
        try:
            outcome = self.run_container_agent(folder, inp, on_output, **kwargs)
        finally:
            for timer in closing:
                timer.cancel()
        return outcome, sent


def kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """End a ``run`` process a test left behind."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGKILL)
