"""Tiny randomly initialised vision-language models, built from configs with no download.

For tests, benchmarks of the batching machinery, and smoke runs of ``biasaudit lvlm`` where no real LVLM
can be fetched. They load through ``AutoProcessor`` / ``AutoModelForImageTextToText`` exactly like a hub
checkpoint. Their answers are noise: never read their accuracy as a finding.
"""

from __future__ import annotations

from pathlib import Path

import torch

_TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_vlm(family: str, folder: Path, tokenizer_dir: str | None = None, seed: int = 0) -> Path:
    """Save a randomly initialised 2-layer VLM (``llava`` or ``idefics3``) with its processor to ``folder``.

    The tokenizer (default: the default model's) gets the family's image tokens; the ``*Pil`` image
    processors need no torchvision; images are resized to 32x32. Seeded: the same seed, the same weights.
    """
    import transformers
    from transformers import AutoTokenizer, LlamaConfig

    if tokenizer_dir is None:
        from biasaudit.models import resolve_model_path

        tokenizer_dir = resolve_model_path("default")[0]

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    text = {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "tie_word_embeddings": True,
        "initializer_range": 0.2,
    }
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
    torch.manual_seed(seed)
    if family == "llava":
        tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
        config = transformers.LlavaConfig(
            vision_config=transformers.CLIPVisionConfig(**vision, image_size=32, patch_size=8),
            text_config=LlamaConfig(vocab_size=len(tok), **text),
            image_token_id=tok.convert_tokens_to_ids("<image>"),
            vision_feature_layer=-1,
        )
        model = transformers.LlavaForConditionalGeneration(config)
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
            image_token_id=tok.convert_tokens_to_ids("<image>"),
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
        raise ValueError(f"unknown tiny VLM family {family!r}")
    model.eval()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
