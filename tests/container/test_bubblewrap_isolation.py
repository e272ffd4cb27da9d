"""What a bubblewrap sandbox cannot see or do, checked for real from inside it."""

from __future__ import annotations

import os
import stat
import time

import pytest
from nanoclaw_runtime_container.engines import bubblewrap

import nanoclaw_runtimes_core as nc

from .conftest import HOST_CANARY
from .helpers import (
    SANDBOX_UID,
    TestProject,
    cmdline,
    descendants,
    environ_of,
    in_thread,
    live_pids,
    run,
    uid_of,
    wait_until,
)

AS_ROOT = os.geteuid() == 0
OWNER = SANDBOX_UID if AS_ROOT else os.getuid()


def pid_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def host_mounts(project: TestProject, folder: str) -> dict[str, str]:
    """Mount point -> options of every mount inside the sandbox backed by a host file system."""
    result, sink = project.sh(folder, "cat /proc/self/mountinfo")
    assert result.exit_code == 0, sink.err
    found = {}
    for line in sink.text.splitlines():
        left, _, right = line.partition(" - ")
        fields, fstype = left.split(), right.split()[0]
        if fstype not in ("tmpfs", "proc", "devpts", "mqueue") and not fields[4].startswith("/dev"):
            found[fields[4]] = fields[5]
    return found


def test_only_the_contract_mounts_are_writable(project: TestProject) -> None:
    mounts = host_mounts(project, "dev")
    writable = {point for point, opts in mounts.items() if "rw" in opts.split(",")}
    assert writable == {"/workspace/group", "/workspace/ipc", "/home/node/.claude"}
    assert mounts["/workspace/global"].split(",")[0] == "ro"
    assert "/workspace/project" not in mounts
    assert all(opts.split(",")[0] == "ro" for p, opts in mounts.items() if p.startswith("/usr"))


def test_read_only_places_refuse_writes(project: TestProject) -> None:
    places = "/ /usr /etc /workspace/global /opt/nanoclaw"
    result, sink = project.sh(
        "dev",
        f"for p in {places}; do touch $p/probe 2>/dev/null && echo WRITABLE $p; done; "
        "echo ok > /workspace/group/w && echo ok > /tmp/w && echo ok > /home/node/w && echo done",
    )
    assert result.exit_code == 0, sink.err
    assert "WRITABLE" not in sink.text
    assert sink.text.strip() == "done"


def test_main_sees_the_project_read_only_with_secrets_masked(project: TestProject) -> None:
    (project.root / ".env").write_text("ANTHROPIC_API_KEY=sk-ant-masked-0001\n")
    (project.root / "src").mkdir()
    (project.root / "src" / "app.py").write_text("print('visible')\n")
    (project.root / "src" / "credentials.json").write_text('{"token": "masked-0002"}')
    (project.root / "id_rsa").write_text("PRIVATE KEY masked-0003")
    (project.root / ".ssh").mkdir()
    (project.root / ".ssh" / "known").write_text("masked-0004")
    result, sink = project.sh(
        "main",
        "cd /workspace/project; cat src/app.py; "
        "for f in .env src/credentials.json id_rsa; do printf '%s=%s;' $f \"$(cat $f)\"; done; "
        "echo; ls -A .ssh | wc -l; touch probe 2>/dev/null && echo WRITABLE; "
        "echo x > .env 2>/dev/null && echo ENV-WRITABLE; echo end",
    )
    assert result.exit_code == 0, sink.err
    lines = sink.text.splitlines()
    assert lines[0] == "print('visible')"
    assert lines[1] == ".env=;src/credentials.json=;id_rsa=;"
    assert lines[2] == "0"
    assert lines[3:] == ["end"]
    assert "masked-000" not in sink.text
    assert (project.root / ".env").read_text() == "ANTHROPIC_API_KEY=sk-ant-masked-0001\n"


