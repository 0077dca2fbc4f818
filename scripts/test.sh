#!/usr/bin/env bash
# Run every check of the project: lint, format, type check, the docs' build
# (mkdocs --strict), then the test matrix. Each interpreter runs the
# framework-free tests (tests/core, tests/test_layering.py, tests/test_import_graph.py) in one pytest
# process, and the Django tests (tests/django) in another pytest process per
# database: the two suites define event classes with the same type names,
# and the event registry is process-wide, so they never share a process.
# The example project's tests (tests/example, settings
# example_project.settings) run in processes of their own too, in the main
# venv, once per database asked for.
#
# Environment:
#   PYTHON                     interpreter of the main venv (default: python3)
#   VENV                       the main venv, created or reused (default: .venv); it
#                              gets '.[dev]', runs ruff and mypy, the core tests and
#                              the Django tests on every database asked for
#   ORCHESTRIX_TEST_DATABASES  databases for the Django tests, comma- or space-
#                              separated: sqlite, postgresql, mysql (default: sqlite).
#                              Each one runs tests/django once with ORCHESTRIX_TEST_DB
#                              set to it; the driver extra ('postgresql': psycopg,
#                              'mysql': mysqlclient, which builds against the MariaDB
#                              or MySQL client headers and needs pkg-config) is
#                              installed only when its database is asked for. A
#                              server that can't be reached fails the run.
#   ORCHESTRIX_TEST_PYTHONS    extra Python versions, space-separated, e.g. "3.12 3.13"
#                              (default: none). Each one, found through pyenv or PATH,
#                              gets its own venv .venv-pyX.Y and runs the core tests.
#   ORCHESTRIX_DJANGO_PYTHONS  which of those extra versions also run the Django tests,
#                              on every database asked for (default: "3.11 3.12"; empty:
#                              none). Such a venv gets '.[test]' (Django, Celery,
#                              DRF, pytest-django, …), and pip picks the newest Django that the
#                              version supports (6.x from 3.12 on, 5.2 LTS on 3.11).
#   ORCHESTRIX_DJANGO_EXTRA_DATABASES
#                              the databases those extra versions run the Django tests on
#                              (default: postgresql when it is asked for, else the first
#                              database asked for; "all": every one). The main interpreter
#                              covers every database; the others check the Django version.
#   ORCHESTRIX_SOAK_SECONDS    how long tests/django/test_soak.py writes (default: 8, the
#                              CI smoke version); e.g. 600 for a soak of ten minutes.
#
# Exits non-zero at the first failure, and prints the seconds each stage took.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
ORCHESTRIX_TEST_DATABASES="${ORCHESTRIX_TEST_DATABASES:-sqlite}"
ORCHESTRIX_TEST_PYTHONS="${ORCHESTRIX_TEST_PYTHONS:-}"
ORCHESTRIX_DJANGO_PYTHONS="${ORCHESTRIX_DJANGO_PYTHONS-3.11 3.12}"
# -qq: pip's errors only (this machine's pip configuration warns about every package).
PIP_INSTALL=(-m pip install -qq --disable-pip-version-check)
CORE_TESTS=(tests/core tests/test_layering.py tests/test_import_graph.py)
DJANGO_TESTS=(tests/django)
EXAMPLE_TESTS=(tests/example)

# --- stages and their timing ----------------------------------------------

STAGE_NAMES=()
STAGE_SECONDS=()
current_stage=""
stage_started=""
run_started=""

now() {
    if [[ -n "${EPOCHREALTIME:-}" ]]; then
        printf '%s\n' "${EPOCHREALTIME/,/.}"
    else
        date +%s
    fi
}

elapsed_since() {
    awk -v start="$1" -v end="$(now)" 'BEGIN { printf "%.1f", end - start }'
}

end_stage() {
    if [[ -n "$current_stage" ]]; then
        STAGE_NAMES+=("$current_stage")
        STAGE_SECONDS+=("$(elapsed_since "$stage_started")")
        current_stage=""
    fi
}

section() {
    end_stage
    current_stage="$*"
    stage_started="$(now)"
    printf '\n==> %s\n' "$*"
}

