"""Noise images for the ``noise`` reference: forward diffusion of the real image (VCD, docs/methods.md §5).

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
whisper of noise.

Where the noise goes. VCD noises the processor's *normalised* pixel tensor, (x/255 − mean) / std per channel, and
does not clip (``vcd_add_noise.py`` is applied to ``image_processor.preprocess(image)['pixel_values']``).
``noise_processed_images`` does exactly that inside ``VLMBackend`` (its default ``noise_space="tensor"``): each
noise row's image is processed alone, diffused with ``diffuse`` and written into the batch tensor.
``diffusion_noise`` noises a uint8 image instead, for ``noise_space="pixel"`` and for users who need an image. By
default it scales pixels to [−1, 1] as DDPM does (mean = std = 0.5): for a model whose processor normalises with
CLIP's std (about 0.27, LLaVA-1.5) that is 0.5 / 0.27 ≈ 1.9 times VCD's noise in the tensor (1.78× measured at
the model's input size, the rest lost to clipping; ``tests/backend/test_vlm.py``), and the processor's resize
then smooths it by an amount that depends on the image size (1.45× for a 224-pixel probe image into LLaVA-1.5's
336, 1.02× for a 640×480 photo; docs/lvlm.md). With a SigLIP-style std of 0.5 (Idefics3/SmolVLM) the levels
agree before the resize. Passing the processor's ``mean`` and ``std`` matches VCD's level in pixel space too, up
to rounding, clipping to [0, 255] and the resize.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch

from biasaudit.errors import InvalidRequestError

NoiseSchedule = Literal["vcd", "linear"]


def diffusion_betas(n_steps: int = 1000, schedule: NoiseSchedule = "vcd") -> np.ndarray:
    """β_t for t = 0 .. n_steps − 1 (float64, shape (n_steps,)) under ``schedule`` (see the module docstring)."""
    if n_steps < 1:
        raise InvalidRequestError(f"n_steps must be at least 1, got {n_steps}")
    if schedule == "vcd":
        ramp = 1.0 / (1.0 + np.exp(-np.linspace(-6.0, 6.0, n_steps)))
        return ramp * (0.5e-2 - 1e-5) + 1e-5
    if schedule == "linear":
        return np.linspace(1e-4, 0.02, n_steps)
    raise InvalidRequestError(f"unknown noise schedule {schedule!r}; choose 'vcd' or 'linear'")


def diffusion_alpha_bar(step: int, n_steps: int = 1000, schedule: NoiseSchedule = "vcd") -> float:
    """ᾱ at 0-based ``step``: ∏_{s=0}^{step} (1 − β_s)."""
    if not 0 <= step < n_steps:
        raise InvalidRequestError(f"step must be in [0, {n_steps - 1}], got {step}")
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
    mean: Sequence[float] = (0.5, 0.5, 0.5),
    std: Sequence[float] = (0.5, 0.5, 0.5),
) -> np.ndarray:
    """A noised copy of a uint8 image (H, W, 3) for the ``noise`` reference, same shape and dtype.

    Pixels are normalised per channel, (x / 255 − mean) / std -- by default to [−1, 1] as DDPM trains on --
    diffused with ``diffuse``, mapped back, rounded and clipped to [0, 255]. Pass a processor's ``image_mean``
    and ``image_std`` to get VCD's noise level for that model (see the module docstring). Deterministic for a
    given ``seed``.
    """
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8:
        raise InvalidRequestError(f"diffusion_noise expects a uint8 image (H, W, 3), got dtype {pixels.dtype}")
    mu, sigma = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
    x0 = (pixels.astype(np.float64) / 255.0 - mu) / sigma
    xt = diffuse(x0, step, n_steps, schedule=schedule, seed=seed)
    return np.clip(np.rint((xt * sigma + mu) * 255.0), 0, 255).astype(np.uint8)


class NoiseLayoutError(ValueError):
    """The processor's pixel tensor is laid out in a way ``noise_processed_images`` cannot place noise in."""


def noise_processed_images(
    pixel_values: torch.Tensor,
    images: Sequence[Any | None],
    seeds: Sequence[int | None],
    image_processor: Any,
    *,
    step: int = 500,
    n_steps: int = 1000,
    schedule: NoiseSchedule = "vcd",
) -> None:
    """VCD's noise in the normalised tensor: diffuse, in place, the pixels of every row whose seed is not None.

    ``pixel_values`` is a processor's output for a batch whose row i shows ``images[i]`` (or no image: None);
    each noised row's image is processed alone by ``image_processor`` -- VCD's ``preprocess(image)`` -- checked
    to be what the batch holds for it, diffused with its seed (no clipping) and written back, so the noise does
    not depend on the batch. Two layouts are known: one entry per image (LLaVA, LLaVA-NeXT, PaliGemma:
    ``pixel_values[j]`` is the j-th image) and one per row (Idefics3/SmolVLM: ``pixel_values[i]`` holds row i's
    crops, zero-padded). Any other raises ``NoiseLayoutError``.
    """
    if len(images) != len(seeds):
        raise InvalidRequestError(f"{len(images)} images but {len(seeds)} seeds")
    with_image = [i for i, image in enumerate(images) if image is not None]
    if pixel_values.shape[0] == len(with_image):
        slot_of = {row: j for j, row in enumerate(with_image)}  # per image (the same as per row if all have one)
    elif pixel_values.shape[0] == len(images):
        slot_of = {row: row for row in with_image}
    else:
        raise NoiseLayoutError(
            f"pixel_values of shape {tuple(pixel_values.shape)} match neither the {len(with_image)} images "
            f"nor the {len(images)} rows of the batch"
        )
    for row, seed in enumerate(seeds):
        if seed is None:
            continue
        if images[row] is None:
            raise InvalidRequestError(f"row {row} has a noise seed but no image")
        own = image_processor([images[row]], return_tensors="pt")["pixel_values"][0]
        slot = pixel_values[slot_of[row]]
        region = tuple(slice(0, d) for d in own.shape)
        if own.ndim != slot.ndim or any(d > e for d, e in zip(own.shape, slot.shape, strict=True)):
            raise NoiseLayoutError(f"image tensor {tuple(own.shape)} does not fit its batch slot {tuple(slot.shape)}")
        if not torch.allclose(slot[region].float(), own.float(), atol=1e-4):
            raise NoiseLayoutError("the image processed alone differs from its slot in the batch tensor")
        noised = diffuse(own.double().numpy(), step, n_steps, schedule=schedule, seed=seed)
        slot[region] = torch.from_numpy(noised).to(slot.dtype)
