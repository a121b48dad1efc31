# Shared set-up for scripts/course and scripts/test: a virtual environment in .venv with the
# package and its pinned dependencies (CPU build of torch, the versions the nbval baselines use).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
VENV="$ROOT/.venv"
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
# Reinstall only when the declared dependencies change.
STAMP="$VENV/.dgm-course-install"
WANT="$(cat pyproject.toml requirements/constraints.txt | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$WANT" ]; then
    "$VENV/bin/python" -m pip install --quiet -c requirements/constraints.txt -e ".[dev]"
    echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"   # nbgrader calls alembic from PATH
export MPLBACKEND=Agg
