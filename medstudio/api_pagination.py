from rest_framework.exceptions import ValidationError
from rest_framework.pagination import CursorPagination


class IdCursorPagination(CursorPagination):
    """Keyset pagination by id: stable and fast at any depth."""

    ordering = "id"
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000

    def get_page_size(self, request):
        # DRF silently falls back to the default for page_size=abc; the schema says integer, so a
        # value that is not a positive integer is a 400 (issue 14: schemathesis).
        raw = request.query_params.getlist(self.page_size_query_param)
        if not raw:
            return self.page_size
        if len(raw) > 1:
            raise ValidationError({self.page_size_query_param: "give it once"})
        try:
            value = int(raw[0])
        except ValueError:
            raise ValidationError({self.page_size_query_param: "a positive integer"}) from None
        if value < 1:
            raise ValidationError({self.page_size_query_param: "a positive integer"})
        return min(value, self.max_page_size)
