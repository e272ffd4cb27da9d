"""Test helpers for runtime authors and hosts: an opt-in pytest plugin.

Activate it in your ``conftest.py``::

    pytest_plugins = ["nanoclaw_runtimes_core.testing"]

Fixtures:

``nanoclaw_project``
    A :class:`NanoclawProject` in a fresh folder (``groups/``, ``groups/global``,
    ``data/``) with a mount allowlist path of its own. Every variable of the core
    (``CONTAINER_*``, ``NANOCLAW_*``, ``MAX_CONCURRENT_CONTAINERS``, ``LOG_LEVEL``)
    and of the installed runtimes is removed from the environment, and
    ``NANOCLAW_MOUNT_ALLOWLIST`` points at the project's own allowlist path, so no
    test reads the developer's settings.
``nanoclaw_registry``
    A fresh :class:`~nanoclaw_runtimes_core.plugins.Registry` of the installed
    runtimes (``NANOCLAW_RUNTIMES_LOAD`` applies). Override it to register a
    runtime in process (``registry.register("mine", plugin)``).
``nanoclaw_environ``
    The environment (a dict) that ``nanoclaw_runtimes`` resolves settings from;
    add to it before using ``nanoclaw_runtimes``.
``nanoclaw_runtimes``
    A :class:`~nanoclaw_runtimes_core.Runtimes` over the project, the environ and
    the registry.
``recording_sink``
    A :class:`RecordingSink`.

Also here: :mod:`.processes` (leak and command-line checks), :mod:`.watchdog`
(a hard deadline for one call), :mod:`.hookdocs` (the hook reference of the
authoring guide), and the contract suite
:class:`nanoclaw_runtimes_core.testing.contract.RuntimeContract`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

import pytest

from .project import ALLOWLIST_ENV, NanoclawProject, RecordingSink

if TYPE_CHECKING:
    from ..dispatch import Runtimes
    from ..plugins import Registry

__all__ = ["ALLOWLIST_ENV", "NanoclawProject", "RecordingSink", "clean_environ", "setting_env"]

CORE_PREFIXES = ("NANOCLAW_", "CONTAINER_")
CORE_NAMES = frozenset({"MAX_CONCURRENT_CONTAINERS", "LOG_LEVEL"})
KEPT = frozenset({"NANOCLAW_RUNTIMES_LOAD", "NANOCLAW_TEST_ENGINES"})
"""Variables that select what the tests themselves run, not how a run is made."""


def setting_env(settings_classes: Iterable[type | None] = ()) -> frozenset[str]:
    """Every variable the core and the given settings classes read."""
    from ..settings.core import CoreSettings
    from ..settings.fields import known_env

    names = set(known_env(CoreSettings)) | CORE_NAMES | {"NANOCLAW_ROOT"}
    for cls in settings_classes:
        names |= known_env(cls)
    return frozenset(names)


def clean_environ(
    base: Mapping[str, str] | None = None,
    *,
    settings_classes: Iterable[type | None] = (),
    allowlist: str | os.PathLike[str] | None = None,
) -> dict[str, str]:
    """A copy of ``base`` (default: the process environment) without the core's variables nor
    those the given runtime settings classes declare, so a test sees defaults unless it sets a
    value itself; ``allowlist`` becomes ``NANOCLAW_MOUNT_ALLOWLIST``."""
    drop = setting_env(settings_classes)
    source = os.environ if base is None else base
    env = {
        k: v
        for k, v in source.items()
        if k in KEPT or (k not in drop and not k.startswith(CORE_PREFIXES))
    }
    if allowlist is not None:
        env[ALLOWLIST_ENV] = str(allowlist)
    return env


def fresh_registry() -> Registry:
    """A registry of the installed runtimes (``NANOCLAW_RUNTIMES_LOAD`` applies), nothing loaded."""
    from ..plugins import LOAD_ENV, Registry

    registry = Registry()
    selected = os.environ.get(LOAD_ENV)
    registry.load_entry_points(
        None if selected is None else [s.strip() for s in selected.split(",") if s.strip()]
    )
    return registry


@pytest.fixture
def nanoclaw_project(monkeypatch: pytest.MonkeyPatch) -> Iterator[NanoclawProject]:
    """A temporary NanoClaw project root; see the module docstring."""
    helper = NanoclawProject()
    for name in list(os.environ):
        if name not in KEPT and (name in setting_env() or name.startswith(CORE_PREFIXES)):
            monkeypatch.delenv(name)
    monkeypatch.setenv(ALLOWLIST_ENV, str(helper.allowlist_path))
    try:
        yield helper
    finally:
        helper.remove()


@pytest.fixture
def project(nanoclaw_project: NanoclawProject) -> NanoclawProject:
    """The same as ``nanoclaw_project``."""
    return nanoclaw_project


@pytest.fixture
def nanoclaw_registry() -> Registry:
    """A fresh registry of the installed runtimes (``NANOCLAW_RUNTIMES_LOAD`` applies)."""
    return fresh_registry()


@pytest.fixture
def nanoclaw_environ(
    nanoclaw_project: NanoclawProject, nanoclaw_registry: Registry
) -> dict[str, str]:
    """The environment ``nanoclaw_runtimes`` reads: the process's, without the core's and the
    runtimes' own variables, with the project's allowlist."""
    classes = [i.settings_class for i in nanoclaw_registry.infos() if i.error is None]
    return clean_environ(settings_classes=classes, allowlist=nanoclaw_project.allowlist_path)


@pytest.fixture
def nanoclaw_runtimes(
    nanoclaw_project: NanoclawProject,
    nanoclaw_environ: dict[str, str],
    nanoclaw_registry: Registry,
) -> Runtimes:
    """The host API over ``nanoclaw_project``."""
    from ..dispatch import Runtimes

    return Runtimes(nanoclaw_project.root, environ=nanoclaw_environ, registry=nanoclaw_registry)


@pytest.fixture
def recording_sink() -> RecordingSink:
    """A sink that keeps what a run streams."""
    return RecordingSink()
