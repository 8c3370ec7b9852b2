#!/usr/bin/env bash
# Create .venv and install GLV's packages and tools, pinned by constraints.txt.
# Re-running is cheap: pip skips what is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."

# pip says only what went wrong: no "new release of pip" notice, no warning about
# running as root (this installs into a virtualenv, which is what that warning asks for).
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PIP_PROGRESS_BAR=off

# Every GLV package, editable: schemas, runtime, each service (services/<name>/ with a
# pyproject.toml) and tools. mypy reads the sources (pyproject.toml's `files`), not the
# installs.
packages=(-e ./schemas -e ./runtime)
for project in services/*/pyproject.toml; do
  packages+=(-e "./${project%/pyproject.toml}")
done
packages+=(-e ./tools)

PYTHON="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
  echo "==> creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
echo "==> installing Python packages (pinned in constraints.txt; first run downloads ~60 packages)"
.venv/bin/python -m pip install --quiet --upgrade pip
# The filter drops the notice setuptools prints for each editable install ("Editable
# installation ... folders in your working directory with the same name as your package
# ... may take precedence during imports"): the only folders named like GLV's packages
# are those packages.
PYTHONWARNINGS="ignore:Editable installation" \
  .venv/bin/python -m pip install --quiet -c constraints.txt -r requirements-dev.txt "${packages[@]}"
touch .venv/.installed
echo "==> Python environment ready"
