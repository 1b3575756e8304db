"""The reproduction contract: :class:`Claim`, :class:`Report`, and running/writing a script's results.

Every ``papers_repro/<paper>.py`` module defines

* a citation header (module docstring),
* ``@dataclass Args`` (a docstring per field) with ``Args.quick()`` returning the quick preset,
* ``main(args: Args) -> Report``.

``run_module`` calls ``main``, then writes ``claims.json``, ``report.md`` and the PNG figures into
``args.out`` (figures are written by the script itself via :func:`klsim.plotting.save_figure`).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import pkgutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "Claim",
    "Report",
    "claim_close",
    "claim_leq",
    "claim_true",
    "list_scripts",
    "load_script",
    "run_module",
    "write_index",
]


def _jsonable(x: Any) -> Any:
    if isinstance(x, (np.floating, float)):
        v = float(x)
        return v if math.isfinite(v) else repr(v)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.bool_,)):
        return bool(x)
    if isinstance(x, np.ndarray):
        return [_jsonable(v) for v in x.tolist()] if x.ndim else _jsonable(x.item())
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    return x


@dataclass(frozen=True)
class Claim:
    """One numerically checked statement of a paper.

    Attributes
    ----------
    name : str
        Short identifier, e.g. ``"theorem1_bound_holds"``.
    measured : Any
        The measured quantity (a number, or a small structure).
    expected : Any
        What the paper/spec says it should be (a number, a bound, or a description).
    tolerance : float
        The tolerance the comparison used.
    passed : bool
        Whether the claim holds.
    detail : str
        One sentence a reader needs to interpret the numbers.
    """

    name: str
    measured: Any
    expected: Any
    tolerance: float
    passed: bool
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return _jsonable(dataclasses.asdict(self))


def claim_close(name: str, measured: float, expected: float, tol: float, detail: str = "") -> Claim:
    """Claim that ``|measured - expected| <= tol``."""
    passed = bool(np.isfinite(measured) and abs(float(measured) - float(expected)) <= tol)
    return Claim(name, float(measured), float(expected), float(tol), passed, detail)


def claim_leq(name: str, measured: float, bound: float, tol: float = 0.0, detail: str = "") -> Claim:
    """Claim that ``measured <= bound + tol``."""
    passed = bool(np.isfinite(measured) and float(measured) <= float(bound) + tol)
    return Claim(name, float(measured), f"<= {float(bound):.6g}", float(tol), passed, detail)


def claim_true(
    name: str, passed: bool, measured: Any, expected: Any, tol: float = 0.0, detail: str = ""
) -> Claim:
    """A claim whose pass/fail was decided by the caller (``measured``/``expected`` are reported)."""
    return Claim(name, _jsonable(measured), _jsonable(expected), float(tol), bool(passed), detail)


@dataclass
class Report:
    """What a reproduction script returns: its claims, its figures and the plotted numbers.

    Attributes
    ----------
    title : str
        Paper title and short citation.
    claims : list of Claim
    figures : list of Path
        PNG files written by the script.
    data : dict
        The plotted numbers (written to ``data.json``).
    notes : list of str
        Free-text observations for ``report.md`` (measured, not asserted).
    """

    title: str
    claims: list[Claim] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        """True when every claim passed."""
        return all(c.passed for c in self.claims)

    def add(self, claim: Claim) -> Claim:
        """Append a claim and return it."""
        self.claims.append(claim)
        return claim

    def write(self, out: Path) -> None:
        """Write ``claims.json``, ``data.json`` and ``report.md`` into ``out``."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "claims.json").write_text(
            json.dumps(
                {
                    "title": self.title,
                    "passed": self.passed,
                    "seconds": self.seconds,
                    "claims": [c.to_dict() for c in self.claims],
                },
                indent=2,
            )
        )
        (out / "data.json").write_text(json.dumps(_jsonable(self.data)))
        lines = [f"# {self.title}", "", f"All claims pass: **{self.passed}** ({self.seconds:.1f} s)", ""]
        lines += ["| | claim | measured | expected | tolerance | detail |", "|---|---|---|---|---|---|"]
        for c in self.claims:
            mark = "PASS" if c.passed else "FAIL"
            lines.append(
                f"| {mark} | `{c.name}` | {_short(c.measured)} | {_short(c.expected)} | {c.tolerance:g} | {c.detail} |"
            )
        if self.notes:
            lines += ["", "## Notes", ""] + [f"- {n}" for n in self.notes]
        if self.figures:
            lines += ["", "## Figures", ""] + [f"![{Path(f).stem}]({Path(f).name})" for f in self.figures]
        (out / "report.md").write_text("\n".join(lines) + "\n")


