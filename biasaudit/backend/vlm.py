"""Batched inference on a transformers vision-language model (image + text in, text out).

The same question can run with its real image and with reference inputs that take the image away
(``vlm_inputs.REFERENCE_MODES``); every variant of every question goes through one length-sorted batch
stream (``BatchPlanner``: token budget, halving on out-of-memory), so a real row and its no-image row
usually share a forward pass.

Pitfalls handled here, once:

- batched generation needs left padding (set on the processor's tokenizer);
- the number of image tokens depends on the image size, so ``blank`` and ``noise`` references keep the
  real image's size, and batch budgets count image tokens (measured once per image size);
- processors that refuse text-only input, and PaliGemma, whose processor corrupts text-only rows in a
  mixed batch, get a blank image of the same size for ``none``/``unk`` instead, with a warning;
- label log-probs come from the model's raw logits (``model(...)``), never from generation scores,
  which logits processors may already have changed.
"""

from __future__ import annotations

import copy
import functools
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from biasaudit.backend.batching import AUTO_BUDGET, BatchPlanner, BatchSize
from biasaudit.backend.fingerprint import weights_fingerprint
from biasaudit.backend.hf_generation import check_generation_request, cut_at_stops, sampling_options
from biasaudit.backend.protocol import LabelMode
from biasaudit.backend.vlm_inputs import TEXT_ONLY_MODES, check_reference_mode, open_image, reference_image
from biasaudit.backend.vlm_noise import NoiseLayoutError, noise_processed_images
from biasaudit.errors import InvalidRequestError, LabelCollisionError
from biasaudit.progress import PROGRESS_MIN_ITEMS, progress_bar

if TYPE_CHECKING:
    from biasaudit.models import LoadOptions

ImageLike = Image.Image | str | Path
# The real image: an input kind beside the reference modes.
REAL = "image"
# Families whose processor mishandles text-only rows (PaliGemma mixes them up in a batch).
_NO_TEXT_ONLY_FAMILIES = frozenset({"paligemma"})


@dataclass(frozen=True)
class _Row:
    """One model input: the prompt text (with or without the image placeholder) and its image.

    ``noise_seed``: set for a ``noise`` reference noised in the processor's tensor (``noise_space="tensor"``);
    ``image`` is then the real image, and ``_encode`` adds the noise after the processor.
    """

    text: str
    image: Image.Image | None
    noise_seed: int | None = None


