"""Test helpers for runtime authors and hosts: an opt-in pytest plugin.

Activate it in your ``conftest.py``::

    pytest_plugins = ["nanoclaw_runtimes_core.testing"]

Fixtures:

``nanoclaw_project``
    A :class:`NanoclawProject` in a temporary folder (``groups/``,
    ``groups/global``, ``data/``), with ``NANOCLAW_MOUNT_ALLOWLIST`` pointing
    at its own allowlist path and the core's other variables
    (``CONTAINER_RUNTIME``, ``CONTAINER_TIMEOUT``, ...) removed from the
    environment, so no test reads the real home or the developer's settings.
    ``project`` is the same fixture under a shorter name.
``nanoclaw_environ``
    The environment (a dict) that ``nanoclaw_runtimes`` resolves settings from;
    add to it before using ``nanoclaw_runtimes``.
``nanoclaw_registry``
    A fresh :class:`~nanoclaw_runtimes_core.plugins.Registry` with the
    installed runtimes (restricted by ``NANOCLAW_RUNTIMES_LOAD`` as usual).
    Override it to register a runtime in process.
``nanoclaw_runtimes``
    A :class:`~nanoclaw_runtimes_core.api.Runtimes` over ``nanoclaw_project``.

The contract suite a runtime runs against itself is
:class:`nanoclaw_runtimes_core.testing.contract.RuntimeContract`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .project import NanoclawProject, RecordingSink

if TYPE_CHECKING:
    from ..api import Runtimes
    from ..plugins import Registry

__all__ = ["NanoclawProject", "RecordingSink", "clean_environ"]

ALLOWLIST_ENV = "NANOCLAW_MOUNT_ALLOWLIST"
# The project root of the CLI; a test must never fall back to the developer's project.
ROOT_ENV = "NANOCLAW_ROOT"


def core_env_names() -> frozenset[str]:
    """The environment variables the core itself reads (``CONTAINER_RUNTIME``, ...)."""
    from ..settings import CoreSettings, known_env

    return known_env(CoreSettings) | {ROOT_ENV}


def clean_environ(
    base: os._Environ[str] | dict[str, str] | None = None,
    *,
    settings_classes: Iterable[type | None] = (),
) -> dict[str, str]:
    """A copy of the environment without the core's variables nor those the given runtime
    settings classes declare, so a test sees defaults unless it sets a value itself.
    ``NANOCLAW_MOUNT_ALLOWLIST`` is kept (the fixtures point it at a test file)."""
    from ..settings import known_env

    drop = set(core_env_names()) - {ALLOWLIST_ENV}
    for cls in settings_classes:
        if cls is not None:
            drop |= known_env(cls)
    source = os.environ if base is None else base
    return {k: v for k, v in source.items() if k not in drop}


@pytest.fixture
def nanoclaw_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> NanoclawProject:
    """A temporary NanoClaw project root; see the module docstring."""
    helper = NanoclawProject(
        tmp_path / "project", allowlist_path=tmp_path / "home" / "mount-allowlist.json"
    )
    for name in core_env_names():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(ALLOWLIST_ENV, str(helper.allowlist_path))
    return helper


@pytest.fixture
def project(nanoclaw_project: NanoclawProject) -> NanoclawProject:
    """The same as ``nanoclaw_project``."""
    return nanoclaw_project


@pytest.fixture
def nanoclaw_registry() -> Registry:
    """A fresh registry of the installed runtimes (``NANOCLAW_RUNTIMES_LOAD`` applies)."""
    from ..plugins import LOAD_ENV, Registry

    registry = Registry()
    selected = os.environ.get(LOAD_ENV)
    registry.load_entry_points(
        None if selected is None else [s.strip() for s in selected.split(",") if s.strip()]
    )
    return registry


@pytest.fixture
def nanoclaw_environ(
    nanoclaw_project: NanoclawProject, nanoclaw_registry: Registry
) -> dict[str, str]:
    """The environment ``nanoclaw_runtimes`` reads: the process's, without the core's and the
    loaded runtimes' own variables, with the test allowlist."""
    env = clean_environ(settings_classes=[i.settings_class for i in nanoclaw_registry.infos()])
    env[ALLOWLIST_ENV] = str(nanoclaw_project.allowlist_path)
    return env


@pytest.fixture
def nanoclaw_runtimes(
    nanoclaw_project: NanoclawProject,
    nanoclaw_environ: dict[str, str],
    nanoclaw_registry: Registry,
) -> Runtimes:
    """The host API over ``nanoclaw_project``."""
    from ..api import Runtimes

    return Runtimes(nanoclaw_project.root, environ=nanoclaw_environ, registry=nanoclaw_registry)
