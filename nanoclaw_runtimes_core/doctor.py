"""``doctor``: what this host offers and what the project asks for, without changing anything."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .errors import UserError
from .limits import plan_limits
from .models import Limits
from .settings.core import CoreSettings
from .settings.fields import fields_of
from .settings.resolve import Resolved, resolve
from .settings.values import to_json

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .dispatch import Runtimes


def _settings_json(cls: type, sources: Any) -> dict[str, Any]:
    found: Resolved[Any] = resolve(cls, sources)
    out = {}
    for f in fields_of(cls):
        value = getattr(found.settings, f.name, None) if found.settings is not None else None
        out[f.name] = {
            "value": to_json(value),
            "from": str(found.origins.get(f.name, "default")),
            "env": f.info.env,
            "key": f.info.key,
        }
    return out


def report(rt: Runtimes) -> dict[str, Any]:
    """Everything ``doctor`` says, as data; ``lines`` is the text version."""
    lines: list[str] = []
    failures = 0
    data: dict[str, Any] = {"root": str(rt.project.root)}
    lines.append(f"project root: {rt.project.root}")

    folder = rt.project.data_dir
    target = folder if folder.exists() else rt.project.root
    writable = os.access(target, os.W_OK)
    data["dataFolder"] = {"path": str(folder), "writable": writable}
    if writable:
        lines.append(f"ok   data folder {folder} can be written")
    else:
        failures += 1
        lines.append(
            f"FAIL data folder {folder} cannot be written by uid {os.getuid()}; "
            "fix its owner or pass --root"
        )

    try:
        core = rt.planner.core_settings()
    except UserError as exc:
        failures += 1
        lines += [f"FAIL {line}" for line in str(exc).splitlines()]
        core = CoreSettings()
    sources = rt.planner.sources()
    data["settings"] = {"core": _settings_json(CoreSettings, sources)}

    probe = plan_limits(
        "doctor-probe", Limits(cpus=1, memory_mb=64, pids=64), dedicated_user=os.geteuid() == 0
    )
    probe.kill_and_remove()
    data["limits"] = {
        "enforced": probe.enforced,
        "unenforced": probe.unenforced,
        "mode": core.limits,
    }
    if probe.unenforced:
        lines.append(
            f"--   limits: {', '.join(probe.unenforced)} not enforceable here "
            "for host-process sandboxes"
        )
    else:
        lines.append("ok   limits: cpus, memory and processes can be enforced (cgroups)")

    resident = _resident(rt.environ)
    data["resident"] = resident
    lines.append(resident["line"])
    failures += resident["line"].startswith("FAIL")

    runtimes: list[dict[str, Any]] = []
    for info in rt.registry.infos():
        row: dict[str, Any] = {
            "name": info.name,
            "distribution": info.distribution,
            "version": info.version,
        }
        if info.error:
            failures += 1
            row["error"] = info.error
            lines.append(f"FAIL {info.name}: {info.error}")
            runtimes.append(row)
            continue
        try:
            status = rt.engine_status(info.name)
            if info.settings_class is not None:
                data["settings"][info.name] = _settings_json(info.settings_class, sources)
        except UserError as exc:
            failures += 1
            row["error"] = str(exc)
            lines.append(f"FAIL {info.name}: {exc}")
            runtimes.append(row)
            continue
        if status is not None:
            row.update(
                engine=status.engine,
                available=status.available,
                version=status.version,
                detail=status.detail,
                fix=status.fix,
                isolation=sorted(status.isolation),
            )
            if status.available:
                version = f" {status.version}" if status.version else ""
                iso = (
                    f"; isolates: {', '.join(sorted(status.isolation))}" if status.isolation else ""
                )
                lines.append(
                    f"ok   {info.name}: engine {status.engine}{version}: {status.detail}{iso}"
                )
            else:
                lines.append(
                    f"--   {info.name}: engine {status.engine} not available: {status.detail}"
                )
                if status.fix:
                    lines.append(f"     fix: {status.fix}")
        runtimes.append(row)
    data["runtimes"] = runtimes

    try:
        bases = [r for r in rt.stats() if r.kind == "base"]
    except UserError:
        bases = []
    for base in bases:
        lines.append(
            f"ok   {base.runtime} base {base.path}: {base.apparent_mb:,.0f} MB apparent, "
            f"{base.allocated_mb:,.0f} MB allocated"
        )
    data["bases"] = [
        {"runtime": r.runtime, "path": r.path, "allocatedMB": r.allocated_mb} for r in bases
    ]

    groups: dict[str, Any] = {}
    status_of = {r["name"]: r for r in runtimes}
    for group, problems in rt.check_config().items():
        if problems:
            failures += 1
            groups[group] = {"ok": False, "problems": problems}
            lines.append(f"FAIL group {group}:")
            lines += [f"     {p}" for p in problems]
            continue
        runtime = rt.plan(group).runtime
        engine = status_of.get(runtime, {})
        if engine.get("available") is False:
            failures += 1
            groups[group] = {
                "ok": False,
                "runtime": runtime,
                "problems": [engine.get("detail", "")],
            }
            lines.append(
                f"FAIL group {group} runs on {runtime}, "
                f"whose engine is not available: {engine.get('detail')}"
            )
            if engine.get("fix"):
                lines.append(f"     fix: {engine['fix']}")
        else:
            groups[group] = {"ok": True, "runtime": runtime}
            lines.append(f"ok   group {group}: runtime {runtime}")
    data["groups"] = groups
    data["failures"] = failures
    data["lines"] = lines
    return data


def _resident(environ: Mapping[str, str]) -> dict[str, Any]:
    """Whether runs go to a resident helper (``NANOCLAW_RESIDENT``), and the live ones."""
    from .resident import control
    from .resident.client import idle_ms
    from .resident.wire import ENV

    try:
        idle = idle_ms(environ.get(ENV, ""))
    except ValueError as exc:
        return {"idleMs": None, "helpers": [], "line": f"FAIL {exc}"}
    try:
        live = [h.pid for h in control.helpers()]
    except (OSError, ValueError):
        live = []
    if not idle:
        line = f"--   resident helper: off ({ENV} unset or 0; see docs/resident.md)"
    else:
        line = (
            f"ok   resident helper: on, stays {idle} ms after its last run; "
            f"{len(live)} running (pids {', '.join(map(str, live)) or 'none yet'})"
        )
    return {"idleMs": idle or None, "helpers": live, "line": line}
