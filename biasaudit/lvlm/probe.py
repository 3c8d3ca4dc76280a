"""Procedural, seeded, download-free probes for vision-language models (POPE-style yes/no and multiple choice).

POPE (Li et al. 2023, "Evaluating Object Hallucination in Large Vision-Language Models") asks
"Is there a {object} in the image?" with balanced Yes/No answers; the No object comes from one of three
negative-sampling splits: ``random`` (uniform over absent objects), ``popular`` (the most frequent objects of the
whole dataset that are absent) and ``adversarial`` (the absent objects that co-occur most with those present).
Here the images are drawn, not downloaded, so the ground truth is known by construction and a probe is exactly
reproducible from its seed.

Objects are flat-coloured shapes (``SHAPES``) in named colours (``COLOURS``) on a mid-tone background (plain,
gradient or stripes), placed without overlap. Questions name the shape only ("Is there a star in the image?"):
POPE queries object categories, and adding the colour would mix attribute errors into object hallucination.

No question is ambiguous by look-alike (``biasaudit.lvlm.shapes``): a "No" item never asks about a shape that a
drawn object could be taken for (a ring next to a circle, a square next to a diamond; decided from the drawn
pixels), and a count or colour question never draws a look-alike of the shape it names. Before this rule, 9-15%
of "No" items per split asked about a ring next to a circle or a diamond next to a square (13-27% with the
hexagon's look-alikes); now none do (``tests/lvlm/test_probe.py``).

Co-occurrence structure, so that ``popular`` and ``adversarial`` mean something: every POPE scene first draws a
theme from ``THEMES`` (weight ``w_t``); each of its 2-5 objects is then drawn from the theme's own shape
distribution with probability ``THEME_SHARE`` and uniformly from ``SHAPES`` otherwise. The per-object shape
distribution of theme ``t`` is ``p_t(s) = THEME_SHARE * theta_t(s) + (1 - THEME_SHARE) / len(SHAPES)``, hence

- ``SHAPE_FREQUENCY[s] = sum_t w_t p_t(s)``: how often a random object is ``s`` (POPE's dataset frequency);
- ``COOCCURRENCE[a][b] = sum_t w_t p_t(a) p_t(b)``: how likely two objects of one scene are ``a`` and ``b``.

Both are exact expectations of the generator rather than counts over a finite sample, so the ``popular`` and
``adversarial`` rankings do not depend on ``n``. A ``popular`` negative is drawn uniformly from the
``NEGATIVE_POOL`` eligible shapes with the highest frequency; an ``adversarial`` one from the ``NEGATIVE_POOL``
eligible shapes with the highest summed co-occurrence with the shapes present (ties: order of ``SHAPES``). The
eligible shapes are those neither present nor a look-alike of one present (``eligible_negatives``); ``random``
draws uniformly from all of them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
from PIL import Image, ImageDraw

from biasaudit.backend.vlm_inputs import open_image
from biasaudit.errors import ImageReadError, InvalidRequestError
from biasaudit.lvlm.shapes import COLOURS, LOOKALIKES, SHAPES, draw_shape

# Mid tones, far from every palette colour (white and black included), so each object stands out.
_BACKGROUND_TONES = ((128, 128, 128), (136, 152, 128), (166, 150, 126), (118, 128, 150), (146, 128, 140))
# theme -> (weight, within-theme shape distribution theta_t); weights chosen so no two frequencies tie. No theme holds
# two look-alikes: the shapes that co-occur most must stay askable, or the adversarial split would lose its point.
THEMES: dict[str, tuple[float, dict[str, float]]] = {
    "night_sky": (0.40, {"star": 0.5, "circle": 0.3, "diamond": 0.2}),
    "blocks": (0.35, {"square": 0.45, "triangle": 0.35, "hexagon": 0.2}),
    "signs": (0.25, {"arrow": 0.4, "cross": 0.35, "ring": 0.25}),
}
THEME_SHARE = 0.8
NEGATIVE_POOL = 2
POPE_SPLITS: tuple[str, ...] = ("random", "popular", "adversarial")
PROBE_NAMES: tuple[str, ...] = ("pope", "pope-random", "pope-popular", "pope-adversarial", "count", "colour")
LETTERS: tuple[str, ...] = ("A", "B", "C", "D")
MIN_IMAGE_SIDE = 64
PopeSplit = Literal["random", "popular", "adversarial"]
ChoiceKind = Literal["count", "colour"]
# One RNG stream per probe name, so e.g. "count" and "colour" with the same seed draw unrelated scenes.
_STREAMS = {name: code for code, name in enumerate(PROBE_NAMES, start=1)}


def _theme_shape_probs(theta: dict[str, float]) -> np.ndarray:
    """p_t over SHAPES: (len(SHAPES),)."""
    own = np.array([theta.get(s, 0.0) for s in SHAPES])
    return THEME_SHARE * own / own.sum() + (1.0 - THEME_SHARE) / len(SHAPES)


_THEME_PROBS = {name: _theme_shape_probs(theta) for name, (_, theta) in THEMES.items()}
_THEME_WEIGHTS = np.array([w for w, _ in THEMES.values()])
_PROBS = np.stack(list(_THEME_PROBS.values()))  # (n_themes, len(SHAPES))
_FREQ = _THEME_WEIGHTS @ _PROBS
_COOC = np.einsum("t,ti,tj->ij", _THEME_WEIGHTS, _PROBS, _PROBS)
SHAPE_FREQUENCY: dict[str, float] = {s: float(_FREQ[i]) for i, s in enumerate(SHAPES)}
COOCCURRENCE: dict[str, dict[str, float]] = {
    a: {b: float(_COOC[i, j]) for j, b in enumerate(SHAPES) if j != i} for i, a in enumerate(SHAPES)
}


class ProbeImageError(ImageReadError):
    """A saved probe image is missing, truncated, not an image, or not the size its record says."""


@dataclass(frozen=True)
class ProbeItem:
    """One image + question with its known answer.

    ``meta`` holds the ground truth (``objects``: shape, colour and ``bbox`` [x0, y0, x1, y1] of every object;
    ``query``: the shape asked about) and how to regenerate it (``seed``, ``index``); it is JSON-serialisable.
    """

    id: str
    image: Image.Image
    question: str
    labels: tuple[str, ...]
    answer: str
    kind: Literal["yesno", "choice"]
    split: str
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.answer not in self.labels:
            raise InvalidRequestError(f"probe item {self.id!r}: answer {self.answer!r} is not one of {self.labels}")
        if self.image.mode != "RGB":
            raise InvalidRequestError(f"probe item {self.id!r}: image mode is {self.image.mode!r}, expected 'RGB'")

    def to_record(self) -> dict[str, Any]:
        """Everything but the pixels, as a JSON-serialisable dict (``image_size`` is [width, height])."""
        return {
            "id": self.id,
            "question": self.question,
            "labels": list(self.labels),
            "answer": self.answer,
            "kind": self.kind,
            "split": self.split,
            "meta": self.meta,
            "image_size": list(self.image.size),
        }


def _size(image_size: int | tuple[int, int]) -> tuple[int, int]:
    width, height = (image_size, image_size) if isinstance(image_size, int) else image_size
    if min(width, height) < MIN_IMAGE_SIDE:
        raise InvalidRequestError(f"image_size {image_size} is too small; each side needs >= {MIN_IMAGE_SIDE} pixels")
    return int(width), int(height)


def _check_n_seed(n: int, seed: int) -> None:
    if n < 1:
        raise InvalidRequestError(f"n must be >= 1, got {n}")
    if seed < 0:
        raise InvalidRequestError(f"seed must be >= 0, got {seed}")


def _background(rng: np.random.Generator, size: tuple[int, int]) -> tuple[np.ndarray, dict[str, Any]]:
    """A seeded plain / gradient / striped background: (height, width, 3) uint8, and its description."""
    width, height = size
    picks = rng.choice(len(_BACKGROUND_TONES), 2, replace=False)
    tones = [np.array(_BACKGROUND_TONES[i]) + rng.integers(-8, 9, 3) for i in picks]
    kind = str(rng.choice(["plain", "gradient", "stripes"]))
    vertical = bool(rng.integers(2))
    length = height if vertical else width
    if kind == "plain":
        profile = np.zeros(length)
    elif kind == "gradient":
        profile = np.linspace(0.0, 1.0, length)
    else:
        profile = ((np.arange(length) // int(rng.integers(8, 25))) % 2).astype(float)
    line = tones[0] * (1 - profile[:, None]) + tones[1] * profile[:, None]  # (length, 3)
    pixels = np.broadcast_to(line[:, None, :] if vertical else line[None, :, :], (height, width, 3))
    colours = [[int(c) for c in t] for t in tones]
    return np.rint(pixels).astype(np.uint8), {"kind": kind, "vertical": vertical, "tones": colours}


def _render(
    rng: np.random.Generator, size: tuple[int, int], specs: list[tuple[str, str]]
) -> tuple[Image.Image, dict[str, Any]]:
    """Draw ``specs`` (shape, colour) at random non-overlapping square boxes; returns the image and its meta."""
    width, height = size
    side_min, side_max, gap = 0.12 * min(size), 0.24 * min(size), 3
    while True:  # restart the whole layout in the (rare) case one object finds no free spot
        boxes: list[list[int]] = []
        for _ in specs:
            for _attempt in range(300):
                side = int(rng.uniform(side_min, side_max))
                x0, y0 = int(rng.integers(gap, width - side - gap)), int(rng.integers(gap, height - side - gap))
                box = [x0, y0, x0 + side, y0 + side]
                if all(
                    box[0] > b[2] + gap or b[0] > box[2] + gap or box[1] > b[3] + gap or b[1] > box[3] + gap
                    for b in boxes
                ):
                    boxes.append(box)
                    break
            else:
                break
        if len(boxes) == len(specs):
            break
    pixels, background = _background(rng, size)
    image = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(image)
    for (shape, colour), box in zip(specs, boxes, strict=True):
        draw_shape(draw, shape, box, COLOURS[colour])
    objects = [{"shape": s, "colour": c, "bbox": b} for (s, c), b in zip(specs, boxes, strict=True)]
    return image, {"objects": objects, "background": background}


def _random_colours(rng: np.random.Generator, k: int) -> list[str]:
    return [str(c) for c in rng.choice(list(COLOURS), k)]


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _plural(shape: str) -> str:
    return shape + ("es" if shape.endswith(("s", "x")) else "s")


def _balanced(rng: np.random.Generator, n: int, values: list[Any]) -> list[Any]:
    """``values`` repeated to length ``n`` then shuffled: each value appears n // len(values) or one more times."""
    return [values[i] for i in rng.permutation(np.arange(n) % len(values))]


