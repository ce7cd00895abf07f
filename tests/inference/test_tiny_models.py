"""The tiny local models other tests rely on: loadable through the production code paths, deterministic."""
from __future__ import annotations

import filecmp
from pathlib import Path

from tests.fakes.fixtures import tiny_encoder_path, tiny_llama_path  # noqa: F401
from tests.fakes.tiny_models import build_tiny_llama


def test_tiny_llama_is_llama_with_chat_template(tiny_llama_path):
    from transformers import AutoConfig, AutoTokenizer

    assert AutoConfig.from_pretrained(tiny_llama_path).model_type == "llama"
    tok = AutoTokenizer.from_pretrained(tiny_llama_path)
    text = tok.apply_chat_template(
        [{"role": "system", "content": "你是医生"}, {"role": "user", "content": "头痛"},
         {"role": "assistant", "content": "多休息"}], tokenize=False)
    assert text == "<|im_start|>system\n你是医生<|im_end|>\n<|im_start|>user\n头痛<|im_end|>\n<|im_start|>assistant\n多休息<|im_end|>\n"
    # byte-level BPE: any Chinese text round-trips; digits are single tokens (Deita needs that)
    sample = "罕见病：肌萎缩侧索硬化 ALS, 1-6"
    assert tok.decode(tok.encode(sample, add_special_tokens=False)) == sample
    for d in "123456":
        assert len(tok.encode(d, add_special_tokens=False)) == 1


def test_tiny_llama_same_seed_same_weights(tmp_path):
    a = Path(build_tiny_llama(tmp_path / "a", seed=3))
    b = Path(build_tiny_llama(tmp_path / "b", seed=3))
    c = Path(build_tiny_llama(tmp_path / "c", seed=4))
    assert filecmp.cmp(a / "model.safetensors", b / "model.safetensors", shallow=False)
    assert not filecmp.cmp(a / "model.safetensors", c / "model.safetensors", shallow=False)


def test_tiny_encoder_loads_as_sentence_transformer(tiny_encoder_path):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(tiny_encoder_path, device="cpu", local_files_only=True)
    assert model.encode(["发烧", "fever"]).shape == (2, 32)
