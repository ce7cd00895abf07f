"""A local OpenAI-compatible HTTP server for tests: real sockets, scripted replies, no network.

    from tests.fakes.openai_server import fake_openai_server, Status, Slow, Malformed

    with fake_openai_server(chat=["first reply", Status(429), "after retry"]) as base_url:
        ChatBackend(base_url, "judge").complete([...])
        base_url.requests   # every request received: {"path", "json", "headers" (lower-case keys)}

`chat` is a list (consumed in order; the last item repeats once the list is used up) or a
callable `fn(request_json) -> reply`. A reply is:
  - a str: a normal completion whose message content is that text;
  - a dict: {"content", "finish_reason"?, "refusal"?, "usage"?, "logprobs"?} for finer control;
  - Status(code, body=None, retry_after_ms=1): an HTTP error (429, 500, ...);
  - Slow(seconds, reply): wait, then answer (exceeds a client timeout);
  - Malformed(text): status 200 with a body that is not valid JSON;
  - Raw(status, body, content_type): anything else, verbatim.
`embeddings` is a callable `fn(list[str]) -> list[list[float]]` (or a reply object as above);
by default each text gets a deterministic 8-dim vector derived from its hash.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator


@dataclass
class Status:
    code: int
    body: Any = None
    retry_after_ms: int | None = 1  # keeps the client's back-off short in tests


@dataclass
class Slow:
    seconds: float
    reply: Any = "slow reply"


@dataclass
class Malformed:
    text: str = '{"id": "x", "choices": [ this is not json'


@dataclass
class Raw:
    status: int
    body: str
    content_type: str = "application/json"


class FakeServerURL(str):
    """The server's base URL (".../v1"), carrying what the server saw."""

    requests: list[dict[str, Any]]
    server: "_Server"

    def chat_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"].endswith("/chat/completions")]


def default_embedding(text: str, dim: int = 8) -> list[float]:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return [(b - 127.5) / 127.5 for b in digest[:dim]]


class _Script:
    def __init__(self, spec: Any):
        self._spec = spec
        self._lock = threading.Lock()
        self._i = 0

    def next(self, payload: Any) -> Any:
        if callable(self._spec) and not isinstance(self._spec, (Status, Slow, Malformed, Raw)):
            return self._spec(payload)
        if isinstance(self._spec, list):
            with self._lock:
                if not self._spec:
                    return Status(500, {"error": {"message": "fake server: no scripted reply"}}, None)
                item = self._spec[min(self._i, len(self._spec) - 1)]
                self._i += 1
                return item
        return self._spec


def _completion_body(reply: Any, request: dict[str, Any]) -> dict[str, Any]:
    if isinstance(reply, str):
        reply = {"content": reply}
    content = reply.get("content")
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if reply.get("refusal"):
        message["refusal"] = reply["refusal"]
    choice: dict[str, Any] = {
        "index": 0,
        "message": message,
        "finish_reason": reply.get("finish_reason", "stop"),
    }
    if "logprobs" in reply:
        choice["logprobs"] = reply["logprobs"]
    prompt_chars = sum(len(str(m.get("content", ""))) for m in request.get("messages", []))
    usage = reply.get(
        "usage",
        {
            "prompt_tokens": prompt_chars,
            "completion_tokens": len(content or ""),
            "total_tokens": prompt_chars + len(content or ""),
        },
    )
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", "fake"),
        "choices": reply.get("choices", [choice]),
        "usage": usage,
    }
    return body


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, chat: Any, embeddings: Any):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.chat_script = _Script(chat if chat is not None else ["ok"])
        self.embeddings_script = _Script(embeddings) if embeddings is not None else None
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body: str, content_type: str = "application/json", headers: dict | None = None):
        data = body.encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout); nothing to do

    def _answer(self, reply: Any, make_body: Callable[[Any], dict]) -> None:
        while isinstance(reply, Slow):
            time.sleep(reply.seconds)
            reply = reply.reply
        if isinstance(reply, Status):
            body = reply.body if reply.body is not None else {
                "error": {"message": f"fake error {reply.code}", "type": "fake", "code": reply.code}
            }
            headers = {"retry-after-ms": str(reply.retry_after_ms)} if reply.retry_after_ms is not None else {}
            self._send(reply.code, body if isinstance(body, str) else json.dumps(body), headers=headers)
        elif isinstance(reply, Malformed):
            self._send(200, reply.text)
        elif isinstance(reply, Raw):
            self._send(reply.status, reply.body, reply.content_type)
        else:
            self._send(200, json.dumps(make_body(reply), ensure_ascii=False))

    def do_GET(self) -> None:
        self._record(None)
        if self.path.rstrip("/").endswith("/models"):
            self._send(200, json.dumps({"object": "list", "data": [{"id": "fake", "object": "model"}]}))
        else:
            self._send(404, json.dumps({"error": {"message": "not found"}}))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            payload = json.loads(raw.decode("utf-8")) if raw else {}
        except ValueError:
            payload = None
        self._record(payload)
        if payload is None:
            self._send(400, json.dumps({"error": {"message": "request body is not JSON"}}))
            return
        path = self.path.rstrip("/")
        if path.endswith("/chat/completions"):
            reply = self.server.chat_script.next(payload)
            self._answer(reply, lambda r: _completion_body(r, payload))
        elif path.endswith("/embeddings"):
            inputs = payload.get("input", [])
            if isinstance(inputs, str):
                inputs = [inputs]
            if self.server.embeddings_script is None:
                reply: Any = [default_embedding(t) for t in inputs]
            else:
                reply = self.server.embeddings_script.next(inputs)

            def body(vectors: Any) -> dict:
                return {
                    "object": "list",
                    "data": [
                        {"object": "embedding", "index": i, "embedding": list(map(float, v))}
                        for i, v in enumerate(vectors)
                    ],
                    "model": payload.get("model", "fake"),
                    "usage": {"prompt_tokens": 0, "total_tokens": 0},
                }

            self._answer(reply, body)
        else:
            self._send(404, json.dumps({"error": {"message": f"no route {self.path}"}}))

    def _record(self, payload: Any) -> None:
        with self.server.lock:
            self.server.requests.append(
                {"path": self.path, "json": payload, "headers": {k.lower(): v for k, v in self.headers.items()}, "time": time.time()}
            )


@contextmanager
def fake_openai_server(chat: Any = None, embeddings: Any = None) -> Iterator[FakeServerURL]:
    """Run the fake server in a daemon thread on a free port; yield its base URL (ending in /v1)."""
    server = _Server(chat, embeddings)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    url = FakeServerURL(f"http://{host}:{port}/v1")
    url.requests = server.requests
    url.server = server
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