class VLMBackend:
    """Label log-probs and generation for an image-text-to-text model, with reference inputs.

    Parameters
    ----------
    model, processor:
        An ``AutoModelForImageTextToText`` model and its ``AutoProcessor`` (``biasaudit.models.load_vlm``).
    batch_size, max_batch_tokens:
        As in ``HFBackend``: ``"auto"`` halves a token budget on out-of-memory; image tokens count.
    noise_step, seed:
        Diffusion step of the ``noise`` reference (VCD: 500 of 1000) and its noise seed.
    noise_space:
        ``"tensor"`` (default, VCD's code): the noise is added to the processor's normalised pixel tensor.
        ``"pixel"``: to the image, scaled to [-1, 1], before the processor (1.9x more noise for CLIP-normalised
        models; see ``vlm_noise``). A processor whose tensor layout is not understood falls back to ``"pixel"``
        with a warning.
    blank_fill:
        Grey level (0-255) of the ``blank`` reference image.
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        batch_size: BatchSize = "auto",
        max_batch_tokens: int | None = None,
        progress: bool = True,
        name: str | None = None,
        noise_step: int = 500,
        seed: int = 0,
        blank_fill: int = 0,
        noise_space: str = "tensor",
    ) -> None:
        if getattr(processor, "image_processor", None) is None or not hasattr(processor, "tokenizer"):
            raise InvalidRequestError(
                f"{type(processor).__name__} is not a vision-language processor (it needs a tokenizer and an "
                "image processor); load the model with biasaudit.models.load_vlm"
            )
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"  # generation appends on the right, so padding goes left
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.name = name or getattr(model.config, "name_or_path", None) or type(model).__name__
        text_cfg = model.config.get_text_config()
        self.n_layers: int = int(text_cfg.num_hidden_layers)
        self.hidden_size: int = int(text_cfg.hidden_size)
        self.family: str = str(model.config.model_type)
        budget = max_batch_tokens or AUTO_BUDGET["cpu" if self.device.type == "cpu" else "accelerator"]
        self.planner = BatchPlanner(batch_size, budget)
        self.progress = progress
        if noise_space not in ("tensor", "pixel"):
            raise InvalidRequestError(f"noise_space must be 'tensor' or 'pixel', not {noise_space!r}")
        self.noise_step = noise_step
        self.noise_space = noise_space
        self.seed = seed
        self.blank_fill = blank_fill
        self._image_tokens: dict[tuple[int, int], int] = {}

    @functools.cached_property
    def fingerprint(self) -> str:
        """Identifies the weights (see ``weights_fingerprint``)."""
        return weights_fingerprint(self.model)

    @classmethod
    def from_spec(
        cls,
        spec: str,
        *,
        device: str | None = None,
        dtype: str | None = None,
        trust_remote_code: bool = False,
        options: LoadOptions | None = None,
        **kwargs: Any,
    ) -> VLMBackend:
        """Load ``spec`` (local folder or hub id) with ``biasaudit.models.load_vlm`` and wrap it."""
        from biasaudit.models import load_vlm

        loaded = load_vlm(spec, device=device, dtype=dtype, trust_remote_code=trust_remote_code, options=options)
        return cls(loaded.model, loaded.processor, name=loaded.name, **kwargs)

    # ------------------------------------------------------------------ prompts and inputs
    @functools.cached_property
    def _unk_text(self) -> str:
        return self.tokenizer.unk_token or "<unk>"

    @functools.cached_property
    def text_only_supported(self) -> bool:
        """Whether this model takes rows without an image (else ``none``/``unk`` fall back to a blank image)."""
        if self.family in _NO_TEXT_ONLY_FAMILIES:
            return False
        try:
            self.processor(text=[self.format_prompt("Is it?", "none")], return_tensors="pt")
        except (ValueError, TypeError, IndexError, KeyError):
            return False
        return True

    def format_prompt(self, question: str, kind: str = REAL) -> str:
        """``question`` as a user turn in the model's chat template, with the image placeholder unless the
        input ``kind`` carries no image (``none``: nothing in its place; ``unk``: the unknown token)."""
        with_image = kind not in TEXT_ONLY_MODES
        content: list[dict[str, str]] = [{"type": "image"}] if with_image else []
        if kind == "unk":
            content.append({"type": "text", "text": self._unk_text + "\n"})
        content.append({"type": "text", "text": question})
        if getattr(self.processor, "chat_template", None):
            messages = [{"role": "user", "content": content}]
            return str(self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
        image_token = getattr(self.processor, "image_token", None) or "<image>"
        return "".join(image_token + "\n" if part["type"] == "image" else part["text"] for part in content) + "\n"

    def _rows(self, questions: Sequence[str], images: Sequence[ImageLike] | None, kind: str) -> list[_Row]:
        """The model inputs of ``questions`` under input ``kind`` (``image`` or a reference mode)."""
        if kind != REAL:
            check_reference_mode(kind)
        if images is not None and len(images) != len(questions):
            raise InvalidRequestError(f"{len(questions)} questions but {len(images)} images")
        if images is None and kind not in TEXT_ONLY_MODES:
            raise InvalidRequestError(f"input {kind!r} needs the real images (pass images=...)")
        pictures = _opened(images) if images else None
        if kind in TEXT_ONLY_MODES and not self.text_only_supported:
            self._warn_text_only(kind)
            sizes = [p.size for p in pictures] if pictures else [(224, 224)] * len(questions)
            fill = (self.blank_fill,) * 3
            return [
                _Row(self.format_prompt(q, REAL), Image.new("RGB", size, fill))
                for q, size in zip(questions, sizes, strict=True)
            ]
        rows = []
        for i, question in enumerate(questions):
            real = pictures[i] if pictures else None
            if kind == REAL:
                image = real
            elif real is None:
                image = None
            else:
                # Noise seeded by the image itself: a question gets the same reference in any batch or call.
                seed = self.seed + zlib.crc32(real.tobytes())
                if kind == "noise" and self.noise_space == "tensor":
                    rows.append(_Row(self.format_prompt(question, kind), real, noise_seed=seed))
                    continue
                image = reference_image(real, kind, noise_step=self.noise_step, seed=seed, blank_fill=self.blank_fill)
            rows.append(_Row(self.format_prompt(question, kind), image))
        return rows

    def _pixel_noise_row(self, row: _Row) -> _Row:
        """``row`` with its noise drawn in pixel space instead (the fallback of ``noise_space="tensor"``)."""
        assert row.image is not None and row.noise_seed is not None
        image = reference_image(row.image, "noise", noise_step=self.noise_step, seed=row.noise_seed)
        return _Row(row.text, image)

    def _warn_text_only(self, kind: str) -> None:
        warnings.warn(
            f"{self.family} cannot take text-only input here; reference {kind!r} uses a blank image of the "
            "real image's size instead",
            UserWarning,
            stacklevel=3,
        )

    def _encode(self, rows: Sequence[_Row]) -> dict[str, torch.Tensor]:
        """One left-padded batch; floating inputs (pixel values) in the model's dtype."""
        texts = [r.text for r in rows]
        if any(r.image is not None for r in rows):
            nested = [[r.image] if r.image is not None else [] for r in rows]
            enc = self.processor(text=texts, images=nested, padding=True, return_tensors="pt")
        else:
            enc = self.processor(text=texts, padding=True, return_tensors="pt")
        if any(r.noise_seed is not None for r in rows):
            try:
                noise_processed_images(
                    enc["pixel_values"],
                    [r.image for r in rows],
                    [r.noise_seed for r in rows],
                    self.processor.image_processor,
                    step=self.noise_step,
                )
            except (NoiseLayoutError, KeyError) as exc:
                warnings.warn(
                    f"{self.family}: cannot add the noise reference's noise in the processor's tensor ({exc}); "
                    "noising the image in pixel space instead (noise_space='pixel')",
                    UserWarning,
                    stacklevel=2,
                )
                self.noise_space = "pixel"
                return self._encode([self._pixel_noise_row(r) if r.noise_seed is not None else r for r in rows])
        return {
            k: v.to(self.device, dtype=self.dtype) if v.is_floating_point() else v.to(self.device)
            for k, v in enc.items()
            if isinstance(v, torch.Tensor)
        }

    def _length(self, row: _Row) -> int:
        """Tokens the row takes in the model, image tokens included (measured once per image size)."""
        n_text = len(self.tokenizer(row.text, add_special_tokens=False).input_ids)
        if row.image is None:
            return n_text
        size = row.image.size
        if size not in self._image_tokens:
            enc = self.processor(text=[row.text], images=[[row.image]], return_tensors="pt")
            self._image_tokens[size] = max(0, int(enc["input_ids"].shape[1]) - n_text)
        return n_text + self._image_tokens[size]

    # ------------------------------------------------------------------ scoring
    def _label_ids(self, labels: Sequence[str], mode: LabelMode) -> list[list[int]]:
        if len(labels) == 0:
            raise InvalidRequestError("no answer labels given: a question needs its answer-label set")
        if any(not label for label in labels) or len(set(labels)) != len(labels):
            raise InvalidRequestError(f"labels must be non-empty and distinct, got {list(labels)!r}")
        ids = [self.tokenizer(label, add_special_tokens=False).input_ids for label in labels]
        if mode == "first_token":
            firsts = [i[0] for i in ids]
            if len(set(firsts)) != len(firsts):
                raise LabelCollisionError(
                    f"labels {list(labels)!r} share a first token; use mode='full_sequence' to score them whole"
                )
        elif mode != "full_sequence":
            raise InvalidRequestError(f"mode must be 'first_token' or 'full_sequence', not {mode!r}")
        return ids

    def _score_rows(
        self, rows: Sequence[_Row], label_ids: list[list[int]], mode: LabelMode, length_normalize: bool
    ) -> np.ndarray:
        out = np.zeros((len(rows), len(label_ids)), dtype=np.float64)

        def run(batch: np.ndarray) -> None:
            enc = self._encode([rows[b] for b in batch])
            if mode == "first_token":
                logits = self.model(**enc).logits[:, -1, :].float()
                firsts = torch.tensor([ids[0] for ids in label_ids], device=logits.device)
                out[batch] = torch.log_softmax(logits, dim=-1)[:, firsts].cpu().numpy()
                return
            width = enc["input_ids"].shape[1]
            for k, ids in enumerate(label_ids):
                # Left padding sits on the left, so the label's tokens can simply follow every row.
                extra = torch.tensor([ids] * len(batch), device=self.device)
                ext = dict(enc)
                ext["input_ids"] = torch.cat([enc["input_ids"], extra], dim=1)
                ext["attention_mask"] = torch.cat([enc["attention_mask"], torch.ones_like(extra)], dim=1)
                logits = self.model(**ext).logits[:, width - 1 : width - 1 + len(ids), :].float()
                token_lp = torch.log_softmax(logits, dim=-1).gather(-1, extra.unsqueeze(-1)).squeeze(-1)
                total = token_lp.sum(dim=1) / (len(ids) if length_normalize else 1)
                out[batch, k] = total.cpu().numpy()

        extra_len = 1 if mode == "first_token" else max(len(i) for i in label_ids)
        lengths = [self._length(r) + extra_len for r in rows]
        with (
            torch.inference_mode(),
            progress_bar("scoring", len(rows), enabled=self.progress and len(rows) >= PROGRESS_MIN_ITEMS) as adv,
        ):
            self.planner.run(lengths, run, adv)
        return out

    def label_log_probs_by_input(
        self,
        questions: Sequence[str],
        labels: Sequence[str],
        images: Sequence[ImageLike] | None,
        inputs: Sequence[str] = (REAL, "none"),
        *,
        mode: LabelMode = "first_token",
        length_normalize: bool = False,
    ) -> dict[str, np.ndarray]:
        """Label log-probs of every question under each input kind: {kind: (n_questions, n_labels)}.

        ``inputs`` names ``"image"`` (the real image) and/or reference modes. All rows of all kinds share
        one batch stream, so a question's variants are scored together.
        """
        if len(questions) == 0:
            raise InvalidRequestError("no questions given")
        if len(set(inputs)) != len(inputs) or not inputs:
            raise InvalidRequestError(f"inputs must be non-empty and distinct, got {list(inputs)!r}")
        label_ids = self._label_ids(labels, mode)
        pictures = _opened(images) if images is not None else None  # read each file once, for every kind
        rows = [row for kind in inputs for row in self._rows(questions, pictures, kind)]
        scores = self._score_rows(rows, label_ids, mode, length_normalize)
        n = len(questions)
        return {kind: scores[k * n : (k + 1) * n] for k, kind in enumerate(inputs)}

    def label_log_probs(
        self,
        questions: Sequence[str],
        labels: Sequence[str],
        *,
        images: Sequence[ImageLike] | None = None,
        reference: str | None = None,
        mode: LabelMode = "first_token",
        length_normalize: bool = False,
    ) -> np.ndarray:
        """Log-probability of each label as the answer to each question: (n_questions, n_labels), raw.

        With ``images`` the real image is shown; ``reference`` replaces it by a reference input instead.
        Without images every question is asked text-only.
        """
        kind = reference or (REAL if images is not None else "none")
        return self.label_log_probs_by_input(
            questions, labels, images, (kind,), mode=mode, length_normalize=length_normalize
        )[kind]

    # ------------------------------------------------------------------ generation
    def generate(
        self,
        questions: Sequence[str],
        *,
        images: Sequence[ImageLike] | None = None,
        reference: str | None = None,
        max_new_tokens: int = 64,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
        logits_processors: Sequence[Any] | None = None,
        stop: Sequence[str] | None = None,
        debias: Any | None = None,
    ) -> list[str]:
        """Answer each question (with its image, or the ``reference`` input); returns the new text only.

        ``debias``: a ``biasaudit.lvlm.DebiasSamplingProcessor``. Each batch binds a copy of it to the
        same rows under its reference mode, and it runs first, on the raw logits.
        """
        from transformers import LogitsProcessorList

        check_generation_request(len(questions), max_new_tokens, do_sample, temperature)
        kind = reference or (REAL if images is not None else "none")
        pictures = _opened(images) if images is not None else None  # read each file once
        rows = self._rows(questions, pictures, kind)
        ref_rows = self._rows(questions, pictures, debias.reference) if debias is not None else None
        outputs = [""] * len(questions)
        if seed is not None:
            torch.manual_seed(seed)
        sampling = sampling_options(do_sample, temperature, top_p)
        stops = [s for s in (stop or []) if s]
        stopping: dict[str, Any] = {"stop_strings": stops, "tokenizer": self.tokenizer} if stops else {}

        def run(batch: np.ndarray) -> None:
            enc = self._encode([rows[b] for b in batch])
            processors = list(logits_processors or [])
            if debias is not None and ref_rows is not None:
                ref_enc = self._encode([ref_rows[b] for b in batch])
                processors.insert(0, copy.deepcopy(debias).bind(self.model, ref_enc))
            out = self.model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=do_sample,
                top_k=None,
                pad_token_id=self.tokenizer.pad_token_id,
                logits_processor=LogitsProcessorList(processors),
                **sampling,
                **stopping,
            )
            new = out[:, enc["input_ids"].shape[1] :].cpu()
            for k, b in enumerate(batch):
                outputs[b] = cut_at_stops(self.tokenizer.decode(new[k], skip_special_tokens=True), stops)

        lengths = [self._length(r) + max_new_tokens for r in rows]
        enabled = self.progress and len(rows) >= PROGRESS_MIN_ITEMS // 4
        with torch.inference_mode(), progress_bar("generating", len(rows), enabled=enabled) as advance:
            self.planner.run(lengths, run, advance)
        return outputs


def _opened(images: Sequence[ImageLike]) -> list[Image.Image]:
    """Images as PIL images: paths are read (and fully decoded) here, images passed through."""
    return [open_image(im) if isinstance(im, str | Path) else im for im in images]
