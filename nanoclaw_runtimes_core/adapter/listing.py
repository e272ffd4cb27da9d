"""``ps`` (docker) and ``ls`` (Apple ``container``): the runs in progress for this user.

``ps [-a] [-q] [--filter name=X]... [--format TEMPLATE]`` prints one line per run;
the template language is the part of docker's Go templates such listings use:
``{{.Names}}``-style fields, ``{{json .}}``, ``{{json .Field}}``, ``{{.Label "k"}}``,
and a ``table`` prefix for a header row. ``ls [-a] [-q] [--format json|table]``
prints Apple's listing; its JSON is the array NanoClaw reads (``status``,
``configuration.id``). Every run is ``--rm``, so ``-a`` lists the same runs.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .flags import AdapterError, Flag, parse
from .names import container_id

if TYPE_CHECKING:
    from ..runs import RunRecord

PS_FLAGS = (
    Flag(names=("-a", "--all"), dest="all"),
    Flag(names=("-q", "--quiet"), dest="quiet"),
    Flag(names=("-f", "--filter"), dest="filter", value=True),
    Flag(names=("--format",), dest="format", value=True),
    Flag(names=("--no-trunc",), dest="no_trunc"),
    Flag(names=("-s", "--size"), dest="size"),
)
LS_FLAGS = (
    Flag(names=("-a", "--all"), dest="all"),
    Flag(names=("-q", "--quiet"), dest="quiet"),
    Flag(names=("--format",), dest="format", value=True),
)
DEFAULT_FORMAT = (
    "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
)
HEADERS = {
    "ID": "CONTAINER ID",
    "Image": "IMAGE",
    "Command": "COMMAND",
    "CreatedAt": "CREATED AT",
    "RunningFor": "CREATED",
    "Ports": "PORTS",
    "State": "STATE",
    "Status": "STATUS",
    "Size": "SIZE",
    "Names": "NAMES",
    "Labels": "LABELS",
    "Mounts": "MOUNTS",
    "Networks": "NETWORKS",
    "LocalVolumes": "LOCAL VOLUMES",
}
FILTER_KEYS = ("name", "id", "status", "label")
APPLE_EPOCH = 978307200.0
"""2001-01-01T00:00:00Z: Apple's ``container`` (up to 0.12) counts dates from it."""
_ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}")


def _image(record: RunRecord) -> str:
    return f"nanoclaw-runtimes/{record.runtime}"


def _labels(record: RunRecord) -> dict[str, str]:
    return {
        "org.nanoclaw.group": record.group,
        "org.nanoclaw.root": record.root,
        "org.nanoclaw.runtime": record.runtime,
    }


def _ago(seconds: float) -> str:
    """docker's human duration (``3 seconds``, ``About a minute``, ``2 hours``)."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = round(s / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(s / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    return f"{round(s / 86400)} days"


def fields(record: RunRecord, now: float | None = None) -> dict[str, str]:
    """The fields ``ps --format`` knows, as docker's strings."""
    age = (time.time() if now is None else now) - record.started
    created = time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(record.started))
    return {
        "Command": '"nanoclaw agent"',
        "CreatedAt": created,
        "ID": container_id(record.name, record.started),
        "Image": _image(record),
        "Labels": ",".join(f"{k}={v}" for k, v in _labels(record).items()),
        "LocalVolumes": "0",
        "Mounts": "",
        "Names": record.name,
        "Networks": "",
        "Ports": "",
        "RunningFor": f"{_ago(age)} ago",
        "Size": "0B",
        "State": "running",
        "Status": f"Up {_ago(age)}",
    }


def render(
    template: str,
    rows: Sequence[dict[str, str]],
    labels: Sequence[dict[str, str]],
    known: Sequence[str] = tuple(HEADERS),
) -> str:
    """Apply a docker ``--format`` template to each row (``table`` adds a header row); the
    template is checked against the ``known`` fields even when there is no row."""
    template = template.replace("\\t", "\t").replace("\\n", "\n")
    table = template.startswith("table")
    if table:
        template = template[len("table") :].lstrip(" ")
    _apply(template, dict.fromkeys(known, ""), {})
    lines = [_apply(template, row, label) for row, label in zip(rows, labels, strict=True)]
    if not table:
        return "".join(f"{line}\n" for line in lines)
    header = _ACTION.sub(
        lambda m: HEADERS.get(m.group(1).lstrip("."), m.group(1).upper()), template
    )
    return _align([header, *lines])


