#!/usr/bin/env bash
# Set up (scripts/setup.sh), then answer one chat message end to end on the
# default runtime: the container runtime, sandboxed by bubblewrap on Linux,
# running the example agent. The project root is ./demo (created if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
export PATH="$PWD/.venv/bin:$PATH"
ROOT="${NANOCLAW_ROOT:-$PWD/demo}"
mkdir -p "$ROOT/groups/main" "$ROOT/groups/global"

echo "== installed runtimes"
nanoclaw-runtimes --root "$ROOT" plugins

echo
echo "== a chat message for group 'main' (ContainerInput on stdin, output blocks on stdout)"
printf '%s' '{"prompt": "Hello, what is my environment?", "groupFolder": "main", "chatJid": "demo@g.us", "isMain": true, "assistantName": "Andy"}' \
  | nanoclaw-runtimes --root "$ROOT" run main

echo
echo "== a command in the same group's sandbox"
nanoclaw-runtimes --root "$ROOT" run main -- sh -c 'echo "in $(pwd) as $(id -un 2>/dev/null || id -u)"; ls -A /workspace'
