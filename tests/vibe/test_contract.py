"""The core's runtime contract suite, run against the vibe engine through the stand-in."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from nanoclaw_runtimes_core.testing.contract import RuntimeContract

from .conftest import STANDIN, make_sparse, needs_bwrap

pytestmark = needs_bwrap


class TestVibeContract(RuntimeContract):
    runtime_name = "vibe"
    runtime_distribution = "nanoclaw-runtime-vibe"
    persistent_state = True

    @pytest.fixture
    def runtime_env(self) -> Iterator[dict[str, str]]:
        base = Path(tempfile.mkdtemp(prefix="nanoclaw-vibe-contract-"))
        os.chmod(base, 0o711)
        images = base / "images"
        images.mkdir()
        make_sparse(images / "base.raw", 64 * 2**20)
        state = base / "state"
        state.mkdir(mode=0o777)
        state.chmod(0o777)
        wrapper = base / "vibe"
        wrapper.write_text(f'#!/bin/sh\nVIBE_STANDIN_STATE={state} exec {STANDIN} "$@"\n')
        wrapper.chmod(0o755)
        try:
            yield {
                "VIBE_ENGINE": "vibe",
                "VIBE_EXECUTABLE": str(wrapper),
                "VIBE_IMAGES_DIR": str(images),
                "VIBE_RAM": "512",
                "VIBE_CPUS": "1",
                "VIBE_KEEP_WARM": "0",
            }
        finally:
            shutil.rmtree(base, ignore_errors=True)
