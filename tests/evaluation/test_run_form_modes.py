"""Issue 18.4 / 18.2: the evaluation launch form shows only the chosen kind's and backend's fields
(HTMX swap), lists only datasets that fit the kind, keeps what was typed after an error, and
checks the model and dataset before a run exists."""
import pytest
from django.urls import reverse

from medstudio.jobs.models import Job
from tests.fakes.fixtures import tiny_llama_path  # noqa: F401
from training.evaluation.models import EvalRun

pytestmark = pytest.mark.django_db

MCQ = [{"id": "m1", "question": "Which organ pumps blood?", "options": {"A": "Heart", "B": "Liver"}, "answer": "A"}]
QA = [{"id": "q1", "question": "头痛三天怎么办？", "answer": "建议休息，必要时就医。"}]


def test_kind_and_backend_swap_only_their_fields(make_dataset, client_for):
    mcq = make_dataset("bench", "mcq", MCQ)
    qa = make_dataset("consults", "qa", QA)
    c = client_for("admin")
    page = c.get(reverse("evaluation:run_new")).content.decode()  # MCQ, transformers
    assert 'name="seeds"' in page and 'name="path"' in page and 'name="model_ref"' in page
    assert 'name="judge_model"' not in page and 'name="rouge_threshold"' not in page and 'name="base_url"' not in page
    assert f'<option value="{mcq.pk}">bench (mcq, 1)</option>' in page and f'value="{qa.pk}"' not in page
    part = c.get(reverse("evaluation:run_new"), {"kind": "memorization", "backend": "openai", "model_name": "typed",
                                                 "temperature": "0.3"}, HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in part and 'id="eval-form"' in part
    assert 'name="rouge_threshold"' in part and 'value="0.8"' in part and 'name="seeds"' not in part
    assert 'name="base_url"' in part and 'name="remote_model"' in part and 'name="path"' not in part
    assert 'value="typed"' in part and 'value="0.3"' in part  # what was typed survives the swap
    assert f'value="{qa.pk}"' in part and f'value="{mcq.pk}"' in part  # memorisation reads any kind
    consult = c.get(reverse("evaluation:run_new"), {"kind": "consultation"}, HTTP_HX_REQUEST="true").content.decode()
    assert 'name="judge_model"' in consult and f'value="{mcq.pk}"' not in consult


def test_errors_keep_typed_values_and_out_of_range_is_a_field_error(make_dataset, client_for):
    ds = make_dataset("bench", "mcq", MCQ)
    resp = client_for("admin").post(reverse("evaluation:run_new"), {
        "kind": "mcq", "dataset": ds.pk, "backend": "transformers", "path": "/typed/path", "temperature": "5",
        "seeds": "0,x", "model_name": "mine"})
    html = resp.content.decode()
    assert resp.status_code == 400
    assert "less than or equal to 2" in html and "Seeds are integers" in html
    assert 'value="/typed/path"' in html and 'value="mine"' in html and 'value="0,x"' in html
    assert not EvalRun.objects.exists()


def test_missing_model_and_empty_dataset_are_checked_before_launch(make_dataset, client_for, tiny_llama_path):  # noqa: F811
    ds = make_dataset("bench", "mcq", MCQ)
    c = client_for("admin")
    resp = c.post(reverse("evaluation:run_new"), {"kind": "mcq", "dataset": ds.pk, "backend": "vllm", "path": ""})
    assert resp.status_code == 400 and "needs a local model path" in resp.content.decode()
    resp = c.post(reverse("evaluation:run_new"), {"kind": "mcq", "dataset": ds.pk, "backend": "openai"})
    assert resp.status_code == 400 and "needs a base URL and a model name" in resp.content.decode()
    from medstudio.datasets.models import Dataset

    Dataset.objects.filter(pk=ds.pk).update(n_records=0)
    resp = c.post(reverse("evaluation:run_new"), {"kind": "mcq", "dataset": ds.pk, "backend": "transformers",
                                                  "path": tiny_llama_path})
    assert resp.status_code == 400 and "has no records" in resp.content.decode()
    assert not EvalRun.objects.exists() and not Job.objects.filter(kind__startswith="evaluation.").exists()
