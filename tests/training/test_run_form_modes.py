"""Issue 18.4: the training launch form shows only the chosen stage's fields (DPO's beta and online
merging appear for DPO only), a stage change (HTMX) keeps what is not stage-specific, and an error
re-renders the form with what was typed."""
import re

import pytest
from django.urls import reverse

from training.models import ModelRef, TrainingRun
from tests.browser_steps import log_in

pytestmark = pytest.mark.django_db


def _form(stage, base, dataset, **over):
    from training.forms import RunForm

    data = dict(RunForm.initial_for(stage))
    data.update(base_model=base.pk, data=f"dataset:{dataset.pk}", **over)
    return {k: ("on" if v is True else v) for k, v in data.items() if v is not False and v is not None}


def test_only_the_stage_fields_appear(client_for):
    admin = client_for("admin")
    sft = admin.get(reverse("training:run_new") + "?stage=sft").content.decode()
    assert 'name="learning_rate"' in sft and 'name="beta"' not in sft and 'name="merging_p"' not in sft
    assert 'id="dpo-fields"' not in sft and 'name="merge_base"' not in sft
    dpo = admin.get(reverse("training:run_new") + "?stage=dpo", HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in dpo and 'id="dpo-fields"' in dpo
    assert 'name="beta" value="0.03"' in dpo and 'name="merging_p"' in dpo and 'name="merge_base"' in dpo


def test_stage_change_keeps_what_is_not_stage_specific(client_for):
    ref = ModelRef.objects.create(name="base-a", path="/models/a")
    part = client_for("admin").get(reverse("training:run_new"), {
        "stage": "sft", "name": "my run", "base_model": ref.pk, "nodes": "2", "gpus_per_node": "4", "hosts": "gpu1,gpu2",
        "learning_rate": "0.5"}, HTTP_HX_REQUEST="true").content.decode()
    assert 'value="my run"' in part and 'name="nodes" value="2"' in part and 'value="gpu1,gpu2"' in part
    assert re.search(rf'<option value="{ref.pk}" selected>', part)
    assert 'name="learning_rate" value="2e-06"' in part  # the new stage's default, not the old stage's value


def test_error_keeps_typed_values_and_a_non_dpo_post_ignores_dpo_fields(client_for, make_dataset):
    ref = ModelRef.objects.create(name="base-a", path="/models/a")
    qa = make_dataset("qa", "qa", [{"id": "q1", "question": "头痛？", "answer": "休息"}])
    data = _form("sft", ref, qa, name="typed", learning_rate="-1", beta="99", merging_enabled="on")
    r = client_for("admin").post(reverse("training:run_new"), data)
    html = r.content.decode()
    assert r.status_code == 200 and "must be in (0, 1)" in html
    assert 'value="typed"' in html and 'name="learning_rate" value="-1"' in html and 'name="beta"' not in html
    assert TrainingRun.objects.count() == 0
    # A value that is not a number is a field error, not a 500.
    r = client_for("admin").post(reverse("training:run_new"), {**data, "warmup_ratio": "lots"})
    assert r.status_code == 200 and "Enter a number" in r.content.decode()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_browser_stage_switch_swaps_the_fields(live_server, page, django_user_model, make_dataset):
    django_user_model.objects.create_user(username="boss", password="pw-boss-123", role="admin")
    ModelRef.objects.create(name="base-a", path="/models/a")
    log_in(page, live_server.url, "boss", "pw-boss-123")
    page.goto(f"{live_server.url}{reverse('training:run_new')}?stage=cpt-stable")
    page.evaluate("window.marker = 'same page'")
    page.fill("input[name=name]", "typed name")
    assert page.locator("#dpo-fields").count() == 0 and page.locator("input[name=beta]").count() == 0
    page.select_option("#id_stage", "dpo")
    page.wait_for_selector("#dpo-fields")
    assert page.locator("input[name=beta]").input_value() == "0.03"
    assert page.locator("input[name=name]").input_value() == "typed name"
    page.select_option("#id_stage", "sft")
    page.wait_for_function("document.querySelector('#dpo-fields') === null")
    assert page.locator("input[name=beta]").count() == 0
    assert page.locator("input[name=learning_rate]").input_value() == "2e-06"
    assert page.evaluate("window.marker") == "same page"  # swapped in place, no reload

    # The same pattern on the evaluation form (kind) and the dataset page's scorer form (scorer).
    page.goto(f"{live_server.url}{reverse('evaluation:run_new')}")
    assert page.locator("input[name=rouge_threshold]").count() == 0
    page.select_option("#id_kind", "memorization")
    page.wait_for_selector("input[name=rouge_threshold]")
    assert page.locator("input[name=seeds]").count() == 0
    ds = make_dataset("notes", "document", [{"id": "d1", "text": "Hypertension is treated with lifestyle changes."}])
    page.goto(f"{live_server.url}{reverse('datasets:detail', args=[ds.pk])}")
    assert page.locator("input[name=p_min_tokens]").input_value() == "50"
    page.select_option("#scorer-form select[name=scorer]", "minhash")
    page.wait_for_selector("input[name=p_threshold]")
    assert page.locator("input[name=p_min_tokens]").count() == 0