print_timings() {
    local status=$? i
    end_stage
    if [[ ${#STAGE_NAMES[@]} -gt 0 ]]; then
        printf '\n==> time per stage (seconds)%s\n' "$([[ $status -ne 0 ]] && echo ', up to the failure')"
        for ((i = 0; i < ${#STAGE_NAMES[@]}; i++)); do
            printf '%8s  %s\n' "${STAGE_SECONDS[$i]}" "${STAGE_NAMES[$i]}"
        done
        printf '%8s  %s\n' "$(elapsed_since "$run_started")" "total"
    fi
    return "$status"
}

run_started="$(now)"
trap print_timings EXIT

die() {
    printf '\nscripts/test.sh: error: %s\n' "$*" >&2
    exit 1
}

# --- helpers --------------------------------------------------------------

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
    local command="${ORCHESTRIX_TEST_DB:+ORCHESTRIX_TEST_DB=$ORCHESTRIX_TEST_DB }$python -m pytest $*"
    if [[ $status -eq 5 ]]; then
        die "pytest collected no tests ($command)"
    elif [[ $status -ne 0 ]]; then
        die "pytest failed with exit code $status ($command)"
    fi
}

# The framework-free tests, with interpreter $1. pytest-django is blocked:
# where it is installed it would set Django up (and import the test app's
# events) in this process. Without it, pytest warns that pyproject's
# DJANGO_SETTINGS_MODULE is an unknown option: that warning is silenced here
# (the Django runs, which load the plugin, still report unknown options).
run_core_tests() {
    run_pytest "$1" -p no:django -W 'ignore:Unknown config option:pytest.PytestConfigWarning' \
        "${CORE_TESTS[@]}" -q
}

# The Django tests, with interpreter $1, on database $2 (and more pytest
# arguments after those).
run_django_tests() {
    local python="$1" db="$2"
    shift 2
    ORCHESTRIX_TEST_DB="$db" run_pytest "$python" "${DJANGO_TESTS[@]}" -q "$@"
}

# The example project's tests, with interpreter $1, on database $2 (sqlite,
# postgresql or mysql: the servers of tests/settings.py). They use the
# example's own settings, and a test database of this run's own on a server
# (two runs on one server must not drop each other's).
run_example_tests() {
    local python="$1" db="$2" url="" name="test_orchestrix_example_$$"
    case "$db" in
        sqlite) name="" ;;
        postgresql)
            url="postgresql://${ORCHESTRIX_PG_USER:-postgres}@${ORCHESTRIX_PG_HOST:-127.0.0.1}:${ORCHESTRIX_PG_PORT:-5432}/postgres"
            ;;
        mysql)
            url="mysql://${ORCHESTRIX_MYSQL_USER:-root}:${ORCHESTRIX_MYSQL_PASSWORD:-}@${ORCHESTRIX_MYSQL_HOST:-127.0.0.1}:${ORCHESTRIX_MYSQL_PORT:-3306}/mysql"
            ;;
    esac
    DJANGO_SETTINGS_MODULE=example_project.settings ORCHESTRIX_EXAMPLE_CELERY=0 \
        ORCHESTRIX_EXAMPLE_DATABASE_URL="$url" ORCHESTRIX_EXAMPLE_TEST_DB_NAME="$name" \
        run_pytest "$python" --ds=example_project.settings "${EXAMPLE_TESTS[@]}" -q
}

# Print the installed Django version of interpreter $1.
django_version() {
    "$1" -c 'import django; print(django.get_version())' \
        || die "Django is not importable with $1"
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

# Whether the space-separated list $1 contains the word $2.
contains() {
    [[ " $1 " == *" $2 "* ]]
}

# --- what was asked for ---------------------------------------------------

DATABASES=()
IFS=$', \t\n' read -r -a requested <<<"$ORCHESTRIX_TEST_DATABASES"
for db in ${requested[@]+"${requested[@]}"}; do
    case "$db" in
        '') ;;
        sqlite | postgresql | mysql) contains "${DATABASES[*]-}" "$db" || DATABASES+=("$db") ;;
        *) die "ORCHESTRIX_TEST_DATABASES names '$db': use sqlite, postgresql or mysql (comma- or space-separated)" ;;
    esac
