"""The ``local`` runtime: runs a group's agent as a plain process of this host.

For development only: there is NO isolation. See :mod:`nanoclaw_runtime_local.plugin`.
"""
