"""``python -m benchmarks``: run the workloads, print the figures, write the report and the plot.

Usage::

    python -m benchmarks                       # SQLite, full size, every workload
    python -m benchmarks --db postgresql       # on PostgreSQL (127.0.0.1:5432, user postgres)
    python -m benchmarks --size smoke          # seconds: what CI runs
    python -m benchmarks --size medium         # minutes: a tenth of the full sizes
    python -m benchmarks --only append,load    # some workloads
    python -m benchmarks --out DIR             # default benchmarks/results/<timestamp>/

The run uses a database of its own (PostgreSQL: ``orchestrix_bench``, dropped
and created, ``--pg-name``; SQLite: a temporary file), dropped at the end
unless ``--keep-db``. The exit code is 1 when a workload failed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import shlex
import sys
import time
import traceback
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.config import SIZES
from benchmarks.context import Context
from benchmarks.db import DbConfig, create_database, drop_database, server_info
from benchmarks.peers import available_peers
from benchmarks.report import WorkloadResult, write_json
from benchmarks.workloads import WORKLOADS

__all__ = ["hardware", "main", "parse_args"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Orchestrix against raw SQL and its peers, in one run on one database.",
    )
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated workloads among: {', '.join(WORKLOADS)} (default: all)",
    )
    parser.add_argument("--out", type=Path, help="report folder (default benchmarks/results/<ts>)")
    parser.add_argument("--pg-name", default="orchestrix_bench", help="PostgreSQL database name")
    parser.add_argument("--keep-db", action="store_true", help="leave the database for a look")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile each workload with pyinstrument (profile-<workload>.txt/.html in --out)",
    )
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")
    return parser.parse_args(argv)


def hardware() -> dict[str, Any]:
    """The machine: cores, memory, CPU model, OS, Python and package versions."""
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
    }
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            models = [line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line]
        info["cpu_model"] = models[0] if models else "?"
    except OSError:
        info["cpu_model"] = platform.processor() or "?"
    try:
        with open("/proc/meminfo") as meminfo:
            total = next(line for line in meminfo if line.startswith("MemTotal"))
        info["memory_gib"] = round(int(total.split()[1]) / 1024 / 1024, 1)
    except (OSError, StopIteration):
        info["memory_gib"] = None
    versions: dict[str, str | None] = {}
    for package in ("Django", "psycopg", "eventsourcing", "eventsourcing-django", "orchestrix"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    info["packages"] = versions
    return info


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks; 0 when every workload ran (or was skipped), 1 otherwise."""
    args = parse_args(argv)
    size = SIZES[args.size]
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(WORKLOADS)
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        print(f"unknown workload(s): {', '.join(unknown)}; known: {', '.join(WORKLOADS)}")
        return 2
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out: Path = args.out or Path(__file__).resolve().parent / "results" / f"{stamp}-{args.db}"
    out.mkdir(parents=True, exist_ok=True)
    config = DbConfig.for_vendor(args.db, args.pg_name)
    started = time.perf_counter()
    print(f"benchmarks: {args.db}, size {size.name}, workloads {', '.join(names)}; report in {out}")
    create_database(config)
    ctx = Context(config=config, size=size, out=out, peers=available_peers(config))
    meta: dict[str, Any] = {
        "command": "python -m benchmarks "
        + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
        "started": stamp,
        "database": config.as_dict(),
        "server": server_info(config),
        "hardware": hardware(),
        "size": size.as_dict(),
        "peers": {name: reason or "measured" for name, reason in ctx.peers.items()},
    }
    results: list[WorkloadResult] = []
    report = out / "report.json"
    try:
        for name in names:
            result = _run_one(ctx, name, profile=args.profile)
            results.append(result)
            print(result.render(), flush=True)
            meta["seconds"] = round(time.perf_counter() - started, 1)
            write_json(report, meta, results)
    finally:
        ctx.close()
        if not args.keep_db:
            _close_django_connections()
            drop_database(config)
    if not args.no_plot:
        try:
            from benchmarks.plot import plot

            png = plot(results, out / "plot.png", title=f"{args.db}, size {size.name}")
            print(f"plot: {png}")
        except ImportError as error:
            print(f"no plot: {error} (pip install matplotlib)")
    failed = [r.key for r in results if r.status == "error"]
    print(f"\nreport: {report} ({time.perf_counter() - started:.1f} s)")
    print(json.dumps(_summary(results), indent=None))
    if failed:
        print(f"FAILED workloads: {', '.join(failed)}")
        return 1
    return 0


def _run_one(ctx: Context, name: str, *, profile: bool) -> WorkloadResult:
    module_name, title = WORKLOADS[name]
    print(f"\n-- {title} ...", flush=True)
    started = time.perf_counter()
    profiler: Any = None
    try:
        module = importlib.import_module(module_name)
        if profile:
            from pyinstrument import Profiler

            profiler = Profiler()
            profiler.start()
        result: WorkloadResult = module.run(ctx)
    except Exception as error:
        result = WorkloadResult(title.split(".")[0], title, status="error")
        result.error = f"{type(error).__name__}: {error}"
        result.traceback = traceback.format_exc()
        traceback.print_exc()
    finally:
        if profiler is not None:
            profiler.stop()
            (ctx.out / f"profile-{name}.txt").write_text(profiler.output_text(show_all=False))
            (ctx.out / f"profile-{name}.html").write_text(profiler.output_html())
    result.seconds = time.perf_counter() - started
    return result


def _summary(results: list[WorkloadResult]) -> dict[str, Any]:
    return {
        "workloads": {r.key: r.status for r in results},
        "targets": {t.description: t.met for r in results for t in r.targets if t.met is not None},
    }


def _close_django_connections() -> None:
    from django.db import connections

    connections.close_all()
