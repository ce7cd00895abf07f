"""Issue 18 point 7: helper datasets (review rounds, clinician checks) are listed under their owner,
hidden from the main list and API list unless asked for."""
import pytest
from django.urls import reverse

from medstudio.datasets.helpers import dataset_mark_helper
from medstudio.datasets.models import Dataset

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner_and_helper(make_dataset):
    owner = make_dataset("prompts", "qa", [{"id": "q1", "question": "头痛怎么办？", "answer": "多休息。", "lang": "zh"}])
    helper = make_dataset("prompts · review 1", "qa", [{"id": "q1", "question": "头痛怎么办？", "answer": "多休息。", "lang": "zh"}])
    other = make_dataset("orphan review", "qa", [{"id": "q2", "question": "发烧？", "answer": "量体温。", "lang": "zh"}])
    dataset_mark_helper(dataset=helper, role="preference_review", owner=owner)
    dataset_mark_helper(dataset=other, role="judge_review", owner=None)
    return owner, helper, other


def _rows(page: str) -> str:
    return page.split('id="datasets"')[1].split("</table>")[0]


def test_list_hides_helpers_and_counts_them_under_the_owner(owner_and_helper, client_for):
    owner, helper, other = owner_and_helper
    c = client_for("clinician")
    page = c.get(reverse("datasets:list")).content.decode()
    rows = _rows(page)
    assert "prompts · review 1" not in rows and "orphan review" not in rows and ">prompts<" in rows
    owner_row = rows.split(f'data-dataset="{owner.pk}"')[1].split("</tr>")[0]
    assert "1 helper" in owner_row and reverse("datasets:detail", args=[owner.pk]) + "#helpers" in owner_row
    assert "2 helper datasets" in page.split('id="n-hidden"')[1]
    # the filter reveals them, each saying what it is and whose it is
    rows = _rows(c.get(reverse("datasets:list") + "?helpers=1").content.decode())
    helper_row = rows.split(f'data-dataset="{helper.pk}"')[1].split("</tr>")[0]
    assert "helper-row" in rows and "preference review round" in helper_row and "helper of prompts" in helper_row
    assert "orphan review" in rows
    # the owner's page lists its helpers; a helper's page points back
    page = c.get(reverse("datasets:detail", args=[owner.pk])).content.decode()
    assert "prompts · review 1" in page.split('id="helpers"')[1] and "orphan review" not in page
    page = c.get(reverse("datasets:detail", args=[helper.pk])).content.decode()
    assert "Listed under prompts" in page.split('id="helper-of"')[1]


def test_api_list_leaves_helpers_out_unless_asked(owner_and_helper, client_for):
    owner, helper, other = owner_and_helper
    c = client_for("clinician")

    def names(url):
        r = c.get(url)
        assert r.status_code == 200, r.content
        body = r.json()
        rows = body if isinstance(body, list) else body.get("results", body.get("data", body.get("items")))
        return {d["name"] for d in rows}

    assert names("/api/datasets/") == {"prompts"}
    assert names("/api/datasets/?helpers=1") == {"prompts", "prompts · review 1", "orphan review"}
    assert names(f"/api/datasets/?helper_of={owner.pk}") == {"prompts · review 1"}
    one = c.get(f"/api/datasets/{helper.pk}/").json()
    assert one["helper_of"] == owner.pk and one["helper_role"] == "preference_review"


def test_review_round_dataset_is_a_helper_of_the_prompts_dataset(make_dataset, curator):
    from preferences import services
    from preferences.models import PreferencePair as PP

    src = make_dataset("dialogues", "qa", [{"id": f"q{i}", "question": f"头痛{i}怎么办？", "answer": "休息。", "lang": "zh"}
                                           for i in range(3)])
    s = services.preference_set_create(user=curator, name="rev")
    for i, rec in enumerate(src.records.order_by("id")):
        PP.objects.create(pref_set=s, origin="subjective", item_key=i, record=rec,
                          prompt_turns=[{"role": "user", "content": rec.text}], chosen="好", rejected="差")
    review = services.review_send(user=curator, pref_set=s, seed=1)
    ds = Dataset.objects.get(pk=review.dataset_id)
    assert ds.helper_role == "preference_review" and ds.helper_of_id == src.pk
    # a review round of pairs without source records is still hidden, with no owner
    s2 = services.preference_set_create(user=curator, name="rev2")
    PP.objects.create(pref_set=s2, origin="subjective", item_key=0, prompt_turns=[{"role": "user", "content": "咳嗽？"}],
                      chosen="好", rejected="差")
    ds2 = Dataset.objects.get(pk=services.review_send(user=curator, pref_set=s2, seed=1).dataset_id)
    assert ds2.helper_role == "preference_review" and ds2.helper_of_id is None


def test_backfill_marks_review_rounds_made_before_the_helper_link(make_dataset, curator):
    import importlib

    from django.apps import apps

    from preferences import services
    from preferences.models import PreferencePair as PP

    src = make_dataset("old-prompts", "qa", [{"id": "q1", "question": "头痛怎么办？", "answer": "休息。", "lang": "zh"}])
    s = services.preference_set_create(user=curator, name="old-rev")
    PP.objects.create(pref_set=s, origin="subjective", item_key=0, record=src.records.first(),
                      prompt_turns=[{"role": "user", "content": "头痛怎么办？"}], chosen="好", rejected="差")
    review = services.review_send(user=curator, pref_set=s, seed=1)
    Dataset.objects.filter(pk=review.dataset_id).update(helper_role="", helper_of=None)  # as before the migration
    importlib.import_module("preferences.migrations.0003_review_datasets_are_helpers").forwards(apps, None)
    ds = Dataset.objects.get(pk=review.dataset_id)
    assert ds.helper_role == "preference_review" and ds.helper_of_id == src.pk


def test_pickers_leave_helpers_out(owner_and_helper):
    """Where a curator picks data to train on, evaluate or build pairs from, helpers are not offered."""
    from medstudio.handoffs.sources import choices_for
    from preferences.forms import BuildForm
    from training.evaluation.forms import EvalRunForm

    owner, helper, other = owner_and_helper
    offered = {o["name"] for o in choices_for({"qa"}) if o["type"] == "dataset"}
    assert "prompts" in offered and not offered & {helper.name, other.name}
    for qs in (EvalRunForm(initial={"kind": "consultation"}).fields["dataset"].queryset,
               BuildForm(initial={"builder": "subjective"}).fields["dataset"].queryset):
        names = set(qs.values_list("name", flat=True))
        assert "prompts" in names and not names & {helper.name, other.name}
