#!/usr/bin/env bash
# Creates .venv with Python 3.11 and installs the project (with extras when asked: "test,deploy").
# Installs only when pyproject.toml changed or an extra is missing since the last install, so a
# second run (demo.sh after test.sh, say) takes no time.
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-}"
python="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
stamp=.venv/installed-extras
digest="$(sha256sum pyproject.toml | cut -d' ' -f1)"
installed=""
if [ -f "$stamp" ] && [ "$(head -n1 "$stamp")" = "$digest" ]; then
  installed="$(tail -n +2 "$stamp")"
fi
missing=""
for name in ${extra//,/ }; do
  grep -qx "$name" <<<"$installed" || missing="$missing $name"
done
if [ -z "$missing" ] && [ -f "$stamp" ] && [ "$(head -n1 "$stamp")" = "$digest" ]; then
  exit 0
fi
if [ -n "$extra" ]; then
  .venv/bin/python -m pip install --quiet -e ".[$extra]"
else
  .venv/bin/python -m pip install --quiet -e .
fi
{ echo "$digest"; printf '%s\n' $installed ${extra//,/ } | sort -u; } > "$stamp"
