"""Distributed training on CPU with gloo and 2 processes (spec §9 claim 6, issue 8 item 3).

The same entry point (``python -m klsim_llm.train_cli train CFG``) runs under ``torch.distributed.run``
(torchrun) with DDP and with FSDP2, and under ``accelerate launch`` with DDP; its final weights must equal one process with the same global batch, and one process
with gradient accumulation 2, after 5 steps: relative ≤ 1e-9 in float64.

FSDP2 also resumes exactly (full optimizer state in the checkpoint: a killed-and-resumed 2-process run
equals the uninterrupted one to 1e-12 abs) and runs the moving references (ema, tr_sync, elastic_reset,
hard_reset) equal to one process to 1e-9.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
yaml = pytest.importorskip("yaml")

pytestmark = [pytest.mark.llm, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def _cfg(tmp: Path, name: str, sections: dict | None = None, **dist) -> Path:
    cfg = {
        "method": "pg",
        "algo": {"objective": "grpo"},
        "task": {"name": "count", "kwargs": {"n_words": 4, "n_prompts": 8, "seed": 1}},
        "model": {
            "from_config": {
                "model_type": "llama",
                "hidden_size": 8,
                "intermediate_size": 16,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "num_key_value_heads": 2,
                "max_position_embeddings": 16,
            },
            "dtype": "float64",
        },
        # token-mean k3 (TRL GRPO's form): exercises the global active-token count across ranks and
        # micro-batches (responses stop at EOS, so token counts differ between shards)
        "kl": {"beta": 0.1, "estimator": "k3", "aggregation": "token_mean"},
        "rollout": {"max_new_tokens": 3, "prompts_per_step": 4, "group_size": 2},
        "optim": {"lr": 0.01},
        "steps": 5,
        "dist": {"backend": "gloo", **dist},
        "log": {"out_dir": str(tmp / name), "progress": False, "keep_checkpoints": 1},
    }
    for sec, v in (sections or {}).items():
        cfg[sec] = {**cfg[sec], **v} if isinstance(v, dict) and sec in cfg else v
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _env() -> dict:
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false"
    )
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _final_state(tmp: Path, name: str) -> dict:
    from klsim_llm.checkpoint import latest_checkpoint, load_checkpoint

    ck = latest_checkpoint(tmp / name)
    assert ck is not None and ck.name == "step_5"
    return load_checkpoint(ck)


def _final_policy(tmp: Path, name: str) -> dict:
    return _final_state(tmp, name)["policy"]


def _max_rel(a: dict, b: dict) -> float:
    worst = 0.0
    for k, v in a.items():
        if torch.is_floating_point(v):
            d = float((v - b[k]).abs().max()) / max(1e-12, float(v.abs().max()))
            worst = max(worst, d)
    return worst


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(cfg: Path, name: str, launcher: str = "torchrun", args: tuple = (), n_rows: int = 5) -> None:
    import json

    if launcher == "torchrun":
        run = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=0"]
        run += ["--rdzv_backend=c10d", "--rdzv_endpoint=localhost:0"]
    else:  # accelerate launch: --multi_gpu selects its torchrun-style launcher; the trainer picks gloo on CPU
        run = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes=2"]
        run += [
            "--num_machines=1",
            "--mixed_precision=no",
            "--dynamo_backend=no",
            f"--main_process_port={_free_port()}",
        ]
    run += list(args) or ["-m", "klsim_llm.train_cli", "train", str(cfg)]
    r = subprocess.run(run, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(x) for x in (cfg.parent / name / "metrics.jsonl").read_text().splitlines()]
    assert [r["world_size"] for r in rows] == [2] * n_rows  # really two ranks, each with half the batch


def test_torchrun_ddp_and_fsdp_two_processes_equal_single_process(tmp_path):
    single = _cfg(tmp_path, "single")
    accum = _cfg(tmp_path, "accum", grad_accum=2)
    from klsim_llm.config import load_config
    from klsim_llm.trainer import Trainer

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for path in (single, accum):  # the one-process runs in-process (same code path, no launcher)
            Trainer(load_config(path)).train()
    finally:
        torch.set_num_threads(n)
    _launch(_cfg(tmp_path, "ddp"), "ddp")
    _launch(_cfg(tmp_path, "fsdp", strategy="fsdp"), "fsdp")  # FSDP2 fully_shard runs on CPU/gloo here
    _launch(_cfg(tmp_path, "acc"), "acc", launcher="accelerate")
    p1, pa, pd, pf, pc = (_final_policy(tmp_path, n) for n in ("single", "accum", "ddp", "fsdp", "acc"))
    assert _max_rel(p1, _init_policy(single)) > 1e-4  # training moved the weights
    assert _max_rel(p1, pd) <= 1e-9
    assert _max_rel(p1, pa) <= 1e-9
    assert _max_rel(p1, pf) <= 1e-9
    assert _max_rel(p1, pc) <= 1e-9


def _init_policy(cfg_path: Path) -> dict:
    from klsim_llm.config import load_config
    from klsim_llm.rollout import make_task
    from klsim_llm.trainer import build_model

    cfg = load_config(cfg_path)
    task = make_task(cfg.task.name, cfg.task.kwargs)
    m = build_model(cfg.model, vocab_size=len(task.tokenizer), seed=cfg.seed, tokenizer=task.tokenizer)
    return {k: v.detach() for k, v in m.state_dict().items()}


# ---------------------------------------------------------------------------------------------------------
# FSDP2: exact resume (optimizer state included) and moving references
# ---------------------------------------------------------------------------------------------------------


def _max_abs(a: dict, b: dict) -> float:
    return max(float((v - b[k]).abs().max()) for k, v in a.items() if torch.is_floating_point(v))


def _rows(tmp: Path, name: str) -> list[dict]:
    import json

    return [json.loads(x) for x in (tmp / name / "metrics.jsonl").read_text().splitlines()]


def _single(path: Path, resume: Path | None = None, drop_optimizer_state: bool = False) -> None:
    """A one-process run in-process (same code path, no launcher); optionally resumed from ``resume``
    with its Adam moments dropped afterwards (to show the comparison sees the optimizer state)."""
    from klsim_llm.config import load_config
    from klsim_llm.trainer import Trainer

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        tr = Trainer(load_config(path), resume=resume or False)
        if resume is not None:
            assert tr.step == int(resume.name.removeprefix("step_"))
        if drop_optimizer_state:
            assert tr.optimizer.state  # the FSDP checkpoint restored Adam's moments ...
            tr.optimizer.state.clear()  # ... which this run forgets
        tr.train()
    finally:
        torch.set_num_threads(n)


def _fsdp_sections(reference: dict, **log) -> dict:
    # every run says strategy=fsdp (with 1 process nothing is wrapped), so the checkpoints of 1- and
    # 2-process runs share one format; AdamW (the default optimizer) keeps per-parameter state
    return {"reference": {"probe_size": 2, **reference}, "log": log, "optim": {"optimizer": "adamw"}}


def _assert_drift_equal(rows_1: list[dict], rows_2: list[dict], moving: bool = True) -> None:
    assert len(rows_1) == len(rows_2)
    for a, b in zip(rows_1, rows_2):
        for k in ("drift_kl_init", "ref_drift_cum"):
            assert abs(a[k] - b[k]) <= 1e-9, (a["step"], k, a[k], b[k])
    assert rows_1[-1]["drift_kl_init"] > 0  # drift was logged
    assert (rows_1[-1]["ref_drift_cum"] > 0) == moving  # ... and the reference moved (or stayed)


def test_fsdp_exact_resume_with_ema_reference(tmp_path):
    """FSDP2 with an EMA anchor (WARP: SLERP + LITI every 3 steps, which rewrites the sharded policy),
    checkpoint at step 2, 5 steps.  A fresh 2-process run resumed from step 2 (``train --resume``) ends
    at the uninterrupted 2-process weights (≤ 1e-12 abs) and both at the 1-process weights (≤ 1e-9 rel).
    Old code refused ``reference.mode=ema`` under FSDP and refused to resume FSDP checkpoints."""
    import shutil

    ref = {"mode": "ema", "ema_rate": 0.3, "update_every": 3, "liti_eta": 0.5, "slerp_lambda": 0.5}
    sec = _fsdp_sections(ref, checkpoint_every=2, keep_checkpoints=5)
    single = _cfg(tmp_path, "single", sec, strategy="fsdp")
    _single(single)
    _launch(_cfg(tmp_path, "fsdp", sec, strategy="fsdp"), "fsdp")
    ck2 = tmp_path / "fsdp" / "checkpoints" / "step_2"  # what a run killed during step 3 leaves
    resume = _cfg(tmp_path, "resume", sec, strategy="fsdp")
    shutil.copytree(ck2, tmp_path / "resume" / "checkpoints" / "step_2")
    _launch(resume, "resume", args=("-m", "klsim_llm.train_cli", "train", str(resume), "--resume"), n_rows=3)
    # the FSDP checkpoint resumes a 1-process run too (full state dicts), with and without Adam's moments
    _single(_cfg(tmp_path, "single_from_fsdp", sec, strategy="fsdp"), resume=ck2)
    _single(_cfg(tmp_path, "dropped", sec, strategy="fsdp"), resume=ck2, drop_optimizer_state=True)

    s1, s2, sr = (_final_state(tmp_path, n) for n in ("single", "fsdp", "resume"))
    p1, p2, pr = s1["policy"], s2["policy"], sr["policy"]
    assert _max_rel(p1, _init_policy(single)) > 1e-4  # training moved the weights
    assert [r["step"] for r in _rows(tmp_path, "resume")] == [3, 4, 5]
    assert any(r.get("liti") for r in _rows(tmp_path, "fsdp"))  # LITI rewrote the sharded policy
    assert _max_abs(p2, pr) <= 1e-12  # kill/resume == uninterrupted, 2 processes
    assert _max_rel(p1, p2) <= 1e-9 and _max_rel(p1, pr) <= 1e-9  # == 1 process
    for part in ("model", "init"):  # the EMA anchor and θ_init equal the 1-process ones
        assert _max_rel(s1["reference"][part], s2["reference"][part]) <= 1e-9
        assert _max_abs(s2["reference"][part], sr["reference"][part]) <= 1e-12
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(  # the save_pretrained folder holds the full weights too
        ck2.parent / "step_5" / "model", local_files_only=True, dtype=torch.float64
    )
    assert _max_abs(p2, hf.state_dict()) == 0.0
    opt = s2["optimizer"]["state"]  # full (unsharded) Adam moments, keyed by parameter name
    assert all(opt[k]["exp_avg"].shape == p2[k.removeprefix("model.")].shape for k in opt)
    assert _max_rel(p1, _final_policy(tmp_path, "single_from_fsdp")) <= 1e-9
    assert _max_rel(p1, _final_policy(tmp_path, "dropped")) > 1e-6  # the optimizer state matters
    _assert_drift_equal(_rows(tmp_path, "single"), _rows(tmp_path, "fsdp"))
    _assert_drift_equal(_rows(tmp_path, "single")[2:], _rows(tmp_path, "resume"))


_TRAIN_MANY = """
import sys
from klsim_llm.config import load_config
from klsim_llm.trainer import Trainer
for path in sys.argv[1:]:
    Trainer(load_config(path)).train()
