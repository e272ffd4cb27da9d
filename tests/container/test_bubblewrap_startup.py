"""What a ``nanoclaw-runtimes run`` on bubblewrap costs: the modules it loads and the
bwraps it starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from nanoclaw_runtime_container.engines import bubblewrap

import nanoclaw_runtimes_core as nc

from .helpers import SANDBOX_UID, TestProject

AS_ROOT = os.geteuid() == 0

HEAVY = (
    "attr",
    "attrs",
    "cattrs",
    "pluggy",
    "inspect",
    "ast",
    "argparse",
    "shutil",
    "datetime",
    "hashlib",
    "uuid",
    "platform",
    "tempfile",
    "difflib",
    "shlex",
    "importlib.metadata",
    "nanoclaw_runtime_vibe",
    "nanoclaw_runtime_tart",
    "nanoclaw_runtime_container.engines.docker",
    "nanoclaw_runtime_container.engines.apple",
)
"""Modules a bubblewrap run has no use for: no other runtime, no other engine (probed or not)."""

PROBE = """
import sys
from nanoclaw_runtimes_core.cli import main
code = main(sys.argv[1:])
print("status", code, "loaded", sorted(m for m in {heavy!r} if m in sys.modules))
"""

INPUT = '{"prompt": "hi", "groupFolder": "dev", "chatJid": "x@g.us", "isMain": false}'


def _cli_modules(
    project: TestProject, *words: str, stdin: str = "", env: dict[str, str] | None = None
) -> str:
    """The last line the probe prints after ``nanoclaw-runtimes --root ROOT WORDS...``."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), "--root", str(project.root), *words],
        env=project.environ if env is None else env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("agent_mode", [False, True])
def test_a_run_loads_only_what_it_needs(open_project: TestProject, agent_mode: bool) -> None:
    open_project.config("dev", runtime="container", engine="bubblewrap")
    _cli_modules(open_project, "run", "dev", "--", "true")  # fills the caches (entry points)
    if agent_mode:
        last = _cli_modules(open_project, "run", "dev", stdin=INPUT)
    else:
        last = _cli_modules(open_project, "run", "dev", "--", "true")
    assert last == "status 0 loaded []"


def test_auto_detection_loads_no_runtime_after_the_first_usable(
    open_project: TestProject,
) -> None:
    # Every installed runtime may load; nothing names one: container comes first, and works.
    env = {
        k: v
        for k, v in open_project.environ.items()
        if k not in ("CONTAINER_RUNTIME", "CONTAINER_ENGINE", "NANOCLAW_RUNTIMES_LOAD")
    }
    open_project.config("dev")
    _cli_modules(open_project, "run", "dev", "--", "true", env=env)
    assert _cli_modules(open_project, "run", "dev", "--", "true", env=env) == "status 0 loaded []"


def test_the_config_mask_is_passed_as_data_so_nothing_is_staged(
    open_project: TestProject, tmp_path: Path
) -> None:
    private = tmp_path / "run"
    private.mkdir(mode=0o700)
    source = private / "config.json"
    source.write_text('{"containerConfig": {}}')
    group = open_project.root / "groups/dev"
    sandbox = bubblewrap.Sandbox(
        mounts=(nc.Mount(host_path=group, container_path="/workspace/group", readonly=False),),
        masks=(nc.Mask(container_path="/workspace/group/config.json", source=source, reason="r"),),
        command=("true",),
        env={},
        hostname="h",
        network=False,
        rootfs=None,
    )
    contents = bubblewrap.mask_contents(sandbox)
    assert contents == {source: b'{"containerConfig": {}}'}
    user = nc.SandboxUser(uid=SANDBOX_UID, gid=SANDBOX_UID, source="default")
    assert not bubblewrap.needs_staging(sandbox, user, contents)
    if AS_ROOT:
        assert bubblewrap.needs_staging(sandbox, user)  # bound by its path, it would be


def test_a_mask_source_that_is_a_link_is_not_read(
    open_project: TestProject, tmp_path: Path
) -> None:
    target = tmp_path / "secret"
    target.write_text("host secret")
    link = tmp_path / "mask"
    link.symlink_to(target)
    sandbox = bubblewrap.Sandbox(
        mounts=(),
        masks=(nc.Mask(container_path="/workspace/group/x", source=link, reason="r"),),
        command=("true",),
        env={},
        hostname="h",
        network=False,
        rootfs=None,
    )
    assert bubblewrap.mask_contents(sandbox) == {}


def test_an_unstaged_run_still_shows_the_trusted_config_read_only(
    open_project: TestProject,
) -> None:
    open_project.config("dev", cpus=1)
    result, sink = open_project.sh(
        "dev",
        "cat config.json; echo; echo '{}' > config.json 2>/dev/null && echo WRITTEN; "
        "mount -o remount,rw,bind config.json 2>/dev/null && echo REMOUNTED; echo end",
    )
    assert result.exit_code == 0, sink.err
    assert sink.text.splitlines() == ['{"containerConfig": {"cpus": 1}}', "end"]
    assert (open_project.root / "groups/dev/config.json").read_text() == (
        '{"containerConfig": {"cpus": 1}}'
    )
