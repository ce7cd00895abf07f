"""Issue 18.2: an empty base-model list says how to register a model."""
import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_empty_model_list_hints_how_to_register(client_for):
    page = client_for("admin").get(reverse("training:run_new"))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="no-models"' in html and reverse("training:models") + "#register" in html
