"""The local runtime against the nanoclaw-runtimes contract suite."""

from nanoclaw_runtimes_core.testing.contract import RuntimeContract


class TestLocalContract(RuntimeContract):
    runtime_name = "local"
    runtime_distribution = "nanoclaw-runtime-local"
    workspace_in_sandbox = None  # no sandbox: the working directory is groups/<folder> itself
    persistent_state = True  # each group's HOME lives in its state folder until reset