def test_a_masked_link_is_masked_where_it_leads(project: TestProject) -> None:
    (project.root / "conf").mkdir()
    (project.root / "conf" / "real").write_text("secret-through-link-0005")
    (project.root / "id_rsa").symlink_to("conf/real")
    result, sink = project.sh(
        "main", "cat /workspace/project/id_rsa; cat /workspace/project/conf/real; echo end"
    )
    assert result.exit_code == 0, sink.err
    assert sink.text == "end\n"


def test_non_main_groups_see_no_project_and_no_other_group(project: TestProject) -> None:
    (project.root / "groups/other/marker-other-group").write_text("other")
    (project.root / "groups/main/marker-main-group").write_text("main")
    _, sink = project.sh(
        "dev",
        "ls -A /workspace; ls -A /home/node; ls -d /root /workspace/project 2>&1; "
        "find / -xdev -name 'marker-*' 2>/dev/null; find /workspace /home /tmp -name 'marker-*'",
    )
    assert "marker-" not in sink.text, sink.text
    lines = sink.text.splitlines()
    assert lines[0:4] == ["global", "group", "ipc", ".claude"]
    assert "No such file" in lines[4] and "No such file" in lines[5]


def test_the_group_config_is_shown_read_only(project: TestProject) -> None:
    project.config("dev", cpus=1)
    result, sink = project.sh(
        "dev",
        "cat config.json; echo; echo '{}' > config.json 2>/dev/null && echo WRITTEN; "
        "rm config.json 2>/dev/null && echo REMOVED; echo end",
    )
    assert result.exit_code == 0, sink.err
    assert sink.text.splitlines() == ['{"containerConfig": {"cpus": 1}}', "end"]
    assert (project.root / "groups/dev/config.json").read_text() == (
        '{"containerConfig": {"cpus": 1}}'
    )


def test_a_config_link_is_refused_before_any_sandbox_starts(project: TestProject) -> None:
    project.config("dev", cpus=1)
    config = project.root / "groups/dev/config.json"
    config.unlink()
    config.symlink_to(project.root.parent / "planted-by-the-agent")
    with pytest.raises(nc.ConfigError, match="symbolic link"):
        project.sh("dev", "true")


def test_a_mask_over_a_planted_link_makes_no_file_on_the_host(project: TestProject) -> None:
    workspace = project.root / "groups/dev"
    target = project.root.parent / "planted-by-the-agent"
    (workspace / "config.json").symlink_to(target)
    shown = project.root.parent / "trusted.json"
    shown.write_text("{}")
    sandbox = bubblewrap.Sandbox(
        mounts=(nc.Mount(host_path=workspace, container_path="/w", readonly=False, kind="group"),),
        masks=(nc.Mask(container_path="/w/config.json", source=shown, reason="test"),),
        command=("sh", "-c", "cat /w/config.json 2>&1; echo ran"),
        env={"PATH": nc.SANDBOX_PATH},
        hostname="h",
        network=False,
        rootfs=None,
    )
    result, sink = run(sandbox)
    assert result.exit_code == 0, sink.err
    assert sink.text.endswith("ran\n")
    assert not os.path.lexists(target)


def test_files_the_agent_makes_belong_to_the_sandbox_user(project: TestProject) -> None:
    result, sink = project.sh(
        "dev",
        "echo data > made && mkdir dir && cp /bin/true suid && chmod 4755 suid && "
        "mkdir -p /home/node/.claude/x && echo ok",
    )
    assert result.exit_code == 0, sink.err
    group = project.root / "groups/dev"
    for path in (group / "made", group / "dir", group / "suid"):
        st = os.lstat(path)
        assert (st.st_uid, st.st_gid) == (OWNER, OWNER if AS_ROOT else os.getgid()), path
    suid = os.lstat(group / "suid")
    assert suid.st_mode & stat.S_ISUID and suid.st_uid == OWNER != 0
    assert os.lstat(project.root / "data/sessions/dev/.claude/x").st_uid == OWNER


