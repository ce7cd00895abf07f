"""The OpenAPI schema class: every operation documents the errors the API can answer.

drf-spectacular documents what a view declares (200, and 400/409 where a view says so). The API
also answers, for any operation: 401 (no or bad token), 403 (role too low), 404 (an unknown id in
the path, or a stale pagination cursor) and 400 (a bad body or query parameter). Declaring them
here, once, keeps the schema complete (schemathesis checks every status code against it:
tests/fuzz/run_schemathesis.py). A view's own declaration of a code wins.
"""
from __future__ import annotations

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema

ERROR = {
    "type": "object",
    "description": "`{\"detail\": message}`, or `{field: [messages]}` for a validation error.",
    "additionalProperties": True,
}
DEFAULT_ERRORS = {
    "400": "Bad request: invalid body or query parameters.",
    "401": "Not authenticated (send `Authorization: Token <key>`).",
    "403": "Permission denied (role too low).",
    "404": "Not found: unknown id, or an invalid pagination cursor.",
}


class AutoSchema(SpectacularAutoSchema):
    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for code, description in DEFAULT_ERRORS.items():
            responses.setdefault(code, {
                "content": {"application/json": {"schema": ERROR}},
                "description": description,
            })
        return responses
