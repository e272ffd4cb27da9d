pytest_plugins = ["nanoclaw_runtimes_core.testing"]
