"""How fast a run trains: tokens per second and MFU.

MFU (model FLOPs utilisation) says how much of the hardware's arithmetic the training uses.
A training step costs about ``6 * N`` FLOPs per token for the ``N`` weights (2 for the forward
multiply-adds, 4 for the backward) plus ``12 * n_layer * block_size * n_embd`` for attention
(the PaLM paper's appendix B estimate, also used by nanoGPT). We divide the achieved FLOP/s by the
peak of the precision the matrix products run in (bf16 units can be several times faster than
fp32 ones, so measuring bf16 training against the fp32 peak can report more than 100%): on CPU
the peak is *measured* by timing a large matrix product in that dtype (what a well-tuned BLAS
reaches on this machine); on CUDA we take the datasheet's dense figure for known GPUs.
"""

from __future__ import annotations

import time

import torch

# Dense peaks from NVIDIA datasheets, in FLOP/s: tensor cores for bf16/fp16, plain fp32 otherwise
# (PyTorch does not use TF32 for fp32 matrix products unless asked to).
GPU_PEAKS = {
    "H200": {"half": 989e12, "fp32": 67e12},
    "H100": {"half": 989e12, "fp32": 67e12},
    "A100": {"half": 312e12, "fp32": 19.5e12},
    "L4": {"half": 121e12, "fp32": 30.3e12},
    "A10": {"half": 125e12, "fp32": 31.2e12},
    "T4": {"half": 65e12, "fp32": 8.1e12},
}


def flops_per_token(n_params: int, n_layer: int, n_embd: int, block_size: int) -> float:
    """Training FLOPs per token: ``6N`` for the weights plus attention's ``12 L T C``."""
    return 6.0 * n_params + 12.0 * n_layer * block_size * n_embd


PROBE_SIZE = 128  # measure_cpu_peak's first, small product


def measure_cpu_peak(size: int = 1024, repeats: int = 20, dtype: torch.dtype = torch.float32,
                     budget_s: float = 0.5) -> float:
    """The best FLOP/s of a ``size x size`` matrix product in ``dtype``, a practical CPU peak.

    Best of ``repeats``, stopping once the products have taken ``budget_s`` (about 0.2 s in all on a
    desktop CPU): other programs busy on the same cores make single timings slow, so on a loaded
    machine the peak is underestimated and MFU overestimated.

    A precision this CPU has no fast kernel for would take seconds per product: torch multiplies bf16
    at about 1 GFLOP/s on a CPU without AVX-512 BF16 or AMX (most laptops), 2 s per 1024 x 1024
    product. So a small product is timed first, and where a full-size one would take more than a
    quarter of the budget, the small one's speed is the answer: the measurement stays under a second.
    """
    numbers = torch.Generator().manual_seed(0)  # its own generator: training's random streams stay put

    def best_rate(n: int, count: int) -> float:
        a = torch.randn(n, n, generator=numbers).to(dtype)
        b = torch.randn(n, n, generator=numbers).to(dtype)
        torch.mm(a, b)  # warm-up: thread pool start, caches
        best, spent = float("inf"), 0.0
        for _ in range(count):
            start = time.perf_counter()
            torch.mm(a, b)
            took = time.perf_counter() - start
            best, spent = min(best, took), spent + took
            if spent > budget_s:
                break
        return 2.0 * n**3 / best

    if size > PROBE_SIZE:
        probe = best_rate(PROBE_SIZE, 3)
        if 2.0 * size**3 / probe > budget_s / 4:
            return probe
    return best_rate(size, repeats)


def peak_flops(device: str | torch.device, dtype: torch.dtype | None = None) -> float | None:
    """The peak FLOP/s MFU is measured against for matrix products in ``dtype`` (None: fp32)."""
    device = torch.device(device)
    dtype = dtype or torch.float32
    if device.type == "cpu":
        return measure_cpu_peak(dtype=dtype)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, peaks in GPU_PEAKS.items():
            if key in name:
                return peaks["fp32" if dtype == torch.float32 else "half"]
    return None


class Speedometer:
    """Tokens per second (and MFU) over the steps since the last reading.

    Evaluations and checkpoints are not training: the loop pauses the clock around them. It reads
    the clock right after the loss's ``.item()``, which waits for the GPU, so that the time of
    kernels still queued is not left out.
    """

    def __init__(self, tokens_per_step: int, flops_per_token: float, peak: float | None):
        self.tokens_per_step = tokens_per_step
        self.flops_per_token = flops_per_token
        self.peak = peak
        self.seconds, self.steps = 0.0, 0
        self.start = time.perf_counter()

    def step(self) -> None:
        self.steps += 1

    def pause(self) -> None:
        self.seconds += time.perf_counter() - self.start

    def resume(self) -> None:
        self.start = time.perf_counter()

    def read(self) -> tuple[float, float, float | None]:
        """Seconds, tokens per second and MFU (None without a known peak) since the last reading."""
        self.pause()
        seconds, tokens_per_s = self.seconds, self.steps * self.tokens_per_step / self.seconds
        self.seconds, self.steps = 0.0, 0
        self.resume()
        mfu = self.flops_per_token * tokens_per_s / self.peak if self.peak else None
        return seconds, tokens_per_s, mfu
