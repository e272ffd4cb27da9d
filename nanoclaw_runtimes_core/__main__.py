"""``python -m nanoclaw_runtimes_core`` is the ``nanoclaw-runtimes`` command."""

import sys

from .launcher import main

sys.exit(main())
