"""ChatBackend against the local fake OpenAI server: retries, timeouts, per-item failures."""
from __future__ import annotations

import time

import pytest

from medstudio.inference.chat import ChatBackend, ChatError, ChatReply, parse_json_object
from tests.fakes.openai_server import Malformed, Raw, Slow, Status, fake_openai_server

MSGS = [{"role": "user", "content": "胸痛应该挂哪个科？"}]


def test_complete_returns_text_usage_and_sends_model_and_params():
    with fake_openai_server(chat=["心内科。"]) as url:
        reply = ChatBackend(url, "judge-1").complete(MSGS, temperature=0.2, max_tokens=16)
        assert isinstance(reply, ChatReply)
        assert reply.text == "心内科。"
        assert reply.usage_completion_tokens == len("心内科。")
        assert reply.usage_prompt_tokens == len(MSGS[0]["content"])
        assert reply.raw["choices"][0]["message"]["content"] == "心内科。"
        sent = url.chat_requests()[0]["json"]
        assert sent["model"] == "judge-1"
        assert sent["temperature"] == 0.2 and sent["max_tokens"] == 16
        assert sent["messages"] == MSGS


def test_callable_script_sees_the_request():
    with fake_openai_server(chat=lambda req: "echo:" + req["messages"][-1]["content"]) as url:
        assert ChatBackend(url, "m").complete(MSGS).text == "echo:" + MSGS[0]["content"]


@pytest.mark.parametrize("error", [Status(429), Status(500), Status(503)])
def test_transient_errors_are_retried_then_succeed(error):
    with fake_openai_server(chat=[error, error, "fine"]) as url:
        reply = ChatBackend(url, "m", max_retries=3).complete(MSGS)
        assert reply.text == "fine"
        assert len(url.chat_requests()) == 3


def test_rate_limit_that_never_ends_becomes_chat_error_after_retries():
    with fake_openai_server(chat=[Status(429)]) as url:
        with pytest.raises(ChatError) as info:
            ChatBackend(url, "m", max_retries=2).complete(MSGS)
        assert "429" in info.value.reason and info.value.retryable
        assert len(url.chat_requests()) == 3  # first try + 2 retries


def test_client_error_is_not_retried():
    with fake_openai_server(chat=[Status(400, {"error": {"message": "bad model"}})]) as url:
        with pytest.raises(ChatError) as info:
            ChatBackend(url, "m", max_retries=3).complete(MSGS)
        assert "400" in info.value.reason and not info.value.retryable
        assert len(url.chat_requests()) == 1


def test_slow_server_times_out_and_retry_can_recover():
    with fake_openai_server(chat=[Slow(1.0, "late"), "on time"]) as url:
        start = time.monotonic()
        reply = ChatBackend(url, "m", timeout=0.3, max_retries=1).complete(MSGS)
        assert reply.text == "on time"
        assert time.monotonic() - start < 5
    with fake_openai_server(chat=[Slow(1.0, "late")]) as url:
        with pytest.raises(ChatError) as info:
            ChatBackend(url, "m", timeout=0.2, max_retries=0).complete(MSGS)
        assert "timed out" in info.value.reason


@pytest.mark.parametrize(
    "reply, words",
    [
        (Malformed(), "malformed"),
        (Raw(200, "<html>gateway</html>", "text/html"), "malformed"),
        ({"content": ""}, "empty"),
        ({"content": None, "refusal": "I cannot help with that."}, "refused"),
        ({"content": "x", "finish_reason": "content_filter"}, "content filter"),
        ({"content": "x", "choices": []}, "no choices"),
    ],
)
def test_unusable_replies_raise_chat_error_with_reason(reply, words):
    with fake_openai_server(chat=[reply]) as url:
        with pytest.raises(ChatError) as info:
            ChatBackend(url, "m", max_retries=0).complete(MSGS)
        assert words in info.value.reason


def test_complete_many_marks_failed_items_and_keeps_the_rest():
    def script(req):
        q = req["messages"][-1]["content"]
        return Status(400) if q == "bad" else Malformed() if q == "broken" else f"ok {q}"

    convs = [[{"role": "user", "content": q}] for q in ["a", "bad", "b", "broken", "c"]]
    with fake_openai_server(chat=script) as url:
        out = ChatBackend(url, "m", max_retries=0).complete_many(convs, max_workers=3)
    assert [o.text if isinstance(o, ChatReply) else "ERR" for o in out] == ["ok a", "ERR", "ok b", "ERR", "ok c"]
    assert "400" in out[1].reason and "malformed" in out[3].reason


def test_unreachable_server_is_a_chat_error():
    with fake_openai_server() as url:
        dead = str(url)
    with pytest.raises(ChatError) as info:
        ChatBackend(dead, "m", timeout=1, max_retries=0).complete(MSGS)
    assert "cannot reach" in info.value.reason or "timed out" in info.value.reason


def test_api_key_is_sent_but_not_shown():
    with fake_openai_server(chat=["x"]) as url:
        backend = ChatBackend(url, "m", api_key="sk-secret")
        backend.complete(MSGS)
        assert url.chat_requests()[0]["headers"]["authorization"] == "Bearer sk-secret"
        assert "sk-secret" not in repr(backend)


@pytest.mark.parametrize(
    "text, expected",
    [
        ('{"score": 4}', {"score": 4}),
        ('Sure! Here it is:\n```json\n{"winner": "A", "why": "更完整"}\n```', {"winner": "A", "why": "更完整"}),
        ('评分如下 {"fluency": 5, "relevance": {"x": 1}} 谢谢', {"fluency": 5, "relevance": {"x": 1}}),
        ('first {broken then {"ok": true}', {"ok": True}),
    ],
)
def test_parse_json_object_finds_the_object(text, expected):
    assert parse_json_object(text) == expected


@pytest.mark.parametrize("text", ["", "no json here", "[1, 2, 3]", '{"unterminated": '])
def test_parse_json_object_raises_with_reason(text):
    with pytest.raises(ChatError) as info:
        parse_json_object(text)
    assert "JSON" in info.value.reason
