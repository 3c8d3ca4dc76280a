"""Images for a vision-language model: reading them safely, and the reference inputs that stand in for them.

A reference input keeps the question and takes the image's information away, so that the model's answer
shows what its language prior alone would say (Zhang et al. 2024, arXiv 2403.05262, §3; VCD, Leng et al.
CVPR 2024). The modes:

- ``none``: no image at all (the image placeholder is removed from the prompt);
- ``blank``: a flat image of the real image's size, so the image-token count matches the real input;
- ``noise``: the real image after forward diffusion to step 500 of 1000 with VCD's noise schedule
  (``vlm_noise``): the same size, its details drowned in Gaussian noise. ``reference_image`` noises the
  image's pixels; ``VLMBackend`` by default adds the noise to the processor's normalised tensor instead, as
  VCD's code does (``noise_space``);
- ``unk``: no image, with the tokenizer's unknown token written where the image would be (the
  LLaVA-Align code's text-only variant; models without an unk token get the literal ``<unk>``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from biasaudit.backend.vlm_noise import diffusion_noise
from biasaudit.errors import ImageReadError, InvalidRequestError

REFERENCE_MODES: tuple[str, ...] = ("none", "blank", "noise", "unk")
# Reference modes that carry no image, only text.
TEXT_ONLY_MODES = frozenset({"none", "unk"})


def check_reference_mode(mode: str) -> None:
    """Refuse a reference name we do not know, listing the ones we do."""
    if mode not in REFERENCE_MODES:
        raise InvalidRequestError(f"unknown reference mode {mode!r}; choose from {', '.join(REFERENCE_MODES)}")


def open_image(path: str | Path) -> Image.Image:
    """An RGB image from ``path``, fully decoded now so that a truncated file fails here, naming the file."""
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")
    except FileNotFoundError as exc:
        raise ImageReadError(f"image file {str(path)!r} does not exist") from exc
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ImageReadError(f"cannot read image {str(path)!r} (truncated or not an image): {exc}") from exc


def reference_image(
    image: Image.Image, mode: str, *, noise_step: int = 500, seed: int = 0, blank_fill: int = 0
) -> Image.Image | None:
    """The image that replaces ``image`` under reference ``mode`` (None for the text-only modes).

    ``blank`` and ``noise`` keep the real image's size: processors that tile or resize by size then give
    the reference exactly as many image tokens as the real input.
    """
    check_reference_mode(mode)
    if mode in TEXT_ONLY_MODES:
        return None
    if mode == "blank":
        return Image.new("RGB", image.size, (blank_fill, blank_fill, blank_fill))
    return Image.fromarray(diffusion_noise(np.asarray(image.convert("RGB")), step=noise_step, seed=seed))
