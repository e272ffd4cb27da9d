"""What the image engines (Docker, Podman, Apple ``container``) share: the client's
environment, stopping and killing a container by name, and building or pulling the agent image.
"""

from __future__ import annotations

import os
import subprocess

from nanoclaw_runtimes_core.models import ExecuteRequest, PrepareRequest, Project

from ..settings import DEFAULT_IMAGE, ContainerSettings
from . import image
from .bubblewrap import extra_env
from .cli import run_tool

MANAGE_TIMEOUT_S = 30.0


class ImageEngine:
    """A container engine driven through its command line ``tool``."""

    die_with_parent = False  # the client must live to stop its container
    pull_command: tuple[str, ...] = ("pull",)

    def __init__(self, settings: ContainerSettings, project: Project | None, *, tool: str) -> None:
        self.settings = settings
        self.project = project
        self.tool = tool

    def require(self) -> None:
        """Raise EngineUnavailable, saying how to fix it, when the engine cannot run."""
        raise NotImplementedError

    def image_and_command(self, request: ExecuteRequest) -> list[str]:
        """The end of ``run``'s argv: the image, then the command in command mode (through
        ``--entrypoint``, so images with NanoClaw's agent entrypoint run it too)."""
        if request.command is None:
            return [self.settings.image]
        first, *rest = request.command
        return ["--entrypoint", first, self.settings.image, *rest]

    def env(self, request: ExecuteRequest | None = None) -> dict[str, str]:
        """The client's environment plus the values of the variables passed with ``-e NAME``."""
        env = dict(os.environ)
        env.update(extra_env(self.settings.env))
        return env

    def started(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        """Nothing to remember: the container is found by its name."""

    def stop(self, name: str) -> None:
        """``TOOL stop -t GRACE NAME``, then ``TOOL kill NAME`` if it did not stop."""
        grace = self.settings.stop_grace
        result = run_tool([self.tool, "stop", "-t", str(grace), name], timeout_s=grace + 15)
        if not result.ok:
            self.kill(name)

    def kill(self, name: str) -> None:
        """``TOOL kill NAME``; quiet when it is already gone."""
        run_tool([self.tool, "kill", name], timeout_s=MANAGE_TIMEOUT_S)

    def prepare_base(self, request: PrepareRequest) -> str:
        """Build the sample image (default image name) or pull the configured one."""
        self.require()
        ref = self.settings.image
        present = run_tool([self.tool, "image", "inspect", ref], timeout_s=MANAGE_TIMEOUT_S).ok
        if present and not request.force:
            return f"image {ref} is present ({self.tool})"
        if ref == DEFAULT_IMAGE:
            with image.build_context() as context:
                request.progress(f"building {ref} with {self.tool}", None)
                argv = [
                    self.tool,
                    "build",
                    "-t",
                    ref,
                    "-f",
                    str(context / "Dockerfile"),
                    str(context),
                ]
                image.run_visible(argv, what=f"{self.tool} build")
            return f"built image {ref} with {self.tool}"
        request.progress(f"pulling {ref} with {self.tool}", None)
        pull = [self.tool, *self.pull_command]
        image.run_visible([*pull, ref], what=" ".join(pull))
        return f"pulled image {ref} with {self.tool}"
