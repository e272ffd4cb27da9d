"""The ``unshare`` runtime: each run in fresh namespaces made by util-linux ``unshare``."""
