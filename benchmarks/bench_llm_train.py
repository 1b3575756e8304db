"""One training step of the klsim_llm trainer vs TRL's ``GRPOTrainer`` on the same model and batch.

Model: a GPT-2-small-sized architecture built from a config (12 layers, 768 wide, 12 heads, vocabulary
50,257, random weights, nothing downloaded); ``quick`` uses a smaller GPT-2 (1 layer, 128 wide, vocabulary
4,096, 8-token completions) and says so in the row name.  Batch: 2 prompts × G = 4 completions, prompt 8 tokens, completion
``T`` tokens sampled to full length (no EOS), β = 0.04, k3 KL in the loss (TRL GRPO's default form),
one optimizer step (AdamW).  A step = generation + reference and policy log-probs + loss + backward +
optimizer step, for both.

Each side runs in a fresh subprocess (``python -m benchmarks.bench_llm_train --worker NAME``) so that
peak memory is its own: peak RSS minus RSS after set-up on CPU (``ru_maxrss``), or
``torch.cuda.max_memory_allocated`` on GPU (bf16 autocast for klsim_llm, ``bf16=True`` for TRL).  The
reported time is the median over the steps after the first (warm-up).  Tokens/s counts
prompt + completion tokens of the whole batch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["run"]

_ROOT = Path(__file__).resolve().parents[1]


def _sizes(quick: bool) -> dict:
    if quick:  # < 60 s for both sides on a busy 2-core machine
        return {
            "n_layer": 1,
            "n_embd": 128,
            "n_head": 2,
            "vocab": 4096,
            "T": 8,
            "steps": 2,
            "label": "gpt2-1x128 (quick)",
        }
    return {
        "n_layer": 12,
        "n_embd": 768,
        "n_head": 12,
        "vocab": 50257,
        "T": 32,
        "steps": 4,
        "label": "gpt2-small 124M",
    }


def _words(vocab: int) -> list[str]:
    return ["<pad>", "<eos>"] + [f"w{i}" for i in range(vocab - 2)]


def _rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _model(sz: dict):
    import torch
    from transformers import AutoModelForCausalLM, GPT2Config

    cfg = GPT2Config(
        vocab_size=sz["vocab"],
        n_positions=64,
        n_embd=sz["n_embd"],
        n_layer=sz["n_layer"],
        n_head=sz["n_head"],
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=1,
        eos_token_id=1,
    )
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg)


def _worker_klsim(sz: dict) -> dict:
    import torch

    from klsim_llm.config import config_from_dict
    from klsim_llm.rollout import Task, build_tokenizer
    from klsim_llm.trainer import Trainer

    class _Task(Task):
        def __init__(self):
            self.tokenizer = build_tokenizer(_words(sz["vocab"]), pad="<pad>", eos="<eos>")
            self.prompts = [list(range(2 + 8 * i, 10 + 8 * i)) for i in range(2)]

        def reward(self, prompt_ids, response_ids, response_mask):
            return ((response_ids == 2).double() * response_mask).sum(-1)

    cfg = config_from_dict(
        {
            "method": "pg",
            "algo": {"objective": "grpo"},
            "model": {"from_config": {"model_type": "gpt2"}},
            "kl": {"beta": 0.04, "estimator": "k3", "aggregation": "token_mean"},
            "rollout": {
                "max_new_tokens": sz["T"],
                "prompts_per_step": 2,
                "group_size": 4,
                "stop_at_eos": False,
            },
            "optim": {"lr": 1e-6},
            "steps": sz["steps"],
            "reference": {"drift_every": 0},  # TRL logs no drift; the probe costs one extra forward
            "log": {"out_dir": "/tmp/klsim_bench_llm", "progress": False},
        }
    )
    tr = Trainer(cfg, model=_model(sz), task=_Task())
    tr.eos_id = None  # full-length completions, as on the TRL side
    base = torch.cuda.memory_allocated() if torch.cuda.is_available() else _rss()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(sz["steps"]):
        t0 = time.perf_counter()
        tr.train_step()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else _rss()
    return {"times": times, "peak_bytes": peak - base}


def _worker_trl(sz: dict) -> dict:
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from klsim_llm.rollout import build_tokenizer

    tok = build_tokenizer(_words(sz["vocab"]), pad="<pad>", eos="<eos>")
    prompts = [" ".join(f"w{j}" for j in range(8 * i, 8 * i + 8)) for i in range(2)]
    ds = Dataset.from_dict({"prompt": prompts * (2 * sz["steps"])})

    def reward(prompts, completions, **kw):
        return [float(c.split().count("w0")) for c in completions]

    times: list[float] = []

    class _Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times.append(time.perf_counter() - self.t0)

    args = GRPOConfig(
        output_dir="/tmp/klsim_bench_trl",
        beta=0.04,
        num_generations=4,
        per_device_train_batch_size=8,
        max_completion_length=sz["T"],
        max_steps=sz["steps"],
        learning_rate=1e-6,
        logging_steps=1000,
        save_strategy="no",
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
        bf16=torch.cuda.is_available(),
        temperature=1.0,
        seed=0,
    )
    model = _model(sz)
    folder = Path("/tmp/klsim_bench_trl/model")
    model.save_pretrained(folder)  # TRL re-creates its reference model from the model's path
    tok.save_pretrained(folder)
    model.config._name_or_path = str(folder)
    model.generation_config.eos_token_id = None  # full-length completions
    tr = GRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=ds, processing_class=tok)
    tr.add_callback(_Clock())
    base = torch.cuda.memory_allocated() if torch.cuda.is_available() else _rss()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    tr.train()
    peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else _rss()
    return {"times": times, "peak_bytes": peak - base}


def _spawn(name: str, quick: bool) -> dict:
    env = dict(os.environ, PYTHONPATH=str(_ROOT), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    cmd = [sys.executable, "-m", "benchmarks.bench_llm_train", "--worker", name] + (
        ["--quick"] if quick else []
    )
    r = subprocess.run(cmd, cwd=_ROOT, env=env, capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        return {"error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"}
    return json.loads(r.stdout.strip().splitlines()[-1])


def run(quick: bool) -> list[dict]:
    """Rows: klsim_llm step vs TRL GRPOTrainer step (``ratio`` = klsim_s / trl_s; < 1: klsim faster)."""
    import statistics

    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:  # pragma: no cover
        raise ImportError(f"klsim_llm benchmark needs torch + transformers: {exc}") from exc
    sz = _sizes(quick)
    tokens = 8 * (8 + sz["T"])
    ours = _spawn("klsim", quick)
    peer = _spawn("trl", quick)
    device = "cuda" if __import__("torch").cuda.is_available() else "cpu"
    row = {"name": f"train_step[{sz['label']}, B=8, T={sz['T']}, {device}]", "peer": "trl.GRPOTrainer"}
    if "error" in ours:
        raise RuntimeError(f"klsim_llm worker failed: {ours['error']}")
    k_s = statistics.median(ours["times"][1:] or ours["times"])
    row.update(klsim_s=k_s, tokens_per_s=tokens / k_s, peak_mb=ours["peak_bytes"] / 2**20)
    if "error" in peer:
        row.update(peer_s=float("nan"), ratio=float("nan"), peer_error=peer["error"][:200])
    else:
        p_s = statistics.median(peer["times"][1:] or peer["times"])
        row.update(
            peer_s=p_s,
            ratio=k_s / p_s,
            peer_tokens_per_s=tokens / p_s,
            peer_peak_mb=peer["peak_bytes"] / 2**20,
            target="ratio <= 1.5",
            met=k_s / p_s <= 1.5,
        )
    return [row]


def _main() -> None:
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--worker", choices=("klsim", "trl"), required=True)
    p.add_argument("--quick", action="store_true")
    ns = p.parse_args()
    sz = _sizes(ns.quick)
    out = _worker_klsim(sz) if ns.worker == "klsim" else _worker_trl(sz)
    print(json.dumps(out))


if __name__ == "__main__":
    _main()
