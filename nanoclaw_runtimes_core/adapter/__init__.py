"""The docker-compatible command line NanoClaw calls (``nanoclaw-runtimes-docker``).

NanoClaw v1 spawns ``docker run -i --rm --name N -e ... -v ... IMAGE`` per agent
run, and ``docker info``, ``ps``, ``stop`` around it (``container ...`` in its
Apple-container builds). This package accepts exactly those command lines and
runs each through :class:`~nanoclaw_runtimes_core.dispatch.Runtimes`, so the
group's own runtime (its ``config.json``, ``CONTAINER_RUNTIME``, auto) runs the
agent. Modules:

- :mod:`.flags`: the flag grammar docker's CLI uses (pflag), and the adapter's error;
- :mod:`.run_args`: ``run``'s flags, mounts, environment and user;
- :mod:`.run`: one ``run``, from its arguments to the exit status;
- :mod:`.names`: container names and ids of runs;
- :mod:`.manage`: ``stop``, ``kill``, ``rm``;
- :mod:`.listing`: ``ps`` and Apple's ``ls``, with docker's ``--format`` templates;
- :mod:`.system`: ``info``, ``system status|start``, ``version``, ``build``.
"""

PROG = "nanoclaw-runtimes-docker"
