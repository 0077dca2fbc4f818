#!/usr/bin/env bash
# Run every check of the project: lint, format, type check, the test suite,
# then the core tests on each extra Python version in ORCHESTRIX_TEST_PYTHONS.
#
# Environment:
#   PYTHON                   interpreter for the main venv (default: python3)
#   VENV                     the main venv, created or reused (default: .venv)
#   ORCHESTRIX_TEST_PYTHONS  extra versions for the core tests, e.g. "3.12 3.13"
#
# Exits non-zero at the first failure.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
ORCHESTRIX_TEST_PYTHONS="${ORCHESTRIX_TEST_PYTHONS:-}"
PIP_INSTALL=(-m pip install -q --disable-pip-version-check)

section() {
    printf '\n==> %s\n' "$*"
}

die() {
    printf '\nscripts/test.sh: error: %s\n' "$*" >&2
    exit 1
}

# Whether interpreter $1 runs and is Python version $2 (X.Y).
is_python_version() {
    "$1" -c "import sys; sys.exit('%d.%d' % sys.version_info[:2] != '$2')" >/dev/null 2>&1
}

# Create the venv $1 with interpreter $2, or reuse it if it has the same X.Y version.
ensure_venv() {
    local venv="$1" interpreter="$2" version
    version="$("$interpreter" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
        || die "cannot run the interpreter '$interpreter'"
    if [[ -x "$venv/bin/python" ]] && is_python_version "$venv/bin/python" "$version"; then
        echo "reusing $venv (Python $version)"
    else
        echo "creating $venv with $interpreter (Python $version)"
        "$interpreter" -m venv --clear "$venv" || die "could not create the virtual environment $venv"
    fi
}

# Run pytest with interpreter $1 and the remaining arguments. Pytest's exit
# code 5 ("no tests collected") is a failure here: a run that tests nothing
# must not pass.
run_pytest() {
    local python="$1" status=0
    shift
    "$python" -m pytest "$@" || status=$?
    if [[ $status -eq 5 ]]; then
        die "pytest collected no tests ($*)"
    elif [[ $status -ne 0 ]]; then
        die "pytest failed with exit code $status ($*)"
    fi
}

# Print the path of a working pythonX.Y: from pyenv (active or merely
# installed versions) or from PATH. pyenv's shims exist for every installed
# version but fail unless it is active, so each candidate is tried before use.
find_python() {
    local version="$1" candidate installed
    local -a candidates=()
    if command -v pyenv >/dev/null 2>&1; then
        candidates+=("$(pyenv which "python$version" 2>/dev/null || true)")
        installed="$(pyenv versions --bare 2>/dev/null \
            | grep -E "^${version//./\\.}\.[0-9]+$" | sort -V | tail -n 1 || true)"
        if [[ -n "$installed" ]]; then
            candidates+=("$(pyenv root)/versions/$installed/bin/python$version")
        fi
    fi
    candidates+=("$(command -v "python$version" 2>/dev/null || true)")
    for candidate in "${candidates[@]}"; do
        if [[ -n "$candidate" ]] && is_python_version "$candidate" "$version"; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

section "virtual environment ($VENV)"
ensure_venv "$VENV" "$PYTHON"
"$VENV/bin/python" "${PIP_INSTALL[@]}" -e '.[dev]' || die "installing the project into $VENV failed"
"$VENV/bin/python" --version

section "ruff check ."
"$VENV/bin/python" -m ruff check . || die "ruff check found problems"

section "ruff format --check ."
"$VENV/bin/python" -m ruff format --check . || die "files need formatting: run 'ruff format .'"

section "mypy"
"$VENV/bin/python" -m mypy || die "mypy found type errors"

section "pytest"
run_pytest "$VENV/bin/python"

for version in $ORCHESTRIX_TEST_PYTHONS; do
    section "core tests on Python $version"
    interpreter="$(find_python "$version")" \
        || die "Python $version was asked for in ORCHESTRIX_TEST_PYTHONS but no working python$version was found (tried pyenv and PATH)"
    venv=".venv-py$version"
    ensure_venv "$venv" "$interpreter"
    "$venv/bin/python" "${PIP_INSTALL[@]}" pytest hypothesis -e . \
        || die "installing the project into $venv failed"
    run_pytest "$venv/bin/python" tests/core tests/test_layering.py -q
done

section "all checks passed"
