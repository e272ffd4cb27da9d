"""The unshare runtime against the nanoclaw-runtimes contract suite."""

from nanoclaw_runtimes_core.testing.contract import RuntimeContract


class TestUnshareContract(RuntimeContract):
    runtime_name = "unshare"
    runtime_distribution = "nanoclaw-runtime-unshare"
