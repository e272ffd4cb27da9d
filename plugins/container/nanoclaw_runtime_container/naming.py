"""Names and labels that make every container this runtime starts recognisable.

A container is named ``nanoclaw-<group>-<project tag>-<run>``: the project tag
(a short hash of the project root) keeps two projects with a group of the same
name apart, and the run part never contains a dash, so a group's names cannot
be mistaken for those of a group whose folder merely starts the same way
(``dev`` versus ``dev-team``).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from pathlib import Path

PREFIX = "nanoclaw"
LABEL_RUNTIME = "nanoclaw.runtime"
LABEL_GROUP = "nanoclaw.group"
LABEL_PROJECT = "nanoclaw.project"
RUNTIME_NAME = "container"


def project_tag(root: Path) -> str:
    """Eight hex digits identifying a project root on this host."""
    return hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:8]


def run_token(run_id: str) -> str:
    """The run part of a name: the run id's letters and digits, or a random token."""
    token = re.sub(r"[^A-Za-z0-9]", "", run_id)[:24]
    return token or secrets.token_hex(6)


def container_name(group: str, root: Path, run_id: str) -> str:
    """The name of one run's container."""
    return f"{PREFIX}-{group}-{project_tag(root)}-{run_token(run_id)}"


def name_pattern(root: Path, group: str | None = None) -> re.Pattern[str]:
    """Matches the container names of one group (or of every group) of a project."""
    group_part = re.escape(group) if group is not None else r"[A-Za-z0-9][A-Za-z0-9_-]*"
    return re.compile(
        rf"{PREFIX}-(?P<group>{group_part})-{project_tag(root)}-(?P<run>[A-Za-z0-9]+)"
    )


def labels(group: str, root: Path) -> dict[str, str]:
    """The labels put on a container (engines that support labels)."""
    return {LABEL_RUNTIME: RUNTIME_NAME, LABEL_GROUP: group, LABEL_PROJECT: project_tag(root)}