def test_device_nodes_cannot_be_made(project: TestProject) -> None:
    result, sink = project.sh(
        "dev", "mknod blk b 8 0 2>&1 || echo refused; mknod chr c 1 3 2>&1 || echo refused"
    )
    assert result.exit_code == 0, sink.err
    assert sink.text.count("refused") == 2
    assert not os.path.lexists(project.root / "groups/dev/blk")
    assert not os.path.lexists(project.root / "groups/dev/chr")


def test_no_capabilities_and_no_nested_user_namespaces(project: TestProject) -> None:
    result, sink = project.sh(
        "dev",
        "grep -E '^Cap(Eff|Prm|Bnd)' /proc/self/status; unshare -U true; echo rc=$?",
    )
    assert result.exit_code == 0, sink.err
    caps = dict(line.split(":\t") for line in sink.text.splitlines()[:3])
    assert set(caps.values()) == {"0000000000000000"}, caps
    assert sink.text.splitlines()[-1] != "rc=0", "a nested user namespace was created"
    assert "unshare failed" in sink.err


def test_the_sandbox_runs_as_the_sandbox_user_on_the_host(project: TestProject) -> None:
    runner, box = in_thread(lambda: project.sh("dev", "sleep 1.5"))
    sleeper = wait_until(lambda: [p for p in descendants() if cmdline(p) == [b"sleep", b"1.5"]])
    uids = {uid_of(p) for p in sleeper}
    bwrap_uids = {
        uid_of(p)
        for p in descendants()
        if cmdline(p)[:1] == [b"bwrap"] or (cmdline(p)[:1] and cmdline(p)[0].endswith(b"/bwrap"))
    }
    runner.join(30)
    result, sink = box[0]  # type: ignore[misc]
    assert result.exit_code == 0, sink.err
    assert uids == {OWNER}
    # bwrap itself runs as the sandbox user too, except a staging bwrap, which is root's.
    assert OWNER in bwrap_uids and bwrap_uids <= {OWNER, 0}


def test_group_env_reaches_the_sandbox_and_never_the_host_process(project: TestProject) -> None:
    value = "/nonexistent/evil-preload.so"
    project.config("dev", env=["LD_PRELOAD=" + value, "NC_GROUP_VALUE=group-secret-0006"])
    runner, box = in_thread(
        lambda: project.sh("dev", 'sleep 2; echo "$LD_PRELOAD $NC_GROUP_VALUE"')
    )
    bwraps = wait_until(
        lambda: [p for p in descendants() if cmdline(p)[:1] and cmdline(p)[0].endswith(b"bwrap")]
    )
    environs = [environ_of(p) for p in bwraps]
    runner.join(30)
    result, sink = box[0]  # type: ignore[misc]
    assert result.exit_code == 0, sink.err
    assert sink.text == f"{value} group-secret-0006\n"
    for env in environs:
        assert "LD_PRELOAD" not in env and "NC_GROUP_VALUE" not in env, env
        assert set(env) <= {"PATH", "LANG", "PWD"}, env  # PWD: set by the limits' sh


def test_secret_values_never_reach_a_command_line(project: TestProject) -> None:
    secret, env_secret = "sk-input-secret-0007", "env-secret-value-0008"
    project.config(
        "dev",
        env=[f"NC_ENV_SECRET={env_secret}"],
        agentCommand=["sh", "-c", "cat > /dev/null; sleep 2"],
    )
    runner, box = in_thread(lambda: project.agent("dev", secrets={"API_KEY": secret}))
    seen: list[bytes] = []
    deadline = time.monotonic() + 1.8
    wait_until(lambda: any(b"sleep" in b" ".join(cmdline(p)) for p in descendants()))
    own_ns = os.readlink("/proc/self/ns/pid")
    while time.monotonic() < deadline:
        for pid in live_pids():
            seen.append(b"\0".join(cmdline(pid)))
            # Host-side processes (the sandbox's own environment holds the value, rightly).
            if pid != os.getpid() and pid in descendants() and pid_ns(pid) == own_ns:
                seen.append(repr(environ_of(pid)).encode())
    runner.join(30)
    result, sink = box[0]  # type: ignore[misc]
    assert result.exit_code == 0, sink.err
    assert seen
    joined = b"\n".join(seen)
    assert secret.encode() not in joined
    assert env_secret.encode() not in joined


