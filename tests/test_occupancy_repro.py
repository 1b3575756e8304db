"""Smoke test of papers_repro/correlated_proxies.py in quick mode (slow: ~40 s)."""

import pytest

from papers_repro._harness import run_module


@pytest.mark.slow
def test_correlated_proxies_quick(tmp_path):
    report = run_module("correlated_proxies", tmp_path, quick=True)
    failed = [c.name for c in report.claims if not c.passed]
    assert report.passed, failed
    assert len(report.figures) == 3 and all(p.exists() for p in report.figures)
    assert (tmp_path / "claims.json").exists()
