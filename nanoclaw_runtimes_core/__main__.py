"""``python -m nanoclaw_runtimes_core`` is the ``nanoclaw-runtimes`` command."""

import sys

from .cli import main

sys.exit(main())
