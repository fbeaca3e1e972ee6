#!/usr/bin/env bash
# Installs the project with its test extra and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test,deploy
.venv/bin/ruff check dataset_assets dataset_assets_tests bench
.venv/bin/pytest -n 2 "$@"
