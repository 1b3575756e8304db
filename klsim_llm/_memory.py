"""Peak-memory accounting on CPU (no CUDA allocator statistics exist there).

:func:`peak_extra_bytes` runs one forward + backward in a fresh subprocess with ``MALLOC_MMAP_THRESHOLD_``
at 16 MiB (so every large tensor is its own mmap, returned to the OS when freed, while small chunk temporaries are reused from the heap) and reports the rise of
the process high-water mark ``VmHWM`` (Linux ``/proc/self/status``) over the state where the inputs already
exist.  This counts every byte the process touched, allocator overhead included: an honest upper bound on
the extra tensor memory of the computation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

__all__ = ["peak_extra_bytes"]

_SCRIPT = r"""
import json, sys, time, torch
torch.set_num_threads(int(sys.argv[6]))
from klsim_llm.divergences import divergence_per_token, divergence_per_token_naive
mode, name, B, T, V = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) * 1024
def reset():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
def k3_token(name, z, zr, mask):  # the straightforward per-token k3 of TRL's GRPO, from full logits
    ids = torch.zeros(z.shape[:-1] + (1,), dtype=torch.long)
    lp = torch.log_softmax(z, -1).gather(-1, ids)[..., 0]
    lr = torch.log_softmax(zr, -1).gather(-1, ids)[..., 0]
    d = lp - lr
    return torch.expm1(-d) + d
fn = {"chunked": divergence_per_token, "naive": divergence_per_token_naive, "k3_token": k3_token}[mode]
def step(z, zr, mask):
    z.grad = None
    fn(name, z, zr, mask).sum().backward()
g = torch.Generator().manual_seed(0)
zs = torch.randn(2, 3, 7, generator=g, requires_grad=True)
step(zs, torch.randn(2, 3, 7, generator=g), None)  # warm up kernels and libraries
z = torch.randn(B, T, V, generator=g, requires_grad=True)
zr = torch.randn(B, T, V, generator=g)
mask = torch.ones(B, T, dtype=torch.bool)
reset()
base = hwm()
t0 = time.perf_counter()
step(z, zr, mask)
dt = time.perf_counter() - t0
print(json.dumps({"extra": hwm() - base, "logits_bytes": z.numel() * z.element_size(), "seconds": dt}))
"""


def peak_extra_bytes(mode: str, name: str, B: int, T: int, V: int, threads: int = 1) -> dict:
    """Run ``mode`` ∈ {chunked, naive, k3_token} forward+backward of divergence ``name`` on fresh (B, T, V) float32 logits
    in a subprocess; return ``{"extra", "logits_bytes", "seconds"}`` (bytes above the inputs, wall seconds)."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(16 << 20), MALLOC_TRIM_THRESHOLD_=str(16 << 20))
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT, mode, name, str(B), str(T), str(V), str(threads)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])