def test_the_host_environment_is_not_passed_in(project: TestProject) -> None:
    assert HOST_CANARY in project.environ
    result, sink = project.sh("dev", "env")
    assert result.exit_code == 0, sink.err
    names = {line.split("=", 1)[0] for line in sink.text.splitlines()}
    assert HOST_CANARY not in names
    assert names <= {"HOME", "PATH", "LANG", "USER", "LOGNAME", "TZ", "PWD", "SHLVL", "_"}


def test_no_network_but_loopback(project: TestProject) -> None:
    result, sink = project.sh("dev", "tail -n +3 /proc/net/dev | cut -d: -f1")
    assert result.exit_code == 0, sink.err
    assert [line.strip() for line in sink.text.splitlines()] == ["lo"]


def test_network_is_the_hosts_when_turned_on(project: TestProject) -> None:
    project.config("dev", network=True)
    result, sink = project.sh("dev", "tail -n +3 /proc/net/dev | cut -d: -f1")
    assert result.exit_code == 0, sink.err
    with open("/proc/net/dev") as fh:
        host = sorted(line.split(":")[0].strip() for line in fh.readlines()[2:])
    assert sorted(line.strip() for line in sink.text.splitlines()) == host


def test_host_processes_are_invisible(project: TestProject) -> None:
    result, sink = project.sh("dev", "ls /proc | grep -E '^[0-9]+$'; hostname")
    assert result.exit_code == 0, sink.err
    *pids, hostname = sink.text.split()
    assert all(int(p) < 10 for p in pids), pids
    assert str(os.getpid()) not in pids or os.getpid() < 10
    assert hostname.startswith("nc-dev-")


def test_sources_out_of_the_sandbox_users_reach_are_staged(project: TestProject) -> None:
    if not AS_ROOT:
        pytest.skip("only root's sandbox user can be kept out of a folder")
    secret_parent = project.root.parent
    assert secret_parent.stat().st_mode & 0o077 == 0  # pytest's folders: 0700, root's
    sandbox = bubblewrap.Sandbox(
        mounts=(
            nc.Mount(host_path=project.root / "groups/dev", container_path="/w", readonly=False),
        ),
        masks=(),
        command=("true",),
        env={},
        hostname="h",
        network=False,
        rootfs=None,
    )
    user = nc.SandboxUser(uid=SANDBOX_UID, gid=SANDBOX_UID, source="default")
    assert bubblewrap.needs_staging(sandbox, user)
    result, sink = project.sh("dev", "echo reached > here && cat here")
    assert result.exit_code == 0, sink.err
    assert sink.text == "reached\n"


def test_reachable_sources_are_bound_directly(open_project: TestProject) -> None:
    root = open_project.root
    result, sink = open_project.sh("main", "ls /workspace/project; echo x > /workspace/group/f")
    assert result.exit_code == 0, sink.err
    assert sink.text.split() == ["data", "groups"]
    if AS_ROOT:
        assert os.lstat(root / "groups/main/f").st_uid == SANDBOX_UID
        sandbox = bubblewrap.Sandbox(
            mounts=(nc.Mount(host_path=root / "groups/main", container_path="/w", readonly=False),),
            masks=(),
            command=("true",),
            env={},
            hostname="h",
            network=False,
            rootfs=None,
        )
        user = nc.SandboxUser(uid=SANDBOX_UID, gid=SANDBOX_UID, source="default")
        assert not bubblewrap.needs_staging(sandbox, user)
