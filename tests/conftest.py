"""The core's own test plugin (fixtures and the runtime contract suite) for every test here."""

pytest_plugins = ["nanoclaw_runtimes_core.testing"]
