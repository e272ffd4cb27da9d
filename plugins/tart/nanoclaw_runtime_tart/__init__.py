"""nanoclaw-runtime-tart: a throwaway macOS VM per run, with tart.

The hooks live in :mod:`nanoclaw_runtime_tart.plugin`, the entry point
``tart`` of the ``nanoclaw_runtimes`` group.
"""

__version__ = "0.1.0"
