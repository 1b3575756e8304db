"""The ``klsim`` command: ``repro list``, ``repro run NAME``, ``repro all``, ``bench``.

Examples
--------
    klsim repro list
    klsim repro run leverage-the-average --quick --out out/lta
    klsim repro all --quick --out repro_out
    klsim bench --quick
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["main"]


def _repro(ns: argparse.Namespace) -> int:
    from tqdm import tqdm

    from papers_repro._harness import list_scripts, run_module, write_index

    if ns.action == "list":
        for name in list_scripts():
            print(name)
        return 0
    names = list_scripts() if ns.action == "all" else [ns.name]
    out = Path(ns.out)
    reports = {}
    bar = tqdm(names, desc="repro", unit="script", disable=len(names) == 1 and not sys.stderr.isatty())
    for name in bar:
        key = name.replace("-", "_")
        bar.set_postfix_str(key)
        sub = out / key if ns.action == "all" else out
        try:
            reports[key] = run_module(name, sub, quick=ns.quick)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        r = reports[key]
        n_ok = sum(c.passed for c in r.claims)
        tqdm.write(f"{key}: {n_ok}/{len(r.claims)} claims pass ({r.seconds:.1f} s) -> {sub}")
        for c in r.claims:
            if not c.passed:
                tqdm.write(f"  FAIL {c.name}: measured={c.measured!r} expected={c.expected!r} ({c.detail})")
    if ns.action == "all":
        # figures live in per-script subfolders; make their paths relative to the index
        index = write_index(reports, out)
        print(f"index: {index}")
    return 0 if all(r.passed for r in reports.values()) else 1


def _bench(ns: argparse.Namespace) -> int:
    from benchmarks import run_all

    return run_all(quick=ns.quick, only=ns.only, out=Path(ns.out))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``klsim``."""
    p = argparse.ArgumentParser(
        prog="klsim", description="Exact KL-regularized RL: reproductions and benchmarks."
    )
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("repro", help="run the paper reproductions")
    rsub = r.add_subparsers(dest="action", required=True)
    rsub.add_parser("list", help="list the reproduction scripts")
    run = rsub.add_parser("run", help="run one reproduction (NAME: module name; hyphens allowed)")
    run.add_argument("name")
    allp = rsub.add_parser("all", help="run every reproduction and write an index page")
    for sp, default in ((run, "repro_out/{name}"), (allp, "repro_out")):
        sp.add_argument("--quick", action="store_true", help="small preset (minutes on 2 cores)")
        sp.add_argument("--out", default=default, help=f"output folder (default {default})")
    b = sub.add_parser("bench", help="benchmarks against peers (QuantEcon, numpy, scipy, TRL)")
    b.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats")
    b.add_argument("--only", default=None, help="run only benchmark modules whose name contains this")
    b.add_argument("--out", default="bench_out", help="folder for bench.json (default bench_out)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``klsim`` command."""
    ns = build_parser().parse_args(argv)
    if ns.command == "repro":
        if ns.action == "run" and "{name}" in ns.out:
            ns.out = ns.out.format(name=ns.name.replace("-", "_"))
        return _repro(ns)
    return _bench(ns)


if __name__ == "__main__":
    sys.exit(main())
