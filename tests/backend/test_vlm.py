"""VLMBackend on tiny random LLaVA and Idefics3 models saved and reloaded through the Auto classes."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from PIL import Image

from biasaudit.backend.vlm import VLMBackend
from biasaudit.backend.vlm_inputs import REFERENCE_MODES, diffusion_noise, open_image, reference_image
from biasaudit.backend.vlm_noise import NoiseLayoutError, diffuse, diffusion_alpha_bar, noise_processed_images
from biasaudit.errors import ImageReadError, InvalidRequestError, LabelCollisionError, NotAVisionLanguageModelError
from biasaudit.models import load_vlm

FAMILIES = ("llava", "idefics3")
QUESTIONS = ["Is there a red circle in the image?", "Is there a cat?", "How many squares are there in the picture?"]


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    sizes = [(40, 32), (40, 32), (48, 48)]
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


@pytest.fixture(scope="module", params=FAMILIES)
def vlm(request, tiny_vlm_dirs) -> VLMBackend:
    return VLMBackend.from_spec(str(tiny_vlm_dirs[request.param]), progress=False)


def test_load_through_auto_classes(tiny_vlm_dirs):
    import transformers

    llava = load_vlm(str(tiny_vlm_dirs["llava"]))
    assert isinstance(llava.model, transformers.LlavaForConditionalGeneration)
    assert isinstance(llava.processor, transformers.LlavaProcessor)
    idefics = load_vlm(str(tiny_vlm_dirs["idefics3"]))
    assert isinstance(idefics.processor, transformers.Idefics3Processor)


def test_text_only_model_is_refused(default_model_dir):
    with pytest.raises(NotAVisionLanguageModelError, match="not a vision-language model"):
        load_vlm(default_model_dir)
    with pytest.raises(NotAVisionLanguageModelError, match="reads text only"):
        load_vlm("default")


def test_bare_tokenizer_is_not_a_processor(vlm):
    # What AutoProcessor returns for Qwen2-VL when its processor class is not registered.
    with pytest.raises(InvalidRequestError, match="not a vision-language processor"):
        VLMBackend(vlm.model, vlm.tokenizer)


def test_every_reference_mode_in_one_call(vlm):
    kinds = ("image", *REFERENCE_MODES)
    out = vlm.label_log_probs_by_input(QUESTIONS, ["Yes", "No"], _images(), kinds)
    assert set(out) == set(kinds)
    for kind in kinds:
        assert out[kind].shape == (3, 2)
        assert np.all(np.isfinite(out[kind])) and np.all(out[kind] < 0)
    # The references really change the input: the real image's scores differ from each of them.
    for kind in REFERENCE_MODES:
        assert not np.allclose(out["image"], out[kind])


def test_batched_equals_one_at_a_time(vlm, tiny_vlm_dirs):
    kinds = ("image", *REFERENCE_MODES)
    batched = vlm.label_log_probs_by_input(QUESTIONS, ["Yes", "No"], _images(), kinds)
    single = VLMBackend(vlm.model, vlm.processor, batch_size=1, progress=False)
    for kind in kinds:
        one = single.label_log_probs_by_input(QUESTIONS, ["Yes", "No"], _images(), (kind,))[kind]
        np.testing.assert_allclose(batched[kind], one, atol=2e-5)


def test_reference_images_keep_the_image_token_count(vlm):
    images = _images()
    real = vlm._rows(QUESTIONS, images, "image")
    for mode in ("blank", "noise"):
        ref = vlm._rows(QUESTIONS, images, mode)
        assert [r.image.size for r in ref] == [im.size for im in images]
        enc_real, enc_ref = vlm._encode(real), vlm._encode(ref)
        assert enc_real["input_ids"].shape == enc_ref["input_ids"].shape
        assert (enc_real["input_ids"] == enc_ref["input_ids"]).all()  # same text, same image-token count


def test_full_sequence_equals_first_token_for_one_token_labels(vlm):
    first = vlm.label_log_probs(QUESTIONS, ["Yes", "No"], images=_images())
    full = vlm.label_log_probs(QUESTIONS, ["Yes", "No"], images=_images(), mode="full_sequence")
    np.testing.assert_allclose(first, full, atol=2e-5)


def test_full_sequence_multi_token_label_is_the_sum_of_its_tokens(vlm):
    label = " purple elephant"
    ids = vlm.tokenizer(label, add_special_tokens=False).input_ids
    assert len(ids) > 1
    whole = vlm.label_log_probs(QUESTIONS[:1], [label], images=_images()[:1], mode="full_sequence")[0, 0]
    # Token by token: each next token scored after the prompt plus the tokens before it.
    rows = vlm._rows(QUESTIONS[:1], _images()[:1], "image")
    enc = vlm._encode(rows)
    import torch

    with torch.inference_mode():
        ext = dict(enc)
        ext["input_ids"] = torch.cat([enc["input_ids"], torch.tensor([ids])], dim=1)
        ext["attention_mask"] = torch.ones_like(ext["input_ids"])
        logits = vlm.model(**ext).logits[0].float()
    width = enc["input_ids"].shape[1]
    expected = sum(torch.log_softmax(logits[width - 1 + j], -1)[t].item() for j, t in enumerate(ids))
    assert whole == pytest.approx(expected, abs=1e-4)


def test_generate_batched_equals_one_at_a_time_and_stops(vlm):
    images = _images()
    batched = vlm.generate(QUESTIONS, images=images, max_new_tokens=5)
    single = VLMBackend(vlm.model, vlm.processor, batch_size=1, progress=False)
    pairs = zip(QUESTIONS, images, strict=True)
    assert batched == [single.generate([q], images=[im], max_new_tokens=5)[0] for q, im in pairs]
    no_image = vlm.generate(QUESTIONS, max_new_tokens=5)
    assert len(no_image) == 3
    stop = batched[0][1:3]
    if stop.strip():
        cut = vlm.generate(QUESTIONS[:1], images=images[:1], max_new_tokens=5, stop=[stop])[0]
        assert stop not in cut and batched[0].startswith(cut)


def test_text_only_fallback_uses_a_same_size_blank_image(vlm, monkeypatch):
    monkeypatch.setattr(type(vlm), "text_only_supported", property(lambda self: False))
    images = _images()
    with pytest.warns(UserWarning, match="blank image"):
        rows = vlm._rows(QUESTIONS, images, "none")
    assert [r.image.size for r in rows] == [im.size for im in images]
    assert all(np.asarray(r.image).max() == 0 for r in rows)


def test_bad_requests(vlm, tmp_path):
    images = _images()
    with pytest.raises(InvalidRequestError, match="answer-label set"):
        vlm.label_log_probs(QUESTIONS, [], images=images)
    with pytest.raises(InvalidRequestError, match="distinct"):
        vlm.label_log_probs(QUESTIONS, ["Yes", "Yes"], images=images)
    with pytest.raises(LabelCollisionError, match="full_sequence"):
        vlm.label_log_probs(QUESTIONS, ["apple pie", "apple"], images=images)
    with pytest.raises(InvalidRequestError, match="3 questions but 2 images"):
        vlm.label_log_probs(QUESTIONS, ["Yes", "No"], images=images[:2])
    with pytest.raises(ValueError, match="unknown reference mode 'dark'"):
        vlm.label_log_probs(QUESTIONS, ["Yes", "No"], images=images, reference="dark")
    with pytest.raises(InvalidRequestError, match="needs the real images"):
        vlm.label_log_probs(QUESTIONS, ["Yes", "No"], reference="blank")
    truncated = tmp_path / "cut.png"
    images[0].save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:60])
    with pytest.raises(ImageReadError, match=r"cut\.png"):
        vlm.label_log_probs(QUESTIONS[:1], ["Yes", "No"], images=[truncated])
    with pytest.raises(ImageReadError, match="does not exist"):
        open_image(tmp_path / "missing.png")


def test_image_paths_equal_images(vlm, tmp_path):
    images = _images()
    paths = []
    for i, im in enumerate(images):
        paths.append(tmp_path / f"{i}.png")
        im.save(paths[-1])
    np.testing.assert_array_equal(
        vlm.label_log_probs(QUESTIONS, ["Yes", "No"], images=images),
        vlm.label_log_probs(QUESTIONS, ["Yes", "No"], images=paths),
    )


def test_noise_reference_does_not_depend_on_the_call(vlm):
    images = _images()
    alone = vlm._encode(vlm._rows(QUESTIONS[2:], images[2:], "noise"))["pixel_values"][0]
    together = vlm._encode(vlm._rows(QUESTIONS, images, "noise") + vlm._rows(QUESTIONS, images, "none"))
    np.testing.assert_array_equal(alone.float().numpy(), together["pixel_values"][2].float().numpy())
    pixel = VLMBackend(vlm.model, vlm.processor, noise_space="pixel", progress=False)
    alone = pixel._rows(QUESTIONS[2:], images[2:], "noise")[0].image
    np.testing.assert_array_equal(np.asarray(alone), np.asarray(pixel._rows(QUESTIONS, images, "noise")[2].image))


ALPHA_BAR = diffusion_alpha_bar(500)  # VCD's schedule at step 500: about 0.74


def _recovered_noise(backend: VLMBackend) -> tuple[np.ndarray, np.ndarray]:
    """(normalised real tensor, noise recovered from the noise reference's tensor) for a flat grey image."""
    grey = [Image.fromarray(np.full((32, 32, 3), 128, dtype=np.uint8))]  # the tiny models take 32x32: no resize
    real = backend._encode(backend._rows(QUESTIONS[:1], grey, "image"))["pixel_values"].double().numpy()
    noised = backend._encode(backend._rows(QUESTIONS[:1], grey, "noise"))["pixel_values"].double().numpy()
    return real, (noised - np.sqrt(ALPHA_BAR) * real) / np.sqrt(1 - ALPHA_BAR)


def test_noise_is_added_to_the_normalised_tensor_as_vcd_does(vlm):
    # VCD: x_t = sqrt(a) x_0 + sqrt(1 - a) eps on the processor's normalised tensor x_0, eps ~ N(0, 1), no clip.
    real, eps = _recovered_noise(vlm)
    assert abs(eps.mean()) < 0.05 and abs(eps.std() - 1.0) < 0.03  # the noise level comes back: sqrt(1 - a)
    # Exactly diffuse() of the image's own tensor, seeded by the image.
    grey = Image.fromarray(np.full((32, 32, 3), 128, dtype=np.uint8))
    seed = vlm.seed + zlib.crc32(grey.tobytes())
    noised = vlm._encode(vlm._rows(QUESTIONS[:1], [grey], "noise"))["pixel_values"].double().numpy()
    np.testing.assert_allclose(noised, diffuse(real, 500, seed=seed).reshape(real.shape), atol=1e-6)


def test_pixel_space_noise_is_larger_for_clip_normalised_models(vlm):
    # The old preset noised the image scaled to [-1, 1]: in a CLIP-normalised tensor (std ~0.27) that is
    # 0.5 / 0.27 ~ 1.9 times VCD's noise; a SigLIP-style std of 0.5 (Idefics3) gives the same level.
    pixel = VLMBackend(vlm.model, vlm.processor, noise_space="pixel", progress=False)
    _, eps = _recovered_noise(pixel)
    ratio = float(eps.std())
    if vlm.family == "llava":  # no resize at 32x32: the ratio is 0.5 / std, less a little clipping at 0 and 255
        expected = float(np.mean(0.5 / np.asarray(vlm.processor.image_processor.image_std)))
        assert ratio == pytest.approx(expected, rel=0.05) and 1.75 < ratio < 1.95, (ratio, expected)
    else:  # std 0.5 gives the same level, and Idefics3's resizing (32 -> 64 -> 32) smooths pixel noise: 0.79
        assert 0.7 < ratio < 1.0, ratio
    # diffusion_noise with the processor's mean and std matches VCD's level in pixel space too.
    ip = vlm.processor.image_processor
    grey = np.full((48, 48, 3), 128, dtype=np.uint8)
    noised = diffusion_noise(grey, seed=3, mean=ip.image_mean, std=ip.image_std).astype(np.float64)
    in_tensor = (noised / 255 - np.asarray(ip.image_mean)) / np.asarray(ip.image_std)
    x0 = (128 / 255 - np.asarray(ip.image_mean)) / np.asarray(ip.image_std)
    assert np.std((in_tensor - np.sqrt(ALPHA_BAR) * x0) / np.sqrt(1 - ALPHA_BAR)) == pytest.approx(1.0, abs=0.04)


def test_unknown_tensor_layout_falls_back_to_pixel_noise(vlm, monkeypatch):
    backend = VLMBackend(vlm.model, vlm.processor, progress=False)
    images = _images()

    def refuse(*args, **kwargs):
        raise NoiseLayoutError("a layout we do not know")

    monkeypatch.setattr("biasaudit.backend.vlm.noise_processed_images", refuse)
    with pytest.warns(UserWarning, match="pixel space"):
        enc = backend._encode(backend._rows(QUESTIONS, images, "noise"))
    assert backend.noise_space == "pixel"
    pixel = VLMBackend(vlm.model, vlm.processor, noise_space="pixel", progress=False)
    expected = pixel._encode(pixel._rows(QUESTIONS, images, "noise"))["pixel_values"]
    np.testing.assert_array_equal(enc["pixel_values"].numpy(), expected.numpy())
    with pytest.raises(InvalidRequestError, match="noise_space"):
        VLMBackend(vlm.model, vlm.processor, noise_space="latent")


def test_noise_layouts_per_image_and_per_row():
    import torch

    class Identity:  # an "image processor" that returns the image as a (1, 1, 2, 2) tensor
        def __call__(self, images, return_tensors):
            return {"pixel_values": torch.tensor(np.asarray(images[0]), dtype=torch.float32)[None, None]}

    image = np.ones((2, 2), dtype=np.float32)
    per_image = torch.stack([torch.ones(1, 2, 2), torch.ones(1, 2, 2)])  # 2 images for 3 rows (row 1 text-only)
    noise_processed_images(per_image, [image, None, image], [None, None, 5], Identity())
    assert torch.equal(per_image[0], torch.ones(1, 2, 2)) and not torch.equal(per_image[1], torch.ones(1, 2, 2))
    per_row = torch.zeros(3, 1, 2, 2)
    per_row[0], per_row[2] = 1, 1
    noise_processed_images(per_row, [image, None, image], [None, None, 5], Identity())
    assert torch.equal(per_row[1], torch.zeros(1, 2, 2)) and torch.allclose(per_row[2], per_image[1])
    with pytest.raises(NoiseLayoutError, match="match neither"):
        noise_processed_images(torch.zeros(5, 1, 2, 2), [image, None, image], [None, None, 5], Identity())
    with pytest.raises(NoiseLayoutError, match="differs"):
        noise_processed_images(torch.zeros(3, 1, 2, 2), [image, None, image], [None, None, 5], Identity())


def test_reference_images_known_answers():
    image = Image.fromarray(np.full((8, 6, 3), 200, dtype=np.uint8))
    assert reference_image(image, "none") is None and reference_image(image, "unk") is None
    blank = reference_image(image, "blank", blank_fill=7)
    assert blank.size == image.size and np.all(np.asarray(blank) == 7)
    noise = reference_image(image, "noise", seed=1)
    assert noise.size == image.size
    np.testing.assert_array_equal(np.asarray(noise), np.asarray(reference_image(image, "noise", seed=1)))
    assert not np.array_equal(np.asarray(noise), np.asarray(reference_image(image, "noise", seed=2)))
    np.testing.assert_array_equal(np.asarray(noise), diffusion_noise(np.asarray(image), step=500, seed=1))
