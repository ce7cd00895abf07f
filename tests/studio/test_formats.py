"""Export layouts (pure): each record kind maps to the target format or to a clear skip reason.

The layouts live in the one record converter, medstudio.datasets.convert (tests/platform/test_convert.py
covers every kind from shared data); these are the studio export's expectations of it."""
from __future__ import annotations

import pytest

from medstudio.datasets.convert import (
    Unconvertible,
    llamafactory_dataset_info,
    to_llamafactory,
    to_messages,
    to_preference,
    to_text,
)

QA = {"question": "头痛怎么办？", "answer": "多休息。", "system": "你是医生"}
DIALOGUE = {"turns": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                      {"role": "user", "content": "fever"}, {"role": "assistant", "content": "rest"}]}
MCQ = {"question": "Q?", "options": {"A": "yes", "B": "no"}, "answer": "B", "explanation": "because"}
PAIR = {"prompt_turns": [{"role": "user", "content": "p"}], "chosen": "good", "rejected": "bad"}
DOC = {"title": "T", "text": "body text"}


def test_messages_for_each_conversational_kind():
    assert to_messages("qa", QA) == [{"role": "system", "content": "你是医生"}, {"role": "user", "content": "头痛怎么办？"},
                                     {"role": "assistant", "content": "多休息。"}]
    assert to_messages("dialogue", DIALOGUE)[-1] == {"role": "assistant", "content": "rest"}
    mcq = to_messages("mcq", MCQ)
    assert "A. yes\nB. no" in mcq[0]["content"] and mcq[1]["content"] == "B. no\nbecause"
    assert to_messages("pair", PAIR)[-1]["content"] == "good"


def test_documents_and_dangling_dialogues_are_skipped_with_reason():
    with pytest.raises(Unconvertible, match="no conversation"):
        to_messages("document", DOC)
    with pytest.raises(Unconvertible, match="assistant"):
        to_messages("dialogue", {"turns": [{"role": "user", "content": "x"}]})
    with pytest.raises(Unconvertible, match="rejected"):
        to_preference("qa", QA)


def test_preference_layout_is_trl_conversational():
    row = to_preference("pair", PAIR)
    assert row["prompt"] == [{"role": "user", "content": "p"}]
    assert row["chosen"] == [{"role": "assistant", "content": "good"}]
    assert row["rejected"] == [{"role": "assistant", "content": "bad"}]


def test_llamafactory_rows_and_dataset_info_agree():
    row = to_llamafactory("qa", QA)
    info = llamafactory_dataset_info("sel", "sel.jsonl", {"qa"})["sel"]
    assert info["formatting"] == "sharegpt"
    assert set(info["columns"].values()) <= set(row)
    assert row["system"] == "你是医生" and row["messages"][0]["role"] == "user"
    pair = to_llamafactory("pair", PAIR)
    pinfo = llamafactory_dataset_info("p", "p.jsonl", {"pair"})["p"]
    assert pinfo["ranking"] is True and set(pinfo["columns"].values()) <= set(pair)
    assert pair["chosen"] == {"role": "assistant", "content": "good"}
    doc = to_llamafactory("document", DOC)
    assert llamafactory_dataset_info("d", "d.jsonl", {"document"})["d"]["columns"] == {"prompt": "text"}
    assert doc["text"] == "T\nbody text"
    with pytest.raises(Unconvertible):
        llamafactory_dataset_info("m", "m.jsonl", {"document", "qa"})


def test_plain_text():
    assert to_text("document", DOC) == "T\nbody text"
    assert to_text("qa", {"question": "q", "answer": "a"}) == "q\na"
    with pytest.raises(Unconvertible):
        to_text("document", {"text": "  "})
