#!/bin/bash
# Provisions the NanoClaw vibe base: a Debian guest with git, node, python and the agent CLIs.
# Runs as root inside the guest (vibe --script). Ends by powering off, unless the caller
# (nanoclaw-runtimes prepare --base vibe) powers off itself after reporting the status.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

echo 'Acquire::Retries "3";' > /etc/apt/apt.conf.d/99nanoclaw-retries

echo "== apt packages"
apt-get update
apt-get install -y --no-install-recommends \
    ca-certificates curl git jq ripgrep build-essential \
    python3 python3-pip python3-venv \
    nodejs npm

echo "== agent CLIs"
npm install -g --no-fund --no-audit \
    @anthropic-ai/claude-code \
    opencode-ai \
    @openai/codex \
    @google/gemini-cli
# Kimi CLI is a Python package.
python3 -m pip install --break-system-packages --no-cache-dir kimi-cli || echo "kimi-cli not installed"

echo "== environment"
grep -q IS_SANDBOX /root/.bashrc 2>/dev/null || echo 'export IS_SANDBOX=1' >> /root/.bashrc
mkdir -p /workspace/group /workspace/global /workspace/ipc /home/node/.claude

apt-get clean
rm -rf /var/lib/apt/lists/*
sync
echo "== provisioned"

if [ "${NANOCLAW_PROVISION_NO_POWEROFF:-0}" != 1 ]; then
    systemctl poweroff
fi