def eligible_negatives(present: set[str]) -> list[str]:
    """Shapes a "No" question may ask about next to ``present``: not drawn, and no look-alike of one drawn.

    Never empty: the look-alike groups leave six classes of shape and a scene draws at most five objects.
    """
    return [s for s in SHAPES if s not in present and not LOOKALIKES[s] & present]


def _pope_negative(rng: np.random.Generator, split: str, present: set[str]) -> tuple[str, list[str]]:
    """The absent shape to ask about, and the pool it was drawn from (POPE's three negative samplers)."""
    absent = eligible_negatives(present)
    if split == "random":
        pool = absent
    elif split == "popular":
        pool = sorted(absent, key=lambda s: -SHAPE_FREQUENCY[s])[:NEGATIVE_POOL]
    else:
        pool = sorted(absent, key=lambda s: -sum(COOCCURRENCE[p][s] for p in present))[:NEGATIVE_POOL]
    return str(rng.choice(pool)), pool


def _pope_item(seed: int, stream: int, index: int, split: str, answer: str, size: tuple[int, int]) -> ProbeItem:
    rng = np.random.default_rng([seed, stream, index])
    theme = list(THEMES)[int(rng.choice(len(THEMES), p=_THEME_WEIGHTS))]
    k = int(rng.integers(2, 6))
    shapes = [SHAPES[i] for i in rng.choice(len(SHAPES), k, p=_THEME_PROBS[theme])]
    image, meta = _render(rng, size, list(zip(shapes, _random_colours(rng, k), strict=True)))
    present = set(shapes)
    if answer == "Yes":
        query, pool = str(rng.choice(sorted(present))), sorted(present)
    else:
        query, pool = _pope_negative(rng, split, present)
    meta.update(theme=theme, query=query, query_pool=pool, seed=seed, index=index)
    question = f"Is there {_article(query)} {query} in the image?"
    return ProbeItem(f"pope-{split}-{index:05d}", image, question, ("Yes", "No"), answer, "yesno", split, meta)


