"""Memorisation audit (SF-Med appendix B) on tiny local models and an OpenAI-compatible test server,
and the high-risk embedding store."""
import json
import os

import numpy as np
import pytest

from tests.fakes.openai_server import Status, fake_openai_server
from training.pipeline.evaluation import EndpointGenerator, GenParams, GeneratorUnavailable, TransformersGenerator, make_generator
from training.pipeline.memorization import (
    HighRiskStore, Probe, judge_memorised, make_probes, memorisation_rate, split_prefix_suffix,
)

DATA = os.environ.get("MEDSTUDIO_SHARED_DATA", "/work/shared/data")


def _answers(n, length=60):
    path = os.path.join(DATA, "huatuo26m_test_qa.jsonl")
    if not os.path.exists(path):
        pytest.skip("shared data not available")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["answer"][:length] for _, line in zip(range(n), f)]


def test_split_is_at_a_unit_boundary_and_keeps_all_text():
    text = "高血压患者应低盐饮食，按时服用降压药。Check BP daily."
    p, s = split_prefix_suffix(text, prefix_ratio=0.5)
    assert p + s == text
    assert p and s and not s.startswith("eck")  # never inside a word
    with pytest.raises(ValueError):
        split_prefix_suffix(text, prefix_ratio=1.0)
    assert split_prefix_suffix("单", prefix_ratio=0.5) == ("单", "")
    p, s = split_prefix_suffix("一二三四五六七八九十", prefix_ratio=0.5, max_suffix_units=2)
    assert (p, s) == ("一二三四五", "六七")


def test_flag_above_threshold_and_rate_ignores_failed_items():
    probes = [Probe(1, "患者头痛", "三天伴有发热"), Probe(2, "高血压", "应低盐饮食"), Probe(3, "x", "y")]
    res = judge_memorised(probes, ["三天伴有发热，建议就医", "多喝水", None], threshold=0.8, errors=["", "", "HTTP 500"])
    assert res[0].flagged and res[0].rouge_l == pytest.approx(1.0)  # recites the suffix, then rambles
    assert not res[1].flagged and res[1].rouge_l == 0.0
    assert res[2].rouge_l is None and res[2].error == "HTTP 500"
    assert memorisation_rate(res) == {"n": 3, "scored": 2, "failed": 1, "flagged": 1, "rate": 0.5}
    # the threshold is a setting: at 1.01 nothing is flagged
    assert not any(r.flagged for r in judge_memorised(probes[:1], ["三天伴有发热"], threshold=1.01))