def _short(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.6g}"
    s = json.dumps(_jsonable(x)) if not isinstance(x, str) else x
    return s if len(s) <= 80 else s[:77] + "..."


def list_scripts() -> list[str]:
    """Names of the reproduction modules (every public module of ``papers_repro``)."""
    import papers_repro

    return sorted(m.name for m in pkgutil.iter_modules(papers_repro.__path__) if not m.name.startswith("_"))


def load_script(name: str):
    """Import ``papers_repro.<name>``; hyphens are accepted for underscores."""
    mod_name = name.replace("-", "_")
    valid = list_scripts()
    if mod_name not in valid:
        raise ValueError(f"unknown reproduction {name!r}; valid: {', '.join(valid)}")
    return importlib.import_module(f"papers_repro.{mod_name}")


def run_module(name: str, out: Path, quick: bool = False) -> Report:
    """Run one reproduction script into ``out`` and write its outputs."""
    mod = load_script(name)
    args = mod.Args.quick() if quick else mod.Args()
    args = dataclasses.replace(args, out=Path(out))
    t0 = time.perf_counter()
    report = mod.main(args)
    report.seconds = time.perf_counter() - t0
    report.write(Path(out))
    return report


def write_index(reports: dict[str, Report], out: Path) -> Path:
    """Write ``index.md`` and ``index.html`` linking every figure and claim of every report.

    Report ``name``'s figures are expected in ``out/name/`` (where ``klsim repro all`` runs each script).
    """
    out = Path(out)
    md = ["# klsim reproductions", ""]
    html = [
        "<!doctype html><html><head><meta charset='utf-8'><title>klsim reproductions</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}td,th{padding:2px 8px;"
        "border-bottom:1px solid #ddd}.p{color:#060}.f{color:#b00;font-weight:bold}img{max-width:100%}</style>",
        "</head><body><h1>klsim reproductions</h1>",
    ]
    n_pass = sum(c.passed for r in reports.values() for c in r.claims)
    n_all = sum(len(r.claims) for r in reports.values())
    md.append(f"{n_pass}/{n_all} claims pass.\n")
    html.append(f"<p>{n_pass}/{n_all} claims pass.</p>")
    for name, r in reports.items():
        md += [
            f"## {name}: {r.title}",
            "",
            "| | claim | measured | expected | tol |",
            "|---|---|---|---|---|",
        ]
        html.append(
            f"<h2>{name}: {r.title}</h2><table><tr><th></th><th>claim</th><th>measured</th>"
            "<th>expected</th><th>tol</th><th>detail</th></tr>"
        )
        for c in r.claims:
            mark = "✅" if c.passed else "❌"
            md.append(
                f"| {mark} | `{c.name}` | {_short(c.measured)} | {_short(c.expected)} | {c.tolerance:g} |"
            )
            cls = "p" if c.passed else "f"
            html.append(
                f"<tr><td class='{cls}'>{'PASS' if c.passed else 'FAIL'}</td><td>{c.name}</td>"
                f"<td>{_short(c.measured)}</td><td>{_short(c.expected)}</td><td>{c.tolerance:g}</td>"
                f"<td>{c.detail}</td></tr>"
            )
        html.append("</table>")
        for f in r.figures:
            rel = Path(name) / Path(f).name
            md.append(f"\n![{Path(f).stem}]({rel.as_posix()})")
            html.append(
                f"<figure><img src='{rel.as_posix()}'><figcaption>{Path(f).stem}</figcaption></figure>"
            )
    html.append("</body></html>")
    (out / "index.md").write_text("\n".join(md) + "\n")
    (out / "index.html").write_text("\n".join(html))
    return out / "index.html"
