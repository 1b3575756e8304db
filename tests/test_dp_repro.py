"""Smoke test of the Leverage-the-Average reproduction in quick mode (every claim must pass)."""

from __future__ import annotations

import json

import pytest

from papers_repro._harness import run_module


@pytest.mark.slow
def test_leverage_the_average_quick(tmp_path):
    report = run_module("leverage-the-average", tmp_path, quick=True)
    failed = [c.name for c in report.claims if not c.passed]
    assert report.passed, failed
    names = {c.name for c in report.claims}
    assert {"averaging_identity_kl_only", "theorem1_bound_every_k", "kl_keeps_decreasing",
            "vi_stalls_under_noise", "entropy_bias_bounded"} <= names  # fmt: skip
    claims = json.loads((tmp_path / "claims.json").read_text())
    assert claims["passed"] is True
    for f in report.figures:
        assert f.exists() and f.stat().st_size > 1000
