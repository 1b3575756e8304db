"""KL estimators in RLHF: what gradient do k1 / k2 / k3 / ρ·k3 / reward-to-go actually follow?

J. Schulman, "Approximating KL Divergence" (note, 2020); Y. Tang and R. Munos, "On a few pitfalls in KL
divergence gradient estimation for RL" (2025, arXiv:2506.09477); Liu et al., "Rethinking KL Regularization in
RLHF" (2025, arXiv:2510.01555); DeepSeek-AI, "DeepSeek-V3.2" (2025, arXiv:2512.02556, Eq. 7).

The audit (``klsim_llm.audit``) computes exact expected gradients on enumerable tabular LMs and reproduces the
known facts (spec ``llm-bridge.md`` §2, §9 claim 2): k1 as a loss has zero expected gradient; k3 as a loss
follows ∇FKL; ρ·k3 with a differentiable ρ follows ∇RKL on- and off-policy; k2 is unbiased on-policy only;
k3 in the reward gives ∇RKL − ∇FKL; per-token Nash-MD pairing is biased on two tokens; reward-to-go is exact.
A Monte-Carlo claim ties the production torch path (``TabularLM`` forward, selective log-softmax, registry
loss, autograd) to the exact expectation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from papers_repro._harness import Report, claim_leq, claim_true

__all__ = ["Args", "main"]


@dataclass
class Args:
    """Arguments of the KL-estimator audit reproduction."""

    out: Path = Path("repro_out/kl_estimators")
    """Output folder."""
    seed: int = 0
    """Seed of the tabular LM fixtures and of the Monte-Carlo draws."""
    mc_samples: int = 4000
    """Sampled responses in the Monte-Carlo check of the production torch path."""
    mc_checkpoints: int = 12
    """Batch sizes (log-spaced up to ``mc_samples``) in the convergence figure."""

    @classmethod
    def quick(cls) -> Args:
        """Quick preset (< 60 s)."""
        return cls(mc_samples=2000, mc_checkpoints=8)


def _mc_gradient(estimator: str, n: int, seed: int, placement: str = "loss"):
    """Sampled gradient of the registry loss on n responses drawn from the policy, through TabularLM."""
    import torch

    from klsim.sequence import expected_loss, sequence_logprobs
    from klsim_llm.registry import KL_ESTIMATORS
    from klsim_llm.tabular_lm import make_problem
    from klsim_llm.testing import TabularLM, response_logprobs

    pr = make_problem(seed=seed, n_prompts=1, n_vocab=3, max_len=2)
    rng = np.random.default_rng(seed + 100)
    q = np.exp(sequence_logprobs(pr.policy, pr.enum))[0]
    idx = rng.choice(len(q), size=n, p=q / q.sum())
    model = TabularLM(torch.tensor(pr.policy.logits), pr.enum.max_len)
    ref = TabularLM(torch.tensor(pr.ref.logits), pr.enum.max_len)
    tokens = torch.as_tensor(pr.enum.tokens[idx])
    mask = torch.as_tensor(pr.enum.mask[idx])
    prompts = torch.zeros(n, dtype=torch.long)
    lp, _ = response_logprobs(model, prompts, tokens, mask)
    with torch.no_grad():
        rl, _ = response_logprobs(ref, prompts, tokens, mask)
    entry = KL_ESTIMATORS[estimator]
    per_row = []
    for i in range(n):  # per-sample losses (seq_sum: the batch loss is their mean)
        loss, _ = entry.fn(lp[i : i + 1], rl[i : i + 1], mask[i : i + 1], placement=placement)
        per_row.append(loss)
    (g_rows,) = torch.autograd.grad(torch.stack(per_row).sum(), model.table)
    out = entry.resolve_twin()(pr.batch(), placement=placement)
    _, g_exact, rows = expected_loss(pr.policy, pr.enum, pr.samples, out, per_sample=True)
    return pr, g_rows.numpy() / n, g_exact, rows, idx


def main(args: Args) -> Report:
    """Run the audit, turn its facts into claims, add the Monte-Carlo check and the figures."""
    import torch

    from klsim.plotting import new_figure, save_figure
    from klsim.sequence import partial_fkl_grad, seq_rkl
    from klsim_llm.audit import kl_audit, write_audit

    torch.manual_seed(args.seed)
    report = Report(title="KL estimators: exact expected gradients (Schulman 2020; Tang & Munos 2025)")
    res = kl_audit(seed=args.seed)
    paths = write_audit(res, args.out)
    for f in res.facts:
        report.add(
            claim_true(
                f["id"], f["passed"], f["measured"], f"tolerance {f['tolerance']}", f["tolerance"], f["fact"]
            )
        )
    report.figures.append(paths["figure"])

    # Monte-Carlo: the production torch path converges to the exact expectation (k3 loss → per-step FKL)
    pr, g_mc, g_exact, rows, idx = _mc_gradient("k3", args.mc_samples, args.seed)
    w = pr.samples.weight
    var = np.sum(w[:, None] * (rows - g_exact.ravel()) ** 2, 0)
    ok = var > 1e-14
    z = np.abs(g_mc.ravel() - g_exact.ravel())[ok] / np.sqrt(var[ok] / args.mc_samples)
    report.add(
        claim_leq(
            "mc_k3_loss_within_5_sigma",
            float(z.max()),
            5.0,
            0.0,
            f"max |ĝ − E∇|/σ over {int(ok.sum())} coordinates, n = {args.mc_samples} torch samples",
        )
    )
    target_f = partial_fkl_grad(pr.policy, pr.ref, pr.enum)
    _, target_r = seq_rkl(pr.policy, pr.ref, pr.enum)
    report.add(
        claim_leq(
            "exact_k3_equals_partial_fkl",
            float(np.abs(g_exact - target_f).max()),
            1e-10,
            0.0,
            "exact E∇ of the k3 loss vs Σ_h d_π(h)∇KL(π_ref,h‖π_h)",
        )
    )

    # convergence figure: ‖mean of the first m sampled gradients − target‖
    ms = np.unique(np.geomspace(10, args.mc_samples, args.mc_checkpoints).astype(int))
    cums = np.cumsum(rows[idx], 0)  # exact per-sample gradients of the drawn samples
    err_f = [np.linalg.norm(cums[m - 1] / m - target_f.ravel()) for m in ms]
    err_r = [np.linalg.norm(cums[m - 1] / m - target_r.ravel()) for m in ms]
    fig, axes = new_figure(1, 1, width=4.6, height=3.4)
    ax = axes[0, 0]
    ax.loglog(ms, err_f, "o-", label="to per-step ∇FKL (its true target)")
    ax.loglog(ms, err_r, "s-", label="to ∇RKL_seq (the claimed target)")
    ax.loglog(ms, err_f[0] * np.sqrt(ms[0] / ms), "k--", lw=0.8, label="m^{-1/2}")
    ax.set_xlabel("samples m")
    ax.set_ylabel("‖mean gradient − target‖")
    ax.set_title("k3 as a loss (2 tokens, V = 3)")
    ax.legend()
    report.figures.append(save_figure(fig, args.out, "k3_loss_convergence"))
    report.data.update(
        {
            "ms": ms,
            "err_to_partial_fkl": err_f,
            "err_to_rkl_seq": err_r,
            "audit_rows": len(res.rows),
            "mc_max_z": float(z.max()),
        }
    )
    report.notes.append(
        f"Audit tables: {paths['markdown'].name}, {paths['json'].name} ({len(res.rows)} rows)."
    )
    return report


if __name__ == "__main__":
    from papers_repro._harness import run_module

    r = run_module("kl_estimators", Path(Args().out), quick=True)
    print("passed" if r.passed else "FAILED")