def _apply(template: str, row: dict[str, str], labels: dict[str, str]) -> str:
    def action(match: re.Match[str]) -> str:
        text = match.group(1)
        if text == "json .":
            return json.dumps(row, separators=(",", ":"), sort_keys=True)
        if text.startswith("json ."):
            return json.dumps(_field(row, text[len("json .") :], text))
        if text.startswith(".Label "):
            return labels.get(text[len(".Label ") :].strip().strip('"'), "")
        if text.startswith("."):
            return _field(row, text[1:], text)
        raise AdapterError(
            f"template: {{{{{text}}}}} is not supported; use {{{{.Names}}}}, {{{{.ID}}}}, "
            "{{json .}} or another field"
        )

    return _ACTION.sub(action, template)


def _field(row: dict[str, str], name: str, text: str) -> str:
    if name not in row:
        known = ", ".join(sorted(row))
        raise AdapterError(f"template: {{{{{text}}}}}: no field {name!r} (fields: {known})")
    return row[name]


def _align(lines: Sequence[str]) -> str:
    """Tab-separated cells in columns three spaces apart, as docker's tables are."""
    cells = [line.split("\t") for line in lines]
    widths: dict[int, int] = {}
    for row in cells:
        for i, cell in enumerate(row[:-1]):
            widths[i] = max(widths.get(i, 0), len(cell))
    out = []
    for row in cells:
        parts = [cell.ljust(widths[i] + 3) for i, cell in enumerate(row[:-1])]
        out.append(("".join(parts) + row[-1]).rstrip())
    return "".join(f"{line}\n" for line in out)


def _matcher(filters: Sequence[str]) -> Callable[[RunRecord], bool]:
    """docker's filters: the same key ORs, different keys AND; names match as regexes."""
    wanted: dict[str, list[str]] = {}
    for text in filters:
        key, eq, value = text.partition("=")
        if not eq:
            raise AdapterError(f"ps: --filter {text}: bad format of filter (expected name=value)")
        if key not in FILTER_KEYS:
            raise AdapterError(f"ps: invalid filter {key!r} (known: {', '.join(FILTER_KEYS)})", 1)
        wanted.setdefault(key, []).append(value)

    def name_matches(pattern: str, name: str) -> bool:
        try:
            return re.search(pattern, name) is not None
        except re.error:
            return pattern in name

    def keep(record: RunRecord) -> bool:
        cid = container_id(record.name, record.started)
        labels = _labels(record)
        checks = {
            "name": lambda v: name_matches(v, record.name),
            "id": lambda v: cid.startswith(v),
            "status": lambda v: v == "running",
            "label": lambda v: (
                labels.get(v.partition("=")[0]) == v.partition("=")[2] if "=" in v else v in labels
            ),
        }
        return all(any(checks[key](v) for v in values) for key, values in wanted.items())

    return keep


def ps(words: Sequence[str]) -> int:
    """``ps``: the runs in progress, oldest first."""
    from .. import runs

    parsed = parse(words, PS_FLAGS, command="ps")
    if parsed.positionals:
        raise AdapterError(f"ps: accepts no arguments, got {parsed.positionals[0]!r}")
    keep = _matcher(parsed.values.get("filter", ()))
    found = [r for r in runs.live_runs() if keep(r)]
    now = time.time()
    rows = [fields(r, now) for r in found]
    quiet = parsed.bools.get("quiet", False)
    template = "{{.ID}}" if quiet else parsed.value("format") or DEFAULT_FORMAT
    text = render(template, rows, [_labels(r) for r in found])
    print(text, end="", flush=True)
    return 0


def apple_entry(record: RunRecord) -> dict[str, object]:
    """One run as Apple's ``container ls --format json`` lists it (up to 0.12)."""
    return {
        "status": "running",
        "configuration": {
            "id": record.name,
            "hostname": record.name,
            "image": {"reference": _image(record)},
            "labels": _labels(record),
        },
        "networks": [],
        "startedDate": record.started - APPLE_EPOCH,
    }


def ls(words: Sequence[str]) -> int:
    """``ls [-a] [-q] [--format json|table]`` as Apple's ``container`` prints it."""
    from .. import runs

    parsed = parse(words, LS_FLAGS, command="ls")
    if parsed.positionals:
        raise AdapterError(f"ls: accepts no arguments, got {parsed.positionals[0]!r}")
    found = runs.live_runs()
    form = parsed.value("format") or "table"
    if parsed.bools.get("quiet"):
        print("".join(f"{r.name}\n" for r in found), end="", flush=True)
        return 0
    if form == "json":
        print(json.dumps([apple_entry(r) for r in found], separators=(",", ":")), flush=True)
        return 0
    if form != "table":
        raise AdapterError(f"ls: --format {form}: expected json or table")
    if not found:
        return 0
    lines = ["ID\tIMAGE\tOS\tARCH\tSTATE\tADDR"]
    lines += [f"{r.name}\t{_image(r)}\tlinux\t-\trunning\t" for r in found]
    print(_align(lines), end="", flush=True)
    return 0
