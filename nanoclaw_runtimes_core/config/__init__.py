"""Reading the project's configuration: group ``config.json`` files, ``.env``, and which version
of a group's config is trusted.

- :mod:`.jsonfile` parses strict JSON (no duplicate keys, bounded size and depth),
- :mod:`.groupconfig` reads a group's file without following links,
- :mod:`.trust` keeps what a sandbox wrote from deciding a later run,
- :mod:`.dotenv` reads ``.env``.
"""
