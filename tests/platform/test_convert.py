"""The one record converter (medstudio.datasets.convert): every kind, from a real shared-data line
through the reader (`normalize_row`) to every target, and back through the reader where it can."""
from __future__ import annotations

import json

import pytest

from medstudio.datasets import convert as cv
from medstudio.datasets.formats import normalize_row
from tests.shared_lines import shared_lines as _lines




def _alternates(msgs: list[dict]) -> None:
    """Optional system first, then user/assistant alternating, starting with user, ending with assistant."""
    body = msgs[1:] if msgs and msgs[0]["role"] == "system" else msgs
    assert body and len(body) % 2 == 0, msgs
    assert [m["role"] for m in body] == ["user", "assistant"] * (len(body) // 2)
    assert all(isinstance(m["content"], str) and m["content"].strip() for m in msgs)
    assert all(m["role"] != "system" for m in body)


def _every_target(kind: str, row: dict) -> dict:
    """Convert one normalised row to every target and check what holds for every kind."""
    rec = normalize_row(row, kind)
    content = rec.content
    out: dict = {"content": content}
    # export rows -> reader -> the same content (and the same Record.text)
    flat = cv.to_flat_row(kind, content, id=rec.external_id, source=rec.source, lang=rec.lang)
    back = normalize_row(json.loads(cv.dumps(flat)), kind)
    assert back.content == content and back.external_id == rec.external_id and back.text == rec.text
    studio_row = cv.to_row({"id": 1, "external_id": rec.external_id, "dataset": "d", "kind": kind, "lang": rec.lang,
                            "source": rec.source, "subset": rec.subset, "n_tokens": rec.n_tokens,
                            "text_hash": rec.text_hash, "content": content})
    assert normalize_row(cv.to_flat_row(studio_row["kind"], json.loads(cv.dumps(studio_row))["content"]), kind).content == content
    # text for search and scorers
    assert cv.flat_text(kind, content) == rec.text
    fields = cv.text_fields(kind, content)
    assert fields and all(f in rec.text for f in fields)
    # CPT text
    out["text"] = cv.to_text(kind, content)
    assert out["text"].strip()
    # SFT messages, preference, LLaMA-Factory
    if kind == "document":
        with pytest.raises(cv.Unconvertible, match="no conversation"):
            cv.to_messages(kind, content)
    else:
        out["messages"] = msgs = cv.to_messages(kind, content)
        _alternates(msgs)
        rendered = cv.to_text(kind, content, render=lambda m: "|".join(x["role"] for x in m))
        assert rendered == "|".join(m["role"] for m in msgs)
    if kind == "pair":
        out["preference"] = pref = cv.to_preference(kind, content)
        _alternates(pref["prompt"] + pref["chosen"])
        assert [m["role"] for m in pref["rejected"]] == ["assistant"]
    else:
        with pytest.raises(cv.Unconvertible, match=f"a {kind} has no rejected answer"):
            cv.to_preference(kind, content)
    out["lf"] = lf = cv.to_llamafactory(kind, content)
    info = next(iter(cv.llamafactory_dataset_info("x", "x.jsonl", {kind}).values()))
    assert set(info["columns"].values()) <= set(lf)
    if kind != "document":
        _alternates(lf["messages"] + ([lf["chosen"]] if kind == "pair" else []))
        system = out["messages"][0]["content"] if out["messages"][0]["role"] == "system" else ""
        assert lf["system"] == system
    return out


def test_document(shared_data):
    for name in ("general_en.jsonl", "general_zh.jsonl"):
        row = _lines(shared_data, name)[0]
        out = _every_target("document", row)
        assert out["text"] == f"{row['title']}\n{row['text']}"
        assert out["lf"] == {"text": out["text"]}
    # the title is not repeated when the text already starts with it
    assert cv.to_text("document", {"title": "Intro", "text": "Intro and more"}) == "Intro and more"
    with pytest.raises(cv.Unconvertible, match="no rejected answer"):
        cv.to_preference("document", {"text": "x"})


def test_qa(shared_data):
    for name in ("huatuo26m_test_qa.jsonl", "zh_med_qa_toyhom.jsonl"):
        row = _lines(shared_data, name)[0]
        out = _every_target("qa", row)
        assert out["messages"] == [{"role": "user", "content": row["question"]},
                                   {"role": "assistant", "content": row["answer"]}]
        assert out["text"] == f"{row['question']}\n{row['answer']}"
    # a system prompt (from an OpenAI-style row, or a diversified record) stays the first message
    row = _lines(shared_data, "huatuo26m_test_qa.jsonl")[0]
    chat = {"id": row["id"], "messages": [{"role": "system", "content": "你是一名医生。"},
                                          {"role": "user", "content": row["question"]},
                                          {"role": "assistant", "content": row["answer"]}]}
    out = _every_target("qa", chat)
    assert out["messages"][0] == {"role": "system", "content": "你是一名医生。"}
    assert out["lf"]["system"] == "你是一名医生。" and out["lf"]["messages"][0]["role"] == "user"
    assert "你是一名医生" not in out["text"]  # CPT text is the record's text, not its instruction


def test_dialogue(shared_data):
    row = _lines(shared_data, "cmtmedqa_multiturn.jsonl", lambda r: len(r["turns"]) >= 4)[0]
    out = _every_target("dialogue", row)
    assert out["messages"] == row["turns"]
    assert out["text"] == "\n".join(t["content"] for t in row["turns"])
    # a dialogue that ends with an unanswered user turn is cut after its last assistant turn
    row = _lines(shared_data, "disc_med_sft_samples.jsonl", lambda r: r["turns"][-1]["role"] == "user")[0]
    out = _every_target("dialogue", row)
    last_a = max(i for i, t in enumerate(row["turns"]) if t["role"] == "assistant")
    assert out["messages"] == row["turns"][: last_a + 1]
    # ShareGPT layout with a system turn: one leading system message
    row = _lines(shared_data, "disc_med_sft_samples.jsonl", lambda r: r["turns"][-1]["role"] == "assistant")[0]
    share = {"id": row["id"], "conversations": [{"from": "system", "value": "Be brief."}]
             + [{"from": "human" if t["role"] == "user" else "gpt", "value": t["content"]} for t in row["turns"]]}
    out = _every_target("dialogue", share)
    assert out["messages"] == [{"role": "system", "content": "Be brief."}] + row["turns"]
    with pytest.raises(cv.Unconvertible, match="assistant"):
        cv.to_messages("dialogue", {"turns": [{"role": "user", "content": "x"}]})
    with pytest.raises(cv.Unconvertible, match="malformed turn"):
        cv.to_messages("dialogue", {"turns": [{"role": "doctor", "content": "x"}]})


def test_mcq(shared_data):
    zh = _lines(shared_data, "cmmlu_med.jsonl")[0]
    en = _lines(shared_data, "pubmedqa.jsonl", lambda r: bool(r.get("explanation")))[0]
    for row in (zh, en):
        out = _every_target("mcq", row)
        user, assistant = out["messages"]
        assert user["content"].startswith(row["question"])
        for letter, text in row["options"].items():
            assert f"{letter}. {text}" in user["content"]
        letter = row["answer"]
        # the answer is the letter AND the option text (not the bare letter)
        assert assistant["content"].startswith(f"{letter}. {row['options'][letter]}")
        if row.get("context"):  # extras (meta, e.g. PubMedQA's abstract) stay out of the prompt
            assert str(row["context"])[:60] not in user["content"]
    assert out["messages"][1]["content"].endswith("\n" + en["explanation"])
    several = {"question": "Q?", "options": {"A": "a", "B": "b", "C": "c"}, "answer": "AC"}
    assert cv.to_messages("mcq", several)[1]["content"] == "A. a; C. c"
    with pytest.raises(cv.Unconvertible, match="not one of the options"):
        cv.to_messages("mcq", {**several, "answer": "D"})


def test_pair(shared_data):
    row = _lines(shared_data, "hh_rlhf_harmless_pairs.jsonl")[0]
    out = _every_target("pair", row)
    # SFT on a pair = prompt + chosen; the rejected answer is never trained on
    assert out["messages"] == row["prompt_turns"] + [{"role": "assistant", "content": row["chosen"]}]
    assert row["rejected"] not in json.dumps(out["messages"], ensure_ascii=False)
    assert row["rejected"] not in out["text"]
    assert out["preference"] == {"prompt": row["prompt_turns"],
                                 "chosen": [{"role": "assistant", "content": row["chosen"]}],
                                 "rejected": [{"role": "assistant", "content": row["rejected"]}]}
    assert out["lf"]["chosen"] == {"role": "assistant", "content": row["chosen"]}
    assert out["lf"]["rejected"] == {"role": "assistant", "content": row["rejected"]}
    # a system prompt in prompt_turns survives the reader and leads every conversational target
    sys_row = dict(row, prompt_turns=[{"role": "system", "content": "Be safe."}] + row["prompt_turns"])
    out = _every_target("pair", sys_row)
    assert out["content"]["prompt_turns"][0] == {"role": "system", "content": "Be safe."}
    assert out["messages"][0] == out["preference"]["prompt"][0] == {"role": "system", "content": "Be safe."}
    assert out["lf"]["system"] == "Be safe." and out["lf"]["messages"][0]["role"] == "user"
    assert "Be safe." not in out["text"]
    with pytest.raises(cv.Unconvertible, match="end with a user turn"):
        cv.to_preference("pair", {"prompt_turns": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
                                  "chosen": "x", "rejected": "y"})


def test_unknown_kind_and_scorer_fields_are_lenient():
    with pytest.raises(cv.Unconvertible, match="unknown record kind"):
        cv.to_text("image", {})
    # scorers see whatever is stored: missing fields are left out, never an error
    assert cv.text_fields("qa", {"question": "q"}) == ["q"]
    assert cv.text_fields("mcq", {"question": "q", "options": {"A": "x", "B": "y"}}) == ["q", "x", "y"]
    assert cv.flat_text("mcq", {"question": "q", "options": {"A": "x", "B": "y"}}) == "q\nA. x\nB. y"
    assert cv.text_fields("pair", {"prompt_turns": [{"role": "system", "content": "s"}, {"role": "user", "content": "p"}],
                                   "chosen": "c", "rejected": "r"}) == ["p", "c", "r"]


def test_training_examples_use_the_converter(shared_data):
    from training.pipeline.specs import TrainingSpec
    from training.pipeline.train import build_examples

    rows = []
    for kind, name in (("document", "general_en.jsonl"), ("qa", "huatuo26m_test_qa.jsonl"),
                       ("dialogue", "cmtmedqa_multiturn.jsonl"), ("mcq", "cmmlu_med.jsonl"),
                       ("pair", "hh_rlhf_harmless_pairs.jsonl")):
        rows.append({"kind": kind, "content": normalize_row(_lines(shared_data, name)[0], kind).content})
    rows.append({"kind": "dialogue", "content": {"turns": [{"role": "user", "content": "only a question"}]}})

    def examples(stage):
        return build_examples(TrainingSpec(stage=stage, base_model="m"), rows)

    assert examples("cpt-stable") == [{"text": cv.to_text(r["kind"], r["content"])} for r in rows[:5]]
    assert examples("sft") == [{"messages": cv.to_messages(r["kind"], r["content"])} for r in rows[1:5]]
    assert examples("dpo") == [cv.to_preference("pair", rows[4]["content"])]
