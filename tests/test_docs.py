"""Docs coverage: every public name is documented in ``docs/api.md``; the envs guide's example runs.

``docs/architecture.md`` ("A docs-coverage test checks that every name in ``__all__`` appears in
``docs/api.md``").  A name counts as documented when it appears in backticks, optionally behind a dotted
prefix: `` `name` ``, `` `name(...)` `` or `` `klsim.module.name` ``.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

import klsim

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _undocumented(names: list[str], text: str) -> list[str]:
    return [n for n in names if not re.search(r"`(?:[A-Za-z_]\w*\.)*" + re.escape(n) + r"(?!\w)", text)]


def test_matcher_is_strict():
    text = "- `garnet(n_states, ...)`: ... and `klsim.envs.TabularEnv` and plain chain"
    assert _undocumented(["garnet", "TabularEnv", "chain", "gar", "Tabular"], text) == [
        "chain",
        "gar",
        "Tabular",
    ]


def test_every_klsim_name_is_in_api_md():
    text = (DOCS / "api.md").read_text(encoding="utf-8")
    assert len(klsim.__all__) == len(set(klsim.__all__)), "klsim.__all__ has duplicates"
    missing = _undocumented(list(klsim.__all__), text)
    assert missing == [], f"names in klsim.__all__ missing from docs/api.md: {missing}"


def test_every_klsim_all_name_exists():
    absent = [n for n in klsim.__all__ if not hasattr(klsim, n)]
    assert absent == [], f"klsim.__all__ lists names klsim does not define: {absent}"


def test_every_klsim_llm_name_is_in_api_md():
    try:
        klsim_llm = importlib.import_module("klsim_llm")
    except ModuleNotFoundError as exc:  # the optional ``llm`` extra (torch, transformers) is not installed
        if exc.name in ("torch", "transformers", "accelerate", "peft"):
            pytest.skip(f"klsim_llm needs the llm extra ({exc.name} is missing)")
        raise
    names = getattr(klsim_llm, "__all__", None)
    assert names is not None, "klsim_llm defines no __all__"
    missing = _undocumented(list(names), (DOCS / "api.md").read_text(encoding="utf-8"))
    assert missing == [], f"names in klsim_llm.__all__ missing from docs/api.md: {missing}"


def _python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)


def test_envs_page_example_runs(capsys):
    blocks = _python_blocks(DOCS / "envs.md")
    assert blocks, "docs/envs.md has no python example"
    namespace: dict = {"__name__": "docs_envs_example"}
    for block in blocks:
        exec(compile(block, str(DOCS / "envs.md"), "exec"), namespace)  # noqa: S102
    out = capsys.readouterr().out
    assert "TabularMDP(S=17, A=4, gamma=0.99, sparse, nnz=150)" in out
    assert "state 0 of 17" in out
    # the Monte-Carlo return of the optimal policy is close to v*(start) (200 episodes, returns in [0, 1])
    mc, v0 = (
        float(x) for x in re.search(r"Monte-Carlo return ([\d.]+) vs v\*\(start\) ([\d.]+)", out).groups()
    )
    assert abs(mc - v0) < 0.15


def test_readme_example_runs():
    """The README's Python example runs and its printed claims hold (KL bound, tilt beats BoN)."""
    import contextlib
    import io

    text = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README has no python example"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        namespace: dict = {}
        exec(compile(blocks[0], "README.md", "exec"), namespace)
    assert namespace["bon"].kl <= namespace["bon_kl_bound"](n_samples=4) + 1e-12
    assert (
        namespace["kl_rl_tilt"](namespace["d"], namespace["bon"].kl).expected_reward
        >= namespace["bon"].expected_reward - 1e-12
    )
    assert namespace["res"].history["error_to_opt"][-1] < namespace["res"].history["error_to_opt"][1]