def _pope_answers(rng: np.random.Generator, splits: list[str]) -> list[str]:
    """Yes/No per item, balanced within each split and overall (odd splits alternate their extra answer)."""
    answers = [""] * len(splits)
    extra = "Yes"
    for split in POPE_SPLITS:
        idx = [i for i, s in enumerate(splits) if s == split]
        group = ["Yes", "No"] * (len(idx) // 2)
        if len(idx) % 2:
            group.append(extra)
            extra = "No" if extra == "Yes" else "Yes"
        for i, answer in zip(idx, rng.permutation(group), strict=True):
            answers[i] = str(answer)
    return answers


def _pope(n: int, splits: list[str], seed: int, stream: int, image_size: int | tuple[int, int]) -> list[ProbeItem]:
    size = _size(image_size)
    answers = _pope_answers(np.random.default_rng([seed, stream]), splits)
    return [_pope_item(seed, stream, i, splits[i], answers[i], size) for i in range(n)]


def make_pope_probe(
    n: int,
    *,
    split: PopeSplit = "random",
    seed: int = 0,
    image_size: int | tuple[int, int] = 224,
) -> list[ProbeItem]:
    """``n`` POPE questions "Is there a {shape} in the image?" of one split, Yes/No balanced (±1 when n is odd).

    ``image_size`` is a side or (width, height). Same seed → identical pixels and questions.
    """
    _check_n_seed(n, seed)
    if split not in POPE_SPLITS:
        raise InvalidRequestError(f"unknown POPE split {split!r}; valid: {POPE_SPLITS}")
    return _pope(n, [split] * n, seed, _STREAMS[f"pope-{split}"], image_size)


def make_choice_probe(
    n: int, *, kind: ChoiceKind, seed: int = 0, image_size: int | tuple[int, int] = 224
) -> list[ProbeItem]:
    """``n`` four-option questions with labels A-D; the correct letter is balanced over A-D (seeded shuffle).

    ``count``: "How many {shape}s are in the image?" over the options 1-4 (the true count is balanced too);
    ``colour``: "What colour is the {shape}?" with the shape drawn once and three other palette colours.
    """
    _check_n_seed(n, seed)
    if kind not in ("count", "colour"):
        raise InvalidRequestError(f"unknown choice kind {kind!r}; valid: ('count', 'colour')")
    size, stream = _size(image_size), _STREAMS[kind]
    plan = np.random.default_rng([seed, stream])
    letters = _balanced(plan, n, list(range(4)))
    counts = _balanced(plan, n, [1, 2, 3, 4])
    items = []
    for i in range(n):
        rng = np.random.default_rng([seed, stream, i])
        target = str(rng.choice(SHAPES))
        others = [s for s in SHAPES if s != target and s not in LOOKALIKES[target]]
        n_target = counts[i] if kind == "count" else 1
        distractors = [str(s) for s in rng.choice(others, int(rng.integers(0 if kind == "count" else 1, 4)))]
        specs = list(
            zip([target] * n_target + distractors, _random_colours(rng, n_target + len(distractors)), strict=True)
        )
        specs = [specs[j] for j in rng.permutation(len(specs))]  # the target is not always drawn first
        image, meta = _render(rng, size, specs)
        if kind == "count":
            correct, wrong = str(n_target), [str(c) for c in (1, 2, 3, 4) if c != n_target]
            stem = f"How many {_plural(target)} are in the image?"
        else:
            correct = specs[[s for s, _ in specs].index(target)][1]
            wrong = [str(c) for c in rng.choice([c for c in COLOURS if c != correct], 3, replace=False)]
            stem = f"What colour is the {target}?"
        options = [str(o) for o in rng.permutation(wrong)]
        options.insert(letters[i], correct)
        question = stem + "".join(f"\n{letter}. {option}" for letter, option in zip(LETTERS, options, strict=True))
        meta.update(query=target, options=options, seed=seed, index=i)
        items.append(ProbeItem(f"{kind}-{i:05d}", image, question, LETTERS, LETTERS[letters[i]], "choice", kind, meta))
    return items


def make_probe(name: str, n: int, *, seed: int = 0, image_size: int | tuple[int, int] = 224) -> list[ProbeItem]:
    """The probe called ``name`` (one of ``PROBE_NAMES``); "pope" mixes the three splits in equal thirds."""
    if name not in PROBE_NAMES:
        raise InvalidRequestError(f"unknown probe {name!r}; valid: {', '.join(PROBE_NAMES)}")
    if name == "pope":
        _check_n_seed(n, seed)
        return _pope(n, [POPE_SPLITS[i % 3] for i in range(n)], seed, _STREAMS["pope"], image_size)
    if name.startswith("pope-"):
        split = cast(PopeSplit, name.removeprefix("pope-"))
        return make_pope_probe(n, split=split, seed=seed, image_size=image_size)
    return make_choice_probe(n, kind=cast(ChoiceKind, name), seed=seed, image_size=image_size)


def save_probe(items: list[ProbeItem], folder: Path) -> Path:
    """Write each image as ``{id}.png`` and the records (with an ``image`` file name) to ``items.jsonl``."""
    folder = Path(folder)
    ids = [item.id for item in items]
    if len(set(ids)) != len(ids):
        raise InvalidRequestError("probe item ids must be unique: they name the image files")
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for item in items:
        item.image.save(folder / f"{item.id}.png", format="PNG")
        lines.append(json.dumps({**item.to_record(), "image": f"{item.id}.png"}))
    path = folder / "items.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _load_image(path: Path, expected_size: list[int]) -> Image.Image:
    try:
        image = open_image(path)
    except ImageReadError as exc:
        raise ProbeImageError(f"cannot read probe image: {exc}") from exc
    if list(image.size) != expected_size:
        raise ProbeImageError(f"probe image {path} is {list(image.size)}, items.jsonl says {expected_size}")
    return image


def load_probe(folder: Path) -> list[ProbeItem]:
    """Read back what ``save_probe`` wrote; pixels and records round-trip exactly."""
    folder = Path(folder)
    path = folder / "items.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; save a probe there with save_probe(items, folder)")
    items = []
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            image = _load_image(folder / Path(rec["image"]).name, rec["image_size"])
            fields = (rec["id"], image, rec["question"], tuple(rec["labels"]), rec["answer"], rec["kind"])
            items.append(ProbeItem(*fields, rec["split"], rec["meta"]))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InvalidRequestError(f"{path}:{line_no}: malformed probe record ({exc!r})") from exc
    return items
