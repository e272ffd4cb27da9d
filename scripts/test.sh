#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite: lint, type check, pytest.
# Extra arguments go to pytest. Real Docker/Podman tests run when the engines are started
# (eval "$(bash scripts/engines.sh start)", see docs/engines-for-developers.md), else they skip.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
