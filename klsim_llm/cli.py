"""The ``klsim-llm`` command: ``list [registry]``, ``audit`` / ``audit-kl``; ``train``/``eval``/``bench`` come
from :mod:`klsim_llm.train_cli` when it is present.

Examples
--------
    klsim-llm list objectives
    klsim-llm audit --out audit_out
    klsim-llm audit-kl --preset trl_grpo --preset trl_rloo
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["main", "build_parser"]


def _list(ns: argparse.Namespace) -> int:
    from klsim_llm.registry import REGISTRIES

    names = [ns.registry] if ns.registry else list(REGISTRIES)
    for key in names:
        if key not in REGISTRIES:
            print(f"error: unknown registry {key!r}; valid: {', '.join(REGISTRIES)}", file=sys.stderr)
            return 2
        print(f"[{key}]")
        for name, e in sorted(REGISTRIES[key].items()):
            print(f"  {name:<24} {e.family:<10} twin={e.twin}  {e.paper}")
    return 0


def _audit(ns: argparse.Namespace) -> int:
    from klsim_llm.audit import run_audit_cli

    return run_audit_cli(presets=ns.preset or None, out=Path(ns.out), seed=ns.seed)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser (subcommands ``list``, ``audit``, ``audit-kl``, plus ``train_cli``'s)."""
    p = argparse.ArgumentParser(prog="klsim-llm", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    pl = sub.add_parser("list", help="list registry entries")
    pl.add_argument(
        "registry",
        nargs="?",
        default=None,
        help="objectives | kl_estimators | divergences | advantages | presets",
    )
    pl.set_defaults(func=_list)
    for cmd in ("audit", "audit-kl"):
        pa = sub.add_parser(cmd, help="exact KL-estimator audit on tabular LMs (Markdown + JSON + figure)")
        pa.add_argument(
            "--preset", action="append", default=None, help="preset name (repeatable); default all"
        )
        pa.add_argument("--out", default="audit_out", help="output folder")
        pa.add_argument("--seed", type=int, default=0, help="seed of the tabular LM fixtures")
        pa.set_defaults(func=_audit)
    try:
        from klsim_llm import train_cli

        train_cli.register(sub)
    except ImportError:
        pass
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``klsim-llm``."""
    ns = build_parser().parse_args(argv)
    return int(ns.func(ns) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
