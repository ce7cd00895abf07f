"""Answer validation (the one door for clinicians' forms and judges' replies) and judge prompting."""
import json

import pytest

from medstudio.annotation import judges
from medstudio.annotation.questions import (
    AnswerError, canonical_to_shown, clean_answer, primary_value, units, validate_schema,
)
from medstudio.inference.chat import ChatBackend, ChatError
from tests.fakes.openai_server import Status, fake_openai_server

DIALOGUE = {"turns": [{"role": "user", "content": "头痛三天"}, {"role": "assistant", "content": "有发热吗？"},
                      {"role": "user", "content": "没有"}, {"role": "assistant", "content": "建议休息。"}]}
PAIR = {"prompt_turns": [{"role": "user", "content": "q"}], "chosen": "good answer", "rejected": "bad answer"}


def test_rating_accepts_form_strings_and_rejects_out_of_scale():
    assert clean_answer("rating", {}, {"score": "4", "grammar": "3"}) == {"score": 4, "aspects": {"grammar": 3}}
    with pytest.raises(AnswerError, match="outside 0-5"):
        clean_answer("rating", {}, {"score": "7"})
    with pytest.raises(AnswerError, match="not a whole number"):
        clean_answer("rating", {}, {"score": "x"})
    with pytest.raises(AnswerError, match="required"):
        clean_answer("rating", {"aspects_required": True}, {"score": 3})


def test_label_must_be_in_the_configured_set():
    assert clean_answer("label", {"labels": ["medical", "general"]}, {"label": "general"}) == {"label": "general"}
    with pytest.raises(AnswerError):
        clean_answer("label", {"labels": ["medical", "general"]}, {"label": "computing"})
    with pytest.raises(AnswerError):
        validate_schema("label", {"labels": []})
    with pytest.raises(AnswerError):
        validate_schema("rating", {"scale": [0, 10]})


def test_turn_rating_needs_one_rating_per_assistant_turn():
    turn = {"fluency": 5, "relevance": 4, "completeness": 3, "proficiency": 4}
    vals = clean_answer("turn_rating", {}, {"turns": [turn, turn]}, content=DIALOGUE)
    assert primary_value("turn_rating", vals) == pytest.approx(4.0)
    assert units("turn_rating", vals)[("fluency", "t2")] == 5
    with pytest.raises(AnswerError, match="2 assistant turns"):
        clean_answer("turn_rating", {}, {"turns": [turn]}, content=DIALOGUE)


def test_preference_is_stored_in_record_order_whatever_was_shown():
    shown_b_when_swapped = clean_answer("preference", {}, {"winner": "B", "fluency": "A"}, swapped=True)
    assert shown_b_when_swapped == {"winner": "chosen", "aspects": {"fluency": "rejected"}}
    assert clean_answer("preference", {}, {"winner": "B"}, swapped=False) == {"winner": "rejected"}
    assert clean_answer("preference", {}, {"winner": "tie"}, swapped=True) == {"winner": "tie"}
    assert canonical_to_shown("chosen", True) == "B" and canonical_to_shown("chosen", False) == "A"
    with pytest.raises(AnswerError):
        clean_answer("preference", {}, {"winner": "C"})


def test_judge_sees_pair_in_shown_order_and_its_reply_is_canonicalised():
    msgs = judges.build_messages("preference", {}, "pair", PAIR, swapped=True)
    user = msgs[1]["content"]
    assert user.index("bad answer") < user.index("good answer")  # swapped: rejected shown as A
    vals = judges.parse_reply("preference", {}, 'Sure. ```json\n{"winner": "b"}\n```', content=PAIR, swapped=True)
    assert vals == {"winner": "chosen"}


def test_judge_labels_through_the_shared_chat_client_and_failures_are_per_item():
    replies = [json.dumps({"score": 4.0, "aspects": {"grammar": 5}}), Status(500), Status(500), Status(500),
               Status(500), "no json here", json.dumps({"score": 9})]
    with fake_openai_server(chat=replies) as url:
        backend = ChatBackend(url, "judge-model", max_retries=3, timeout=5)
        doc = {"text": "高血压患者应低盐饮食。", "title": "高血压"}
        msgs = judges.build_messages("rating", {}, "document", doc)
        reply = backend.complete(msgs)
        assert judges.parse_reply("rating", {}, reply.text, content=doc) == {"score": 4, "aspects": {"grammar": 5}}
        with pytest.raises(ChatError):  # 500 after retries
            backend.complete(msgs)
        with pytest.raises(ChatError):
            judges.parse_reply("rating", {}, backend.complete(msgs).text, content=doc)
        with pytest.raises(AnswerError):
            judges.parse_reply("rating", {}, backend.complete(msgs).text, content=doc)
        sent = url.chat_requests()[0]["json"]
        assert sent["model"] == "judge-model" and "高血压患者应低盐饮食" in sent["messages"][1]["content"]


def test_judge_refuses_free_text_questions():
    with pytest.raises(AnswerError):
        judges.build_messages("text", {}, "document", {"text": "x"})
