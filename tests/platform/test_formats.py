"""The pure readers and normaliser: layouts people bring, and clear reasons for bad rows."""
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medstudio.datasets.formats import FileError, RowError, detect_kind, iter_rows, normalize_row
from medstudio.datasets.text import count_tokens, guess_lang


def test_counts_cjk_characters_one_token_each():
    assert count_tokens("我头痛") == 3
    assert count_tokens("I have a headache.") == 4
    assert count_tokens("患者 has 发烧 38.5") == 7  # 患 者 has 发 烧 38 5
    assert guess_lang("我头痛三天了 please help") == "zh"
    assert guess_lang("Headache for three days") == "en"


@pytest.mark.parametrize("row", [
    {"messages": [{"role": "system", "content": "Be a doctor"}, {"role": "user", "content": "hi"},
                  {"role": "assistant", "content": "hello"}, {"role": "user", "content": "pain"},
                  {"role": "assistant", "content": "where?"}]},
    {"conversations": [{"from": "system", "value": "Be a doctor"}, {"from": "human", "value": "hi"},
                       {"from": "gpt", "value": "hello"}, {"from": "human", "value": "pain"},
                       {"from": "gpt", "value": "where?"}]},
])
def test_openai_and_sharegpt_dialogues_normalise_alike(row):
    rec = normalize_row(row, "dialogue")
    assert rec.content["system"] == "Be a doctor"
    assert [t["role"] for t in rec.content["turns"]] == ["user", "assistant", "user", "assistant"]
    assert rec.content["turns"][3]["content"] == "where?"


def test_consecutive_turns_of_one_role_are_merged():
    rec = normalize_row({"turns": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
                                   {"role": "assistant", "content": "c"}]}, "dialogue")
    assert rec.content["turns"] == [{"role": "user", "content": "a\nb"}, {"role": "assistant", "content": "c"}]


def test_alpaca_becomes_qa():
    rec = normalize_row({"instruction": "Explain", "input": "fever", "output": "A raised temperature."}, "qa")
    assert rec.content == {"question": "Explain\nfever", "answer": "A raised temperature."}


def test_trl_conversational_pair():
    row = {"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": "good"}],
           "rejected": [{"role": "assistant", "content": "bad"}]}
    rec = normalize_row(row, "pair")
    assert rec.content == {"prompt_turns": [{"role": "user", "content": "q"}], "chosen": "good", "rejected": "bad"}


def test_mcq_answer_by_index_or_option_text():
    base = {"question": "q", "options": ["x", "y", "z"]}
    assert normalize_row({**base, "answer": 1}, "mcq").content["answer"] == "B"
    assert normalize_row({**base, "answer": "z"}, "mcq").content["answer"] == "C"
    with pytest.raises(RowError, match="not one of the option letters"):
        normalize_row({**base, "answer": "E"}, "mcq")


@pytest.mark.parametrize("row,kind,reason", [
    ({"id": 1}, "document", "missing field 'text'"),
    ({"text": 5}, "document", "must be text"),
    ({"text": "   "}, "document", "is empty"),
    ({"turns": "hello"}, "dialogue", "must be a list"),
    ({"turns": [{"role": "alien", "content": "x"}]}, "dialogue", "unknown role"),
    ({"turns": [{"role": "user", "content": "x"}]}, "dialogue", "no assistant turn"),
    ({"text": "x"}, "poem", "unknown kind"),
    ({"text": "x", "id": {"a": 1}}, "document", "'id' must be text or a number"),
])
def test_bad_rows_say_why(row, kind, reason):
    with pytest.raises(RowError, match=reason):
        normalize_row(row, kind)


def test_detect_kind():
    assert detect_kind({"chosen": "a", "rejected": "b", "prompt": "c"}) == "pair"
    assert detect_kind({"question": "q", "options": {}, "answer": "A"}) == "mcq"
    assert detect_kind({"conversations": []}) == "dialogue"
    assert detect_kind({"instruction": "x", "output": "y"}) == "qa"
    assert detect_kind({"text": "x"}) == "document"


def test_jsonl_reader_reports_line_numbers(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"text": "a"}\n\n{bad\n\xff\xfe\n[1]\n')
    rows = list(iter_rows(path, "jsonl"))
    assert [ln for ln, _ in rows] == [1, 3, 4, 5]
    assert isinstance(rows[0][1], dict)
    assert "invalid JSON" in str(rows[1][1])
    assert "invalid UTF-8" in str(rows[2][1])
    assert "expected a JSON object" in str(rows[3][1])


def test_huge_line_is_reported_not_loaded(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"text": "' + "a" * 5000 + '"}\n{"text": "ok"}\n')
    rows = list(iter_rows(path, "jsonl", max_line_bytes=1000))
    assert "longer than 1000 bytes" in str(rows[0][1])
    assert rows[1] == (2, {"text": "ok"})


def test_empty_file_is_a_file_error(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text("")
    with pytest.raises(FileError, match="empty"):
        list(iter_rows(path, "jsonl"))


def test_csv_with_json_columns(tmp_path):
    path = tmp_path / "x.csv"
    turns = json.dumps([{"role": "user", "content": "头痛"}, {"role": "assistant", "content": "多久了？"}], ensure_ascii=False)
    path.write_text('id,turns\nd1,"' + turns.replace('"', '""') + '"\n', encoding="utf-8")
    [(line, row)] = list(iter_rows(path, "csv"))
    assert line == 2
    assert normalize_row(row, "dialogue").content["turns"][1]["content"] == "多久了？"


def test_parquet_reader(tmp_path):
    path = tmp_path / "x.parquet"
    pq.write_table(pa.Table.from_pylist([{"id": "a", "question": "q?", "answer": "a."}] * 3), path)
    rows = list(iter_rows(path, "parquet"))
    assert [ln for ln, _ in rows] == [1, 2, 3]
    assert normalize_row(rows[0][1], "qa").content == {"question": "q?", "answer": "a."}