def test_high_risk_store_cosine_check_save_and_load(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.normal(size=(3, 16))
    store = HighRiskStore(base, keys=[11, 12, 13], threshold=0.8, embedding_model="tiny")
    near = base[1] + 0.05 * rng.normal(size=16)
    far = rng.normal(size=16)
    c = store.check(near)
    assert c.high_risk and c.nearest == 12 and c.max_cosine > 0.8
    assert not store.check(far).high_risk
    d = store.save(tmp_path / "model" / "high_risk_store")
    meta = json.loads((d / "high_risk_store.json").read_text())
    assert meta["threshold"] == 0.8 and meta["dim"] == 16 and [e["key"] for e in meta["entries"]] == [11, 12, 13]
    loaded = HighRiskStore.load(d)
    assert loaded.check(near) == c
    # the threshold is editable at load time
    strict = HighRiskStore.load(d, threshold=0.9999)
    assert not strict.check(near).high_risk
    with pytest.raises(ValueError):
        store.check(np.ones(4))
    empty = HighRiskStore(np.zeros((0, 0)), keys=[])
    assert empty.check(np.ones(4)).high_risk is False


def test_store_build_keeps_hashes_not_text(tmp_path):
    embed = lambda texts: [[float(len(t)), 1.0, float(t.count("痛"))] for t in texts]
    store = HighRiskStore.build(["头痛三天", "发热"], [1, 2], embed, threshold=0.8)
    d = store.save(tmp_path / "s")
    raw = (d / "high_risk_store.json").read_text(encoding="utf-8")
    assert "头痛" not in raw and len(json.loads(raw)["entries"][0]["prefix_sha256"]) == 64


def test_endpoint_generator_marks_failed_items_and_audit_flags_recited_suffix():
    answers = _answers(4)
    probes = make_probes(list(enumerate(answers)), prefix_ratio=0.5)
    suffix_by_prefix = {p.prefix: p.suffix for p in probes}

    def reply(req):
        prompt = req["messages"][-1]["content"]
        if prompt == probes[1].prefix:
            return Status(400, {"error": {"message": "bad request"}})
        # this "model" has memorised record 0 and knows nothing of the others
        return suffix_by_prefix[prompt] if prompt == probes[0].prefix else "请到医院就诊。"

    with fake_openai_server(chat=reply) as url:
        gen = make_generator({"backend": "openai", "base_url": url, "model": "m", "max_retries": 0})
        assert isinstance(gen, EndpointGenerator)
        outs = gen.generate([p.prefix for p in probes], GenParams(max_new_tokens=64))
        sent = url.chat_requests()[0]["json"]
    assert sent["max_tokens"] == 64 and sent["temperature"] == 0.0
    assert outs[1].text is None and "400" in outs[1].error
    res = judge_memorised(probes, [o.text for o in outs], errors=[o.error for o in outs])
    assert [r.flagged for r in res] == [True, False, False, False]
    assert res[1].error and res[1].rouge_l is None


def test_missing_model_says_which_setting_to_change(tmp_path):
    gen = make_generator({"backend": "transformers", "path": str(tmp_path / "nope")})
    with pytest.raises(GeneratorUnavailable, match="path"):
        gen.generate(["x"], GenParams())
    with pytest.raises(GeneratorUnavailable, match="base_url"):
        make_generator({"backend": "openai"})


@pytest.mark.slow
def test_model_trained_on_a_record_verbatim_is_flagged_and_untrained_is_not(memorised_llama):
    trained, base, answers = memorised_llama
    probes = make_probes(list(enumerate(answers)), prefix_ratio=0.5)
    params = GenParams(max_new_tokens=60, temperature=0.0)

    trained_out = TransformersGenerator(trained).generate([p.prefix for p in probes], params)
    trained_res = judge_memorised(probes, [g.text for g in trained_out])
    assert trained_res[0].flagged, (trained_res[0].output, trained_res[0].suffix, trained_res[0].rouge_l)
    assert not any(r.flagged for r in trained_res[1:]), [r.rouge_l for r in trained_res]

    base_out = TransformersGenerator(base).generate([p.prefix for p in probes], params)
    base_res = judge_memorised(probes, [g.text for g in base_out])
    assert not any(r.flagged for r in base_res), [r.rouge_l for r in base_res]
    assert memorisation_rate(trained_res)["flagged"] == 1
    assert base_out[0].prompt_text == probes[0].prefix and base_out[0].n_output_tokens > 0


def test_chat_prompts_go_through_the_models_chat_template(memorised_llama):
    path = memorised_llama[1]
    gen = TransformersGenerator(path, batch_size=2)
    outs = gen.generate([[{"role": "user", "content": "头痛怎么办？"}], [{"role": "user", "content": "hi"}], "raw text"],
                        GenParams(max_new_tokens=5, temperature=0.7, seed=3))
    assert outs[0].prompt_text.startswith("<|im_start|>user\n头痛怎么办？") and outs[0].prompt_text.endswith("<|im_start|>assistant\n")
    assert outs[2].prompt_text == "raw text"
    assert all(o.text is not None for o in outs)
    again = gen.generate([[{"role": "user", "content": "头痛怎么办？"}], [{"role": "user", "content": "hi"}], "raw text"],
                         GenParams(max_new_tokens=5, temperature=0.7, seed=3))
    assert [o.text for o in again] == [o.text for o in outs]  # same seed, same samples: repeatable


def test_vllm_backend_is_lazy_and_says_what_to_do_without_it():
    import importlib.util

    gen = make_generator({"backend": "vllm", "path": "/models/x"})  # constructing it imports nothing
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM installed here (GPU worker)")
    with pytest.raises(GeneratorUnavailable, match="GPU worker"):
        gen.generate(["x"], GenParams())
