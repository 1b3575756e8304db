"""Side-by-side benchmarks of klsim against its strongest peers, run by ``klsim bench``.

Each ``benchmarks/bench_<family>.py`` defines ``run(quick: bool) -> list[dict]``; each dict is one row:
``{"name", "klsim_s", "peer", "peer_s", "ratio", ...}`` (``ratio = klsim_s / peer_s``; < 1 means klsim
is faster), plus optional extras such as ``"bandwidth_fraction"``, ``"target"`` and ``"met"``.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import platform
from pathlib import Path

__all__ = ["run_all", "list_benchmarks"]


def list_benchmarks() -> list[str]:
    """Names of the benchmark modules."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name.startswith("bench_"))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def run_all(quick: bool = False, only: str | None = None, out: Path = Path("bench_out")) -> int:
    """Run every benchmark module, print one table, write ``bench.json``; return a process exit code."""
    rows = []
    for name in list_benchmarks():
        if only and only not in name:
            continue
        mod = importlib.import_module(f"benchmarks.{name}")
        print(f"== {name}", flush=True)
        try:
            new = mod.run(quick=quick)
        except ImportError as exc:  # optional peer (e.g. TRL, torch) missing
            print(f"   skipped: {exc}")
            continue
        for r in new:
            r.setdefault("module", name)
            print("   " + "  ".join(f"{k}={_fmt(v)}" for k, v in r.items() if k != "module"), flush=True)
        rows.extend(new)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"machine": platform.platform(), "processor": platform.processor(), "quick": quick}
    (out / "bench.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2, default=float))
    print(f"\nwrote {out / 'bench.json'}")
    missed = [r["name"] for r in rows if r.get("met") is False]
    if missed:
        print("targets missed: " + ", ".join(missed))
    return 0
