"""Settings: declared once on a settings class (a record), resolved strictly from config,
environment and .env.

- :mod:`.fields` declares them (:func:`setting`, :func:`settings_class`),
- :mod:`.validators` holds one-argument validators,
- :mod:`.values` checks JSON values and environment strings against a type,
- :mod:`.resolve` applies the precedence and records where each value came from,
- :mod:`.problems` reports every problem at once,
- :mod:`.schema` generates the configuration reference and the JSON Schema,
- :mod:`.core` declares the core's own settings.
"""

from __future__ import annotations

from .fields import Field, SettingInfo, SettingsDeclarationError, fields_of, setting, settings_class
from .problems import Problem, raise_problems, suggest
from .resolve import Origin, Resolved, Sources, resolve
from .validators import (
    at_least,
    between,
    command_words,
    env_entries,
    image_reference,
    non_empty,
    one_of,
    plain_file_name,
)

__all__ = [
    "Field",
    "Origin",
    "Problem",
    "Resolved",
    "SettingInfo",
    "SettingsDeclarationError",
    "Sources",
    "at_least",
    "between",
    "command_words",
    "env_entries",
    "fields_of",
    "image_reference",
    "non_empty",
    "one_of",
    "plain_file_name",
    "raise_problems",
    "resolve",
    "setting",
    "settings_class",
    "suggest",
]