"""


def test_fsdp_moving_references_equal_single_process(tmp_path):
    """tr_sync, elastic_reset (θ ← θ_ema written back into the shards) and hard_reset (fresh optimizer)
    under FSDP2 with 2 processes equal 1 process: weights and reference ≤ 1e-9 rel, drift ≤ 1e-9 abs.
    (One launch runs the three configs in turn; old code refused all three under FSDP.)"""
    modes = {
        "tr_sync": {"mode": "tr_sync", "update_every": 2, "tr_alpha": 0.5},
        "elastic_reset": {"mode": "elastic_reset", "update_every": 2, "ema_rate": 0.3},
        "hard_reset": {"mode": "hard_reset", "update_every": 2},
    }
    script = tmp_path / "train_many.py"
    script.write_text(_TRAIN_MANY)
    cfgs = {}
    for name, ref in modes.items():
        sec = _fsdp_sections(ref)
        _single(_cfg(tmp_path, f"single_{name}", sec, strategy="fsdp"))
        cfgs[name] = _cfg(tmp_path, f"fsdp_{name}", sec, strategy="fsdp")
    _launch(cfgs["tr_sync"], "fsdp_tr_sync", args=(str(script), *map(str, cfgs.values())))
    for name in modes:
        s1, s2 = _final_state(tmp_path, f"single_{name}"), _final_state(tmp_path, f"fsdp_{name}")
        rows = _rows(tmp_path, f"fsdp_{name}")
        assert [r["world_size"] for r in rows] == [2] * 5
        flag = {"tr_sync": "ref_updated", "elastic_reset": "elastic_reset", "hard_reset": "hard_reset"}[name]
        assert [r["step"] for r in rows if r.get(flag)] == [2, 4]  # the rule fired
        assert _max_rel(s1["policy"], s2["policy"]) <= 1e-9, name
        assert _max_rel(s1["reference"]["model"], s2["reference"]["model"]) <= 1e-9, name
        _assert_drift_equal(_rows(tmp_path, f"single_{name}"), rows, moving=name != "elastic_reset")
