"""POST /api/token/: a token for username + password (the existing one if the user has one), audited."""
from __future__ import annotations

from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.response import Response

from .services import api_token_rotate


class AuditedObtainAuthToken(ObtainAuthToken):
    def post(self, request, *args, **kwargs):
        serializer = self.serializer_class(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        key, _ = api_token_rotate(user=serializer.validated_data["user"], reuse=True)
        return Response({"token": key})
