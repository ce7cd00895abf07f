"""Causal-LM and embedding backends on tiny local models and the fake OpenAI server."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from medstudio.inference import ModelNotAvailable
from medstudio.inference.embeddings import EmbeddingError, OpenAIEmbedder, SentenceTransformerEmbedder, load_embedder
from medstudio.inference.lm import TransformersLM, _batches_by_budget, load_causal_lm
from tests.fakes.fixtures import tiny_encoder_path, tiny_llama_path  # noqa: F401
from tests.fakes.openai_server import Malformed, Status, fake_openai_server


@pytest.fixture(scope="module")
def lm(tiny_llama_path):
    return TransformersLM(tiny_llama_path, setting="TEST_LM", token_budget=64)


def _reference_logprobs(lm, seq):
    import torch

    with torch.inference_mode():
        logits = lm.model(input_ids=torch.tensor([seq])).logits[0].float()
    return torch.log_softmax(logits, -1)


def test_token_logprobs_match_full_logits_and_ignore_batching(lm):
    tok = lm.tokenizer
    texts = ["医生您好，我头痛三天了。", "Take the tablet twice a day.", "高血压", "糖尿病的典型症状是多饮多尿，体重下降明显"]
    seqs = [tok.encode(t, add_special_tokens=False) for t in texts]
    targets = [list(range(1, len(s))) for s in seqs]
    got = lm.token_logprobs(seqs, targets)  # token_budget=64 forces several padded batches
    for seq, tgt, values in zip(seqs, targets, got):
        ref = _reference_logprobs(lm, seq)
        expected = np.array([ref[j - 1, seq[j]].item() for j in tgt])
        assert values.shape == expected.shape
        np.testing.assert_allclose(values, expected, atol=1e-5)
        assert np.all(values < 0)


def test_token_logprobs_rejects_position_zero(lm):
    with pytest.raises(ValueError):
        lm.token_logprobs([[5, 6, 7]], [[0, 1]])


def test_next_token_logprobs_restricted_to_candidates(lm):
    tok = lm.tokenizer
    seqs = [tok.encode("Score: ", add_special_tokens=False), tok.encode("评分：", add_special_tokens=False)]
    digits = [tok.convert_tokens_to_ids(str(d)) for d in range(1, 7)]
    got = lm.next_token_logprobs(seqs, digits)
    assert got.shape == (2, 6)
    for row, seq in zip(got, seqs):
        ref = _reference_logprobs(lm, seq + [0])[len(seq) - 1]
        np.testing.assert_allclose(row, [ref[d].item() for d in digits], atol=1e-5)


def test_batches_respect_token_budget():
    lengths = [10, 50, 30, 30, 5, 64]
    batches = _batches_by_budget(lengths, token_budget=64, max_batch=8)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 64


def test_missing_model_names_the_setting(tmp_path):
    with pytest.raises(ModelNotAvailable) as info:
        TransformersLM(str(tmp_path / "nope"), setting="MEDSTUDIO_CONFILTER_MODEL")
    assert "MEDSTUDIO_CONFILTER_MODEL" in str(info.value)
    with pytest.raises(ModelNotAvailable) as info:
        load_embedder("some-org/model-that-is-not-cached-anywhere", setting="MEDSTUDIO_EMBEDDING_MODEL")
    assert "MEDSTUDIO_EMBEDDING_MODEL" in str(info.value) and "cache" in str(info.value)
    with pytest.raises(ModelNotAvailable):
        load_causal_lm("", setting="X")


def test_sentence_transformer_embedder_normalised_and_deterministic(tiny_encoder_path):
    emb = SentenceTransformerEmbedder(tiny_encoder_path, device="cpu")
    texts = ["头痛发烧", "The patient has a fever.", "头痛发烧"]
    vecs = emb.encode(texts)
    assert vecs.shape == (3, emb.dim) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vecs[0], vecs[2], atol=1e-6)
    assert not np.allclose(vecs[0], vecs[1])
    assert emb.encode([]).shape == (0, emb.dim)


def test_openai_embedder_batches_and_errors():
    seen = []

    def script(inputs):
        seen.append(len(inputs))
        return [[float(len(t)), 1.0, 0.0] for t in inputs]

    with fake_openai_server(embeddings=script) as url:
        emb = OpenAIEmbedder("bge-m3", base_url=url, batch_size=2, normalize=False)
        vecs = emb.encode(["a", "bb", "ccc"])
        assert seen == [2, 1]
        np.testing.assert_allclose(vecs[:, 0], [1, 2, 3])
        assert url.requests[-1]["json"]["model"] == "bge-m3"
    with fake_openai_server(embeddings=[Status(500)]) as url:
        with pytest.raises(EmbeddingError) as info:
            OpenAIEmbedder("m", base_url=url, max_retries=1).encode(["x"])
        assert "500" in info.value.reason
    with fake_openai_server(embeddings=[Malformed()]) as url:
        with pytest.raises(EmbeddingError):
            OpenAIEmbedder("m", base_url=url, max_retries=0).encode(["x"])


def test_importing_inference_modules_does_not_import_torch():
    code = (
        "import sys; import medstudio.inference, medstudio.inference.chat, medstudio.inference.lm, "
        "medstudio.inference.embeddings; "
        "bad = [m for m in ('torch', 'transformers', 'sentence_transformers', 'vllm', 'openai') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
