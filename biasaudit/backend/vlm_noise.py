"""Noise images for the ``noise`` reference: forward diffusion of the real image (VCD, METHODS.md §5).

Visual contrastive decoding (Leng et al., CVPR 2024, "Mitigating Object Hallucinations in Large Vision-Language
Models through Visual Contrastive Decoding") contrasts the real image with a distorted copy made by the forward
diffusion process of DDPM (Ho et al. 2020, eq. 4):

    q(x_t | x_0) = N(sqrt(ᾱ_t) x_0, (1 − ᾱ_t) I),   ᾱ_t = ∏_{s ≤ t} (1 − β_s),

at step t = 500 of T = 1000. Two β schedules are offered:

- ``"vcd"`` (default): the schedule of VCD's released code (``vcd_utils/vcd_add_noise.py``),
  β = sigmoid(linspace(−6, 6, T)) · (5e-3 − 1e-5) + 1e-5. Its α = 1, β = 0.1, step 500 were tuned with it.
  It is gentle: ᾱ_500 ≈ 0.74, so the noised image still shows the scene's layout.
- ``"linear"``: DDPM's linear schedule from 1e-4 to 0.02; ᾱ_500 ≈ 0.08, nearly pure noise.

Steps are 0-based as in VCD's code: ``step = t`` uses ᾱ = ∏_{s=0}^{t} (1 − β_s), so step 0 already adds a
whisper of noise. VCD noises the processor's normalised pixel tensor and does not clip; ``diffuse`` does that
for any float array. ``diffusion_noise`` works on a uint8 image instead (scaled to [−1, 1] as in DDPM, noised,
mapped back and clipped), so the noise image can go through any model's processor like a real one -- close to,
not bit-identical with, VCD's tensor-space noise.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

NoiseSchedule = Literal["vcd", "linear"]


def diffusion_betas(n_steps: int = 1000, schedule: NoiseSchedule = "vcd") -> np.ndarray:
    """β_t for t = 0 .. n_steps − 1 (float64, shape (n_steps,)) under ``schedule`` (see the module docstring)."""
    if n_steps < 1:
        raise ValueError(f"n_steps must be at least 1, got {n_steps}")
    if schedule == "vcd":
        ramp = 1.0 / (1.0 + np.exp(-np.linspace(-6.0, 6.0, n_steps)))
        return ramp * (0.5e-2 - 1e-5) + 1e-5
    if schedule == "linear":
        return np.linspace(1e-4, 0.02, n_steps)
    raise ValueError(f"unknown noise schedule {schedule!r}; choose 'vcd' or 'linear'")


def diffusion_alpha_bar(step: int, n_steps: int = 1000, schedule: NoiseSchedule = "vcd") -> float:
    """ᾱ at 0-based ``step``: ∏_{s=0}^{step} (1 − β_s)."""
    if not 0 <= step < n_steps:
        raise ValueError(f"step must be in [0, {n_steps - 1}], got {step}")
    return float(np.prod(1.0 - diffusion_betas(n_steps, schedule)[: step + 1]))


def diffuse(
    x: np.ndarray, step: int = 500, n_steps: int = 1000, *, schedule: NoiseSchedule = "vcd", seed: int = 0
) -> np.ndarray:
    """x_t = sqrt(ᾱ) x + sqrt(1 − ᾱ) ε, ε ~ N(0, I) seeded: a sample of q(x_t | x_0 = x), same shape, float64.

    Apply it to a normalised pixel tensor to reproduce VCD's noise (no clipping, any shape).
    """
    alpha_bar = diffusion_alpha_bar(step, n_steps, schedule)
    eps = np.random.default_rng(seed).standard_normal(np.shape(x))
    return np.sqrt(alpha_bar) * np.asarray(x, dtype=np.float64) + np.sqrt(1.0 - alpha_bar) * eps


def diffusion_noise(
    pixels: np.ndarray,
    step: int = 500,
    n_steps: int = 1000,
    seed: int = 0,
    *,
    schedule: NoiseSchedule = "vcd",
) -> np.ndarray:
    """A noised copy of a uint8 image (H, W, 3) for the ``noise`` reference, same shape and dtype.

    Pixels are scaled to [−1, 1] (x / 127.5 − 1, as DDPM trains on), diffused with ``diffuse``, mapped back,
    rounded and clipped to [0, 255]. Deterministic for a given ``seed``.
    """
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8:
        raise ValueError(f"diffusion_noise expects a uint8 image (H, W, 3), got dtype {pixels.dtype}")
    x0 = pixels.astype(np.float64) / 127.5 - 1.0
    xt = diffuse(x0, step, n_steps, schedule=schedule, seed=seed)
    return np.clip(np.rint((xt + 1.0) * 127.5), 0, 255).astype(np.uint8)
