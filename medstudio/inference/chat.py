"""OpenAI-compatible chat client shared by every stage (judges, generators, Deita-by-prompt).

One `ChatBackend` talks to any `/v1/chat/completions` server: GPT-4 class APIs, `vllm serve`,
the test fake in tests/fakes/openai_server.py. Transport problems (429, 5xx, timeouts, dropped
connections) are retried with exponential back-off by the `openai` client's own machinery,
which also honours `Retry-After`. Anything that is still wrong afterwards, and every reply that
is unusable (malformed body, no choices, empty text, refusal), becomes a `ChatError` with a
human-readable `reason`, so callers mark *that item* as failed and carry on with the job.

Plain Python, no Django; `openai` is imported lazily so that importing this module is free.
"""
from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Sequence

Message = dict[str, Any]


class ChatError(Exception):
    """One chat call failed for good; `reason` says why in words a curator can act on."""

    def __init__(self, reason: str, *, retryable: bool = False):
        super().__init__(reason)
        self.reason = reason
        # True when the failure came from transport (rate limit, server, timeout) rather than the
        # reply itself; a later re-run of the item may succeed.
        self.retryable = retryable


@dataclass
class ChatReply:
    text: str
    usage_prompt_tokens: int | None
    usage_completion_tokens: int | None
    raw: dict[str, Any] = field(default_factory=dict)
    finish_reason: str | None = None


class ChatBackend:
    """A model behind an OpenAI-compatible chat endpoint."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str = "EMPTY",
        timeout: float = 60,
        max_retries: int = 3,
    ):
        self.base_url = base_url
        self.model = model
        self.timeout = timeout
        self.max_retries = max_retries
        self._api_key = api_key or "EMPTY"
        self._client = None

    def __repr__(self) -> str:  # never shows the key
        return f"ChatBackend(base_url={self.base_url!r}, model={self.model!r})"

    @property
    def client(self):
        if self._client is None:
            import openai

            self._client = openai.OpenAI(
                base_url=self.base_url,
                api_key=self._api_key,
                timeout=self.timeout,
                max_retries=self.max_retries,
            )
        return self._client

    def complete(self, messages: Sequence[Message], **params: Any) -> ChatReply:
        """Send one conversation; return the first choice or raise `ChatError`."""
        import openai

        if not messages:
            raise ChatError("no messages to send")
        try:
            completion = self.client.chat.completions.create(
                model=self.model, messages=list(messages), **params
            )
        except openai.APITimeoutError:
            raise ChatError(
                f"timed out after {self.timeout}s ({self.max_retries} retries)", retryable=True
            ) from None
        except openai.RateLimitError as exc:
            raise ChatError(
                f"rate limited (HTTP 429) after {self.max_retries} retries: {_short(exc)}", retryable=True
            ) from None
        except openai.APIStatusError as exc:
            code = exc.status_code
            raise ChatError(f"HTTP {code} from server: {_short(exc)}", retryable=code >= 500) from None
        except openai.APIConnectionError as exc:
            raise ChatError(f"cannot reach {self.base_url}: {_short(exc)}", retryable=True) from None
        except (openai.APIResponseValidationError, json.JSONDecodeError, ValueError) as exc:
            raise ChatError(f"malformed reply body: {_short(exc)}") from None
        return _reply_from_completion(completion)

    def complete_many(
        self, conversations: Sequence[Sequence[Message]], *, max_workers: int = 4, **params: Any
    ) -> list[ChatReply | ChatError]:
        """Many independent calls in parallel threads; a failure is returned in its slot, not raised."""

        def one(msgs: Sequence[Message]) -> ChatReply | ChatError:
            try:
                return self.complete(msgs, **params)
            except ChatError as exc:
                return exc

        if max_workers <= 1 or len(conversations) <= 1:
            return [one(c) for c in conversations]
        with ThreadPoolExecutor(max_workers=max_workers) as pool:
            return list(pool.map(one, conversations))


def _short(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).strip().replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _reply_from_completion(completion: Any) -> ChatReply:
    # Servers that answer 200 with a non-JSON body make the client hand back a bare string.
    if isinstance(completion, (str, bytes)) or not hasattr(completion, "choices"):
        raise ChatError(f"malformed reply body: {str(completion)[:200]!r}")
    raw = completion.model_dump() if hasattr(completion, "model_dump") else {}
    if not completion.choices:
        raise ChatError("reply has no choices")
    choice = completion.choices[0]
    message = getattr(choice, "message", None)
    if message is None:
        raise ChatError("reply choice has no message")
    refusal = getattr(message, "refusal", None)
    if refusal:
        raise ChatError(f"model refused: {_short(Exception(refusal))}")
    if choice.finish_reason == "content_filter":
        raise ChatError("reply blocked by the server's content filter")
    text = message.content
    if not isinstance(text, str) or not text.strip():
        raise ChatError("empty reply")
    usage = getattr(completion, "usage", None)
    return ChatReply(
        text=text,
        usage_prompt_tokens=getattr(usage, "prompt_tokens", None) if usage else None,
        usage_completion_tokens=getattr(usage, "completion_tokens", None) if usage else None,
        raw=raw,
        finish_reason=choice.finish_reason,
    )


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)


def parse_json_object(text: str) -> dict[str, Any]:
    """Find the JSON object a judge was asked to return, tolerating prose and code fences around it.

    Raises ChatError with the reason when there is none; never guesses values.
    """
    if not isinstance(text, str) or not text.strip():
        raise ChatError("empty reply, expected a JSON object")
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for chunk in candidates:
        start = chunk.find("{")
        while start != -1:
            try:
                obj, _ = decoder.raw_decode(chunk, start)
            except json.JSONDecodeError:
                start = chunk.find("{", start + 1)
                continue
            if isinstance(obj, dict):
                return obj
            start = chunk.find("{", start + 1)
    raise ChatError(f"no JSON object in reply: {text[:120]!r}")
