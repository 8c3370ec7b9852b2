#!/usr/bin/env bash
# Create .venv and install GLV's packages and tools, pinned by constraints.txt.
# Re-running is cheap: pip skips what is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
  echo "==> creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
echo "==> installing Python packages (pinned in constraints.txt; first run downloads ~60 packages)"
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
# Editable installs in compat mode (a .pth path entry), so that mypy sees the packages.
.venv/bin/python -m pip install --quiet --disable-pip-version-check --progress-bar off \
  -c constraints.txt -r requirements-dev.txt \
  --config-settings editable_mode=compat \
  -e ./schemas -e ./runtime -e ./services/ticketing -e ./services/scheduler -e ./tools
touch .venv/.installed
echo "==> Python environment ready"
