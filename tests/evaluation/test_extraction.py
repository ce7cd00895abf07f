"""MCQ answer extraction on real-looking zh/en model output (docs/METHODS.md 5: never a default letter)."""
import pytest

from training.pipeline.extraction import extract_choice, is_correct

ZH = {"A": "肋胸膜", "B": "肺胸膜", "C": "膈胸膜", "D": "胸膜顶"}
EN = {"A": "Aspirin", "B": "Heparin", "C": "Warfarin", "D": "Clopidogrel"}
PQA = {"A": "yes", "B": "no", "C": "maybe"}

CASES = [
    # (reply, options, expected letters or None)
    ("B", ZH, "B"),
    ("B.", ZH, "B"),
    ("(C)", ZH, "C"),
    ("**D**", ZH, "D"),
    ("Ｂ", ZH, "B"),  # full-width letter
    ("答案是B", ZH, "B"),
    ("答案：C", ZH, "C"),
    ("答案为（D）。", ZH, "D"),
    ("正确答案是 A", ZH, "A"),
    ("答案应该是B，因为肺胸膜属于脏胸膜。", ZH, "B"),
    ("故选D", ZH, "D"),
    ("所以选择C。", ZH, "C"),
    ("本题选 A", ZH, "A"),
    ("我选B", ZH, "B"),
    ("答：B", ZH, "B"),
    ("B. 肺胸膜", ZH, "B"),
    ("B：肺胸膜", ZH, "B"),
    ("B 肺胸膜，它属于脏胸膜", ZH, "B"),
    ("B\n\n解析：壁胸膜分为肋胸膜、膈胸膜、纵隔胸膜和胸膜顶。", ZH, "B"),
    ("选项A、C、D都属于壁胸膜，而肺胸膜属于脏胸膜，所以答案是B。", ZH, "B"),
    ("分析：A项肋胸膜属于壁胸膜……综上，正确答案为B。", ZH, "B"),
    ("B项正确。", ZH, "B"),
    ("选项B正确", ZH, "B"),
    ("壁胸膜的分部不包括肺胸膜。", ZH, "B"),  # option text instead of a letter
    ("答案是AC", ZH, "AC"),  # several letters
    ("答案：A、C", ZH, "AC"),
    ("正确答案为A和D", ZH, "AD"),
    ("ABD", ZH, "ABD"),
    ("The answer is (C)", EN, "C"),
    ("the answer is C.", EN, "C"),
    ("Answer: B", EN, "B"),
    ("Answer: (A) Aspirin", EN, "A"),
    ("The correct answer is: **D. Clopidogrel**", EN, "D"),
    ("I would choose B because heparin acts immediately.", EN, "B"),
    ("Let's think. A is an antiplatelet, C takes days to act. Therefore, the answer is B.", EN, "B"),
    ("C. Warfarin", EN, "C"),
    ("C) Warfarin is the drug of choice", EN, "C"),
    ("Option B is correct.", EN, "B"),
    ("B is the correct answer.", EN, "B"),
    ("Heparin should be given first.", EN, "B"),
    ("The answer is A and C", EN, "AC"),
    ("Answer: A, C", EN, "AC"),
    ("$\\boxed{C}$", EN, "C"),
    ("Yes", PQA, "A"),
    ("Yes, mitochondria play a role in remodelling.", PQA, "A"),
    ("No. The data do not support it.", PQA, "B"),
    ("maybe", PQA, "C"),
    ("The answer is yes.", PQA, "A"),
    ("Yes. There is no evidence against it.", PQA, "A"),  # opens with the option
    ("A patient with this history should first receive heparin.", EN, "B"),  # article "A" is not a letter
    # invalid: refusals and nothing usable, never a default letter
    ("抱歉，我无法回答这个问题。", ZH, None),
    ("I'm sorry, but I cannot provide medical advice. Please consult a doctor.", EN, None),
    ("I cannot determine the answer from the information given.", PQA, None),
    ("这个问题需要更多信息。", ZH, None),
    ("", ZH, None),
    ("   ", ZH, None),
    ("The patient should rest and drink water.", EN, None),
    ("Both heparin and warfarin are anticoagulants.", EN, None),  # two options named mid-sentence
    ("E", ZH, None),  # a letter that is not an option
]


@pytest.mark.parametrize("reply,options,expected", CASES)
def test_extracts_expected_letters(reply, options, expected):
    got = extract_choice(reply, options)
    assert got.letters == expected, (reply, got)
    assert got.valid == (expected is not None)


def test_invalid_is_never_counted_correct_even_when_key_is_a():
    # A scorer that fell back to "A" would score this as correct on PubMedQA's most common key.
    ext = extract_choice("I'm sorry, I cannot answer that.", PQA)
    assert ext.letters is None and ext.method == "refusal"
    assert not is_correct(ext, "A")


def test_refusal_method_reported_for_chinese_refusal():
    assert extract_choice("对不起，我不能回答医学问题。", ZH).method == "refusal"


def test_several_letters_on_single_answer_item_is_wrong_not_trimmed():
    ext = extract_choice("答案是AB", ZH)
    assert ext.letters == "AB"
    assert not is_correct(ext, "A")
    assert is_correct(ext, "BA")


def test_last_explicit_statement_wins_over_earlier_mentions():
    ext = extract_choice("一开始我以为答案是A，但仔细分析后，最终答案是C。", ZH)
    assert ext.letters == "C"


def test_extraction_on_every_shared_cmmlu_item_never_invents_letters():
    """Across real items, a bare key always extracts to itself and a refusal never to a letter."""
    import json, os
    path = os.path.join(os.environ.get("MEDSTUDIO_SHARED_DATA", "/work/shared/data"), "cmmlu_med.jsonl")
    if not os.path.exists(path):
        pytest.skip("shared data not available")
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for _, line in zip(range(300), f)]
    for r in rows:
        opts, ans = r["options"], r["answer"]
        assert extract_choice(f"答案是{ans}", opts).letters == ans
        assert extract_choice(f"{ans}. {opts[ans]}", opts).letters == ans
        assert extract_choice("抱歉，我无法确定。", opts).letters is None


def test_duplicate_option_texts_do_not_crash_and_stay_ambiguous():
    opts = {"A": "以上都对", "B": "以上都对", "C": "阿司匹林", "D": "肝素"}
    assert extract_choice("我认为以上都对。", opts).letters is None
    assert extract_choice("应该用肝素。", opts).letters == "D"


def test_option_text_with_latex_and_case_sensitive_genotypes():
    assert extract_choice("根据题意，$\\chi^2$ 检验符合要求。", {"A": "$\\chi^2$ 检验", "B": "Fisher 精确检验", "C": "回归分析", "D": "方差分析"}).letters == "A"
    assert extract_choice("其基因型为Gg。", {"A": "GG", "B": "gg", "C": "Gg", "D": "无法确定"}).letters == "C"