done
[[ ${#DATABASES[@]} -gt 0 ]] || DATABASES=(sqlite)

# The driver extras of the databases asked for, e.g. ",postgresql,mysql".
DRIVER_EXTRAS=""
for db in "${DATABASES[@]}"; do
    [[ "$db" == sqlite ]] || DRIVER_EXTRAS+=",$db"
done

# mysqlclient has no Linux wheels: pip compiles it, which needs the client
# headers (found through pkg-config). Say so now rather than after the linters.
if contains "${DATABASES[*]}" mysql; then
    if ! command -v mysql_config >/dev/null 2>&1 && ! command -v mariadb_config >/dev/null 2>&1; then
        die "ORCHESTRIX_TEST_DATABASES asks for mysql, whose driver (mysqlclient) is compiled on install and needs the MariaDB or MySQL client headers, but neither mariadb_config nor mysql_config is on PATH: install them (Debian/Ubuntu: apt-get install libmariadb-dev pkg-config; macOS: brew install mysql-client pkg-config), or leave mysql out of ORCHESTRIX_TEST_DATABASES"
    fi
    command -v pkg-config >/dev/null 2>&1 \
        || die "ORCHESTRIX_TEST_DATABASES asks for mysql, whose driver (mysqlclient) finds the client headers through pkg-config, which is missing: install it (Debian/Ubuntu: apt-get install pkg-config), or leave mysql out of ORCHESTRIX_TEST_DATABASES"
fi

# Every test module must belong to a suite this script runs: one anywhere
# else would silently never run.
stray="$(find tests -name 'test_*.py' -o -name '*_test.py' \
    | grep -v -E '^tests/(core|django|example)/|^tests/test_(layering|import_graph)\.py$' || true)"
[[ -z "$stray" ]] || die "test modules outside tests/core, tests/django, tests/example, tests/test_layering.py and tests/test_import_graph.py never run: move them into one of those, or add them to this script:
$stray"

extra_django=""
for version in $ORCHESTRIX_TEST_PYTHONS; do
    if contains "$ORCHESTRIX_DJANGO_PYTHONS" "$version"; then
        extra_django+="${extra_django:+ }$version"
    fi
done
echo "databases for the Django tests: ${DATABASES[*]}"
echo "extra Python versions: ${ORCHESTRIX_TEST_PYTHONS:-none}; of those, running the Django tests too: ${extra_django:-none}"

# --- the main venv: linters, type check, tests -------------------------------

section "virtual environment ($VENV)"
ensure_venv "$VENV" "$PYTHON"
"$VENV/bin/python" "${PIP_INSTALL[@]}" -e ".[dev$DRIVER_EXTRAS]" \
    || die "installing the project into $VENV failed"
main_version="$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
main_django="$(django_version "$VENV/bin/python")"
echo "Python $main_version, Django $main_django"

section "ruff check ."
"$VENV/bin/python" -m ruff check . || die "ruff check found problems"

section "ruff format --check ."
"$VENV/bin/python" -m ruff format --check . || die "files need formatting: run 'ruff format .'"

section "mypy"
"$VENV/bin/python" -m mypy || die "mypy found type errors"

# The docs' examples run with the core and the Django tests (tests/core/test_docs.py,
# tests/django/test_docs.py); here the site is built, into a temporary folder, with
# every warning (a broken link, a missing page) an error.
section "docs (mkdocs build --strict)"
docs_out="$(mktemp -d "${TMPDIR:-/tmp}/orchestrix-docs.XXXXXX")"
"$VENV/bin/python" -m mkdocs build --strict --quiet --site-dir "$docs_out" \
    || die "the docs do not build: mkdocs build --strict (see above)"
rm -rf "$docs_out"

section "core tests on Python $main_version"
run_core_tests "$VENV/bin/python"

for db in "${DATABASES[@]}"; do
    section "Django $main_django tests on Python $main_version, $db"
    run_django_tests "$VENV/bin/python" "$db"
done

# --- the example project: the demo command, its admin, API, upcaster,
# snapshots and replays, on every database asked for -------------------------

for db in "${DATABASES[@]}"; do
    section "example project tests on Python $main_version, $db"
    run_example_tests "$VENV/bin/python" "$db"
done

# --- benchmarks smoke: every workload of benchmarks/ at its smoke size ------
# (seconds; never the full size). SQLite always, PostgreSQL when asked for; a
# workload that errors fails the run. The peers are installed by name rather
# than through the 'bench' extra, whose eventsourcing-django would move Django
# back to 5.2 in this venv on Python >= 3.12; eventsourcing-django goes in with
# --no-deps, as its metadata refuses Django 5.2 on Python 3.11 (it runs on it).

section "benchmarks smoke"
"$VENV/bin/python" "${PIP_INSTALL[@]}" "eventsourcing[postgres]>=9.4,<9.5" "matplotlib>=3.8" \
    || die "installing the benchmarks' peers into $VENV failed"
"$VENV/bin/python" "${PIP_INSTALL[@]}" --no-deps "eventsourcing-django==0.6" \
    || die "installing eventsourcing-django into $VENV failed"
bench_out="$(mktemp -d "${TMPDIR:-/tmp}/orchestrix-bench-smoke.XXXXXX")"
for db in sqlite postgresql; do
    [[ "$db" == sqlite ]] || contains "${DATABASES[*]}" "$db" || continue
    # A database name of this run's own: two runs on one server must not drop each other's.
    "$VENV/bin/python" -m benchmarks --db "$db" --size smoke --out "$bench_out/$db" \
        --pg-name "orchestrix_bench_smoke_$$" \
        || die "benchmarks smoke failed on $db (python -m benchmarks --db $db --size smoke; report in $bench_out/$db)"
done

# --- the extra interpreters ------------------------------------------------

EXTRA_DATABASES=()
case "${ORCHESTRIX_DJANGO_EXTRA_DATABASES:-}" in
    all) EXTRA_DATABASES=("${DATABASES[@]}") ;;
    "")
        EXTRA_DATABASES=("${DATABASES[0]}")
        if contains "${DATABASES[*]}" postgresql; then
            EXTRA_DATABASES=(postgresql)
        fi
        ;;
    *)
        for db in ${ORCHESTRIX_DJANGO_EXTRA_DATABASES//,/ }; do
            contains "${DATABASES[*]}" "$db" \
                || die "ORCHESTRIX_DJANGO_EXTRA_DATABASES names $db, which ORCHESTRIX_TEST_DATABASES does not ask for"
            EXTRA_DATABASES+=("$db")
        done
        ;;
esac

for version in $ORCHESTRIX_TEST_PYTHONS; do
    venv=".venv-py$version"
    section "virtual environment ($venv)"
    interpreter="$(find_python "$version")" \
        || die "Python $version was asked for in ORCHESTRIX_TEST_PYTHONS but no working python$version was found (tried pyenv and PATH)"
    ensure_venv "$venv" "$interpreter"
    if contains "$ORCHESTRIX_DJANGO_PYTHONS" "$version"; then
        "$venv/bin/python" "${PIP_INSTALL[@]}" -e ".[test$DRIVER_EXTRAS]" \
            || die "installing the project into $venv failed"
        django="$(django_version "$venv/bin/python")"
        echo "Python $version, Django $django"
    else
        "$venv/bin/python" "${PIP_INSTALL[@]}" pytest pytest-timeout hypothesis -e . \
            || die "installing the project into $venv failed"
        django=""
        echo "Python $version, core tests only"
    fi

    section "core tests on Python $version"
    run_core_tests "$venv/bin/python"

    if [[ -n "$django" ]]; then
        for db in "${EXTRA_DATABASES[@]}"; do
            # The tests marked slow (worker processes killed and restarted,
            # outages) run on the main interpreter only: they test processes
            # and brokers, not the Django version.
            section "Django $django tests on Python $version, $db (not marked slow)"
            run_django_tests "$venv/bin/python" "$db" -m "not slow"
        done
    fi
done

end_stage
printf '\n==> all checks passed\n'
