"""Run the examples' tests from the repository root, installed or not.

Each example is a distribution of its own whose tests run after ``pip install``
(``cd examples/<name> && pytest``). From the repository root an example may not
be installed: its folder is put on the import path and its contract suite
registers the runtime in process instead of finding its entry point.
"""

from __future__ import annotations

import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["nanoclaw_runtimes_core.testing"]

HERE = Path(__file__).resolve().parent
INSTALLED = {ep.name for ep in entry_points(group="nanoclaw_runtimes")}

for example in sorted(HERE.glob("nanoclaw-runtime-*")):
    if str(example) not in sys.path:
        sys.path.insert(0, str(example))


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: Any, name: str, obj: Any) -> None:
    """An example's contract class whose runtime is not installed gets it in process."""
    from nanoclaw_runtimes_core.testing.contract import RuntimeContract

    if (
        isinstance(obj, type)
        and issubclass(obj, RuntimeContract)
        and obj.runtime_name
        and obj.runtime_plugin is None
        and obj.runtime_name not in INSTALLED
    ):
        obj.runtime_plugin = f"nanoclaw_runtime_{obj.runtime_name}.plugin"


@pytest.fixture
def example_root() -> Path:
    """The examples folder."""
    return HERE
