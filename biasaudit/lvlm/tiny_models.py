"""Tiny randomly initialised vision-language models, built from configs with no download.

For tests, benchmarks of the batching machinery, and smoke runs of ``biasaudit lvlm`` where no real LVLM
can be fetched. They load through ``AutoProcessor`` / ``AutoModelForImageTextToText`` exactly like a hub
checkpoint. Their answers are noise: never read their accuracy as a finding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from biasaudit.errors import InvalidRequestError

_TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_vlm(
    family: str,
    folder: Path,
    tokenizer_dir: str | None = None,
    seed: int = 0,
    *,
    language_model: str | None = None,
) -> Path:
    """Save a randomly initialised 2-layer VLM (``llava`` or ``idefics3``) with its processor to ``folder``.

    The tokenizer (default: the default model's) gets the family's image tokens; the ``*Pil`` image
    processors need no torchvision; images are resized to 32x32. Seeded: the same seed, the same weights.

    ``language_model``: a Llama-architecture causal LM folder (e.g. the default model's) whose trained
    weights become the VLM's language model (LLaVA only); only the tiny vision tower and projector are
    random. Its answers then carry a real language prior, and its image-free path is that LM exactly.
    """
    import transformers
    from transformers import AutoTokenizer, LlamaConfig

    if tokenizer_dir is None:
        from biasaudit.models import resolve_model_path

        tokenizer_dir = resolve_model_path("default")[0]

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    text: dict[str, Any] = {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "tie_word_embeddings": True,
        "initializer_range": 0.2,
    }
    vision: dict[str, Any] = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2}
    vision["num_attention_heads"] = 4
    model: Any
    processor: Any
    config: Any
    image_processor: Any
    torch.manual_seed(seed)
    if language_model is not None and family != "llava":
        raise InvalidRequestError("a trained language model can only be grafted into the llava family")
    if family == "llava":
        tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
        if language_model is None:
            text_config = LlamaConfig(vocab_size=len(tok), **text)
        else:
            text_config = LlamaConfig.from_pretrained(language_model)
            text_config.vocab_size = len(tok)
        config = transformers.LlavaConfig(
            vision_config=transformers.CLIPVisionConfig(**vision, image_size=32, patch_size=8),
            text_config=text_config,
            image_token_index=int(tok.convert_tokens_to_ids("<image>")),  # type: ignore[arg-type]
            vision_feature_layer=-1,
        )
        model = transformers.LlavaForConditionalGeneration(config)
        if language_model is not None:
            _graft_language_model(model, language_model, len(tok))
        image_processor = transformers.CLIPImageProcessorPil(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
        )
        processor = transformers.LlavaProcessor(
            image_processor=image_processor,
            tokenizer=tok,
            patch_size=8,
            vision_feature_select_strategy="default",
            image_token="<image>",
            chat_template=_TINY_CHAT_TEMPLATE,
            num_additional_image_tokens=1,
        )
    elif family == "idefics3":
        tok.add_special_tokens({"additional_special_tokens": ["<fake_token_around_image>", "<image>", "<global-img>"]})
        config = transformers.Idefics3Config(
            vision_config=transformers.Idefics3VisionConfig(**vision, image_size=32, patch_size=8).to_dict(),
            text_config=LlamaConfig(vocab_size=len(tok), **text).to_dict(),
            image_token_id=int(tok.convert_tokens_to_ids("<image>")),  # type: ignore[arg-type]
            scale_factor=2,
        )
        model = transformers.Idefics3ForConditionalGeneration(config)
        image_processor = transformers.Idefics3ImageProcessorPil(
            size={"longest_edge": 64}, max_image_size={"longest_edge": 32}, do_image_splitting=False
        )
        processor = transformers.Idefics3Processor(
            image_processor=image_processor,
            tokenizer=tok,
            image_seq_len=4,
            chat_template=_TINY_CHAT_TEMPLATE.replace("<image>\\n", "<image>"),
        )
    else:
        raise InvalidRequestError(f"unknown tiny VLM family {family!r}")
    model.eval()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _graft_language_model(model: Any, language_model: str, vocab_size: int) -> None:
    """Copy a trained causal LM's weights into ``model``'s language model and LM head (vocab grown by the
    image tokens; their new rows stay as initialised)."""
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(language_model, dtype=torch.float32)
    lm.resize_token_embeddings(vocab_size)
    decoder = model.get_decoder()
    decoder.load_state_dict(lm.get_decoder().state_dict())
    with torch.no_grad():
        model.get_output_embeddings().weight.copy_(lm.get_output_embeddings().weight)
