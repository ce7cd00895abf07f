"""The lm-eval form (issue 18.4): the backend swaps only its target fields, a registered model is
chosen by name, and a refusal keeps what was typed."""
import pytest
from django.urls import reverse

from tests.evaluation.test_harness import task_dir  # noqa: F401
from tests.fakes.fixtures import tiny_llama_path  # noqa: F401

pytestmark = pytest.mark.django_db


def test_backend_swap_returns_only_the_target_fields_and_models_by_name(task_dir, client_for, settings, tiny_llama_path):  # noqa: F811
    from training import services as train

    settings.MEDSTUDIO_EVAL_DATASETS_DIR = str(task_dir)
    train.model_ref_create(actor=None, name="tiny-registered", path=tiny_llama_path)
    admin = client_for("admin")
    home = admin.get(reverse("evaluation:home")).content.decode()
    form = home[home.index('id="harness-form"'):]
    assert 'name="model_ref"' in form and "tiny-registered" in form and 'name="base_url"' not in form
    swap = admin.get(reverse("evaluation:harness_new"), {"backend": "openai"}, HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in swap and 'id="harness-backend-fields"' in swap
    fields = swap[swap.index('id="harness-backend-fields"'):swap.index("</fieldset>")]
    assert 'name="base_url"' in fields and 'name="remote_model"' in fields and 'name="path"' not in fields
    assert admin.get(reverse("evaluation:harness_new")).status_code == 302  # no HTMX: back to the page
    r = admin.post(reverse("evaluation:harness_new"), {"tasks": ["cmmlu_anatomy"], "backend": "transformers",
                                                       "model_ref": "", "path": "", "num_fewshot": "2"})
    assert r.status_code == 400 and 'value="2"' in r.content.decode() and "<details open>" in r.content.decode()
