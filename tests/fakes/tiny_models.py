"""Tiny, deterministic models built on the spot, so tests load "real" models through the same
code paths as production (from a local directory) without any hub download.

    build_tiny_llama(dir)   -> path of a 2-layer LlamaForCausalLM + byte-level BPE tokenizer with
                               a ChatML chat template (zh + en; every byte is encodable)
    build_tiny_encoder(dir) -> path of a tiny sentence-transformers model (2-layer BERT from a local
                               config, same tokenizer, mean pooling)

Both take a seed, finish in about a second on CPU, and give identical weights for the same seed.
Pytest fixtures wrapping them live in tests/fakes/fixtures.py.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

# ChatML, as Qwen2.5 uses; {% generation %} marks assistant text so TRL's assistant-only loss works.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]

_CORPUS = [
    "The patient reports a headache and fever for three days.",
    "Please describe your symptoms, medical history and current medication.",
    "Hypertension is treated with lifestyle changes and antihypertensive drugs.",
    "Diabetes mellitus type 2: check fasting glucose and HbA1c every three months.",
    "Take the tablet twice a day after meals; see a doctor if the rash spreads.",
    "Rate the answer from 1 to 6: 1 2 3 4 5 6. Score: 5",
    "The quick brown fox jumps over the lazy dog. Wikipedia is a free encyclopedia.",
    "医生您好，我最近总是头痛，晚上睡不好，这是怎么回事？",
    "根据您的描述，可能是紧张性头痛，建议规律作息，必要时到神经内科就诊。",
    "高血压患者应低盐饮食，按时服用降压药，定期监测血压。",
    "糖尿病的典型症状是多饮、多食、多尿和体重下降。",
    "孩子发烧三十八度五，咳嗽有痰，需要吃抗生素吗？",
    "请问这种情况需要做什么检查？血常规、胸片还是CT？",
    "中医认为脾胃虚弱会导致消化不良，可以服用健脾丸。",
    "北京是中华人民共和国的首都，历史悠久。",
    "问题分析：您好，根据您的症状，考虑是上呼吸道感染。意见建议：多喝水，注意休息。",
]


def _tokenizer(vocab_size: int, seed: int):
    """Train a byte-level BPE on the little corpus above and wrap it as a transformers tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # The corpus order is the only input of the (deterministic) trainer; the seed rotates it so
    # different seeds give different, but reproducible, vocabularies.
    k = seed % len(_CORPUS)
    tok.train_from_iterator((_CORPUS[k:] + _CORPUS[:k]) * 3, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<pad>",
        unk_token=None,
        additional_special_tokens=["<|im_start|>", "<|endoftext|>"],
        model_max_length=4096,
        chat_template=CHAT_TEMPLATE,
    )


def build_tiny_llama(directory: str | os.PathLike, *, seed: int = 0, vocab_size: int = 600,
                     hidden_size: int = 64, num_layers: int = 2) -> str:
    """Save a randomly initialised 2-layer LlamaForCausalLM and its tokenizer under `directory`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer(vocab_size, seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        # A wider init than the default 0.02 gives peaked, token-dependent distributions, so tests
        # comparing losses or digit expectations can actually tell implementations apart.
        initializer_range=0.2,
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.eval()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def build_tiny_encoder(directory: str | os.PathLike, *, seed: int = 0, vocab_size: int = 600,
                       hidden_size: int = 32, max_seq_length: int = 256) -> str:
    """Save a tiny sentence-transformers model (2-layer BERT + mean pooling) under `directory`."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Pooling, Transformer
    from transformers import BertConfig, BertModel

    path = Path(directory)
    backbone_dir = path / "_backbone"
    backbone_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer(vocab_size, seed)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=max_seq_length,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(backbone_dir)
    tokenizer.save_pretrained(backbone_dir)
    word = Transformer(str(backbone_dir), max_seq_length=max_seq_length)
    pool = Pooling(word.get_embedding_dimension(), pooling_mode="mean")
    model = SentenceTransformer(modules=[word, pool], device="cpu")
    model.save(str(path))
    shutil.rmtree(backbone_dir)  # the saved model holds its own copy of weights and tokenizer
    return str(path)
