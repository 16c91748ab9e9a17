#!/usr/bin/env bash
# Speed of `promptgate drift` (whole process) and Evidently's DataDriftPreset
# side by side: installs Evidently from PyPI into a venv under
# ~/.cache/promptgate-ci (once), then runs benches/drift_speed.rs.
# Usage: benches/drift_speed.sh [calls per window] [calls per window for the Evidently comparison]
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${HOME}/.cache/promptgate-ci/evidently"
if ! "${venv}/bin/python" -c "import evidently" 2>/dev/null; then
  python3 -m venv "${venv}"
  # Evidently 0.7 imports pandas internals that pandas 3 removed.
  "${venv}/bin/pip" install --quiet evidently "pandas<3"
fi
command -v /usr/bin/time >/dev/null || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 2; }
echo "evidently $("${venv}/bin/python" -c 'import evidently; print(evidently.__version__)')"
DO_NOT_TRACK=1 EVIDENTLY_PYTHON="${venv}/bin/python" cargo bench --bench drift_speed -- "${1:-1000000}" "${2:-100000}"
