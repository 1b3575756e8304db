"""``klsim-llm train | eval | bench``: the training subcommands (registered into :mod:`klsim_llm.cli`).

Examples
--------
    klsim-llm train klsim_llm/configs/default.yaml --set steps=50 --set log.out_dir=runs/demo
    klsim-llm train cfg.yaml --resume                     # continue from the newest checkpoint
    torchrun --nproc_per_node 2 -m klsim_llm.cli train cfg.yaml            # DDP (gloo on CPU)
    accelerate launch --num_processes 2 -m klsim_llm.cli train cfg.yaml    # same entry point
    klsim-llm eval runs/demo/checkpoints/step_50 --samples 64
    klsim-llm bench --quick
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["register", "main", "evaluate", "default_config_path"]


def default_config_path() -> Path:
    """The packaged small default config (tiny llama on the synthetic ``count`` task)."""
    return Path(__file__).resolve().parent / "configs" / "default.yaml"


def _train(ns: argparse.Namespace) -> int:
    from klsim_llm.config import load_config
    from klsim_llm.trainer import Trainer

    overrides = list(ns.set or [])
    if ns.out:
        overrides.append(f"log.out_dir={ns.out}")
    cfg = load_config(ns.config, overrides)
    tr = Trainer(cfg, resume=ns.resume)
    rows = tr.train()
    if tr.rank == 0:
        last = rows[-1] if rows else {"step": tr.step}
        keys = ("step", "reward", "loss", "kl_k1", "drift_kl_init", "grad_norm")
        print(json.dumps({k: last[k] for k in keys if k in last}))
        print(f"metrics: {tr.out_dir / 'metrics.jsonl'}")
    return 0


def evaluate(
    policy,
    reference,
    task,
    *,
    n_samples: int = 32,
    max_new_tokens: int = 8,
    temperature: float = 1.0,
    seed: int = 0,
    eos_token_id: int | None = None,
) -> dict:
    """Reward, KL to the reference and win rate against it, on ``n_samples`` responses per prompt.

    Returns a dict with ``reward`` (mean over policy samples), ``reward_ref``, ``kl_seq_k1`` (mean of
    Σ_t log π/π_ref over policy samples: unbiased for the sequence KL at T = 1), ``kl_full_vocab``
    (mean of Σ_t KL(π_t ‖ π_ref,t) at the sampled prefixes), and ``win_rate``: P(y ≻ y') with
    y ~ π, y' ~ π_ref, from the task preference when it has one, else 1[r(y) > r(y')] + ½·1[r(y) = r(y')].
    """
    import torch

    from klsim_llm.logprobs import token_logprobs
    from klsim_llm.references import full_vocab_kl
    from klsim_llm.rollout import generate, left_pad, sample_seeds

    pad = task.pad_token_id
    prompts = [
        task.prompts[i % len(task.prompts)] for i in range(len(task.prompts)) for _ in range(n_samples)
    ]
    pid, pm = left_pad(prompts, pad)
    idx = range(len(prompts))
    kw = dict(
        max_new_tokens=max_new_tokens, temperature=temperature, eos_token_id=eos_token_id, pad_token_id=pad
    )
    ro = generate(policy, pid, pm, sample_seeds(seed, 0, idx, stream=100), **kw)
    rr = generate(reference, pid, pm, sample_seeds(seed, 0, idx, stream=101), **kw)
    with torch.no_grad():
        lp = token_logprobs(policy, ro.input_ids, ro.attention_mask, ro.prompt_len, return_logits=True)
        lq = token_logprobs(reference, ro.input_ids, ro.attention_mask, ro.prompt_len, return_logits=True)
        m = ro.response_mask
        r = task.reward(ro.prompt_ids, ro.response_ids, m).double()
        r_ref = task.reward(rr.prompt_ids, rr.response_ids, rr.response_mask).double()
        try:
            win = task.preference(
                ro.prompt_ids, ro.response_ids, m, rr.response_ids, rr.response_mask
            ).double()
        except NotImplementedError:
            win = (r > r_ref).double() + 0.5 * (r == r_ref).double()
    return {
        "reward": float(r.mean()),
        "reward_ref": float(r_ref.mean()),
        "kl_seq_k1": float(((lp.logp - lq.logp).double() * m).sum(-1).mean()),
        "kl_full_vocab": float(full_vocab_kl(lp.logits, lq.logits, m).mean()),
        "win_rate": float(win.mean()),
        "n": len(prompts),
    }


def _model_folder(path: Path) -> Path:
    return path / "model" if (path / "model" / "config.json").is_file() else path


def _eval(ns: argparse.Namespace) -> int:
    import torch
    from transformers import AutoModelForCausalLM

    from klsim_llm.checkpoint import load_checkpoint
    from klsim_llm.config import config_from_dict, load_config
    from klsim_llm.rollout import make_task
    from klsim_llm.trainer import build_model

    path = Path(ns.checkpoint)
    if ns.config:
        cfg = load_config(ns.config, ns.set or [])
    elif (path / "state.pt").is_file():
        cfg = config_from_dict(load_checkpoint(path)["config"])
    else:
        print("error: give --config for a plain model folder", file=sys.stderr)
        return 2
    dtype = torch.float64 if cfg.model.dtype == "float64" else torch.float32
    policy = AutoModelForCausalLM.from_pretrained(
        _model_folder(path), local_files_only=True, dtype=dtype
    ).eval()
    task = make_task(cfg.task.name, cfg.task.kwargs)
    if ns.ref:
        ref = AutoModelForCausalLM.from_pretrained(
            _model_folder(Path(ns.ref)), local_files_only=True, dtype=dtype
        )
    else:  # the run's initial model (rebuilt from the config and seed)
        ref = build_model(cfg.model, vocab_size=len(task.tokenizer), seed=cfg.seed, tokenizer=task.tokenizer)
    out = evaluate(
        policy,
        ref.eval(),
        task,
        n_samples=ns.samples,
        max_new_tokens=cfg.rollout.max_new_tokens,
        temperature=cfg.rollout.temperature,
        seed=cfg.seed,
        eos_token_id=getattr(task, "eos_token_id", None),
    )
    print(json.dumps(out))
    if ns.out:
        Path(ns.out).write_text(json.dumps(out, indent=2))
    return 0


def _bench(ns: argparse.Namespace) -> int:
    from benchmarks import run_all

    return run_all(quick=ns.quick, only="bench_llm", out=Path(ns.out))


def register(subparsers) -> None:
    """Add ``train``, ``eval`` and ``bench`` to the ``klsim-llm`` subparsers."""
    t = subparsers.add_parser(
        "train", help="train a model from a YAML/JSON config (torchrun/accelerate ready)"
    )
    t.add_argument("config", help="config file (YAML or JSON); see klsim_llm/configs/default.yaml")
    t.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. kl.beta=0.1"
    )
    t.add_argument("--out", default=None, help="shorthand for --set log.out_dir=OUT")
    t.add_argument("--resume", action="store_true", help="resume from the newest checkpoint in log.out_dir")
    t.set_defaults(func=_train)
    e = subparsers.add_parser("eval", help="reward, KL to the reference and win rate against it")
    e.add_argument("checkpoint", help="a checkpoint folder (step_<k>) or a from_pretrained model folder")
    e.add_argument("--config", default=None, help="config (default: the one stored in the checkpoint)")
    e.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    e.add_argument("--ref", default=None, help="reference model folder (default: the run's initial model)")
    e.add_argument("--samples", type=int, default=32, help="responses per prompt")
    e.add_argument("--out", default=None, help="write the metrics as JSON here")
    e.set_defaults(func=_eval)
    b = subparsers.add_parser(
        "bench", help="tokens/s and peak memory of one training step (vs TRL GRPOTrainer)"
    )
    b.add_argument("--quick", action="store_true", help="a smaller model (stated in the output)")
    b.add_argument("--out", default="bench_out", help="folder for bench.json")
    b.set_defaults(func=_bench)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m klsim_llm.train_cli train cfg.yaml``)."""
    p = argparse.ArgumentParser(prog="klsim-llm")
    register(p.add_subparsers(dest="command", required=True))
    ns = p.parse_args(argv)
    return int(ns.func(ns) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
