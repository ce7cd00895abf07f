"""A mode change swaps only the mode's own fields (issue 18.4): what a user types into a common field
while that swap is in flight keeps its value. The swap's request is held until the field is typed,
so the race the old whole-form swap lost happens on every run, not by chance."""
from __future__ import annotations

import pytest

from tests.browser_steps import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _hold_swaps(page, pattern: str) -> list:
    """Routes matching HTMX GETs into a list instead of sending them; the test continues them."""
    held: list = []
    page.route(pattern, lambda route: held.append(route) if route.request.headers.get("hx-request") else route.continue_())
    return held


def _release(page, held: list) -> None:
    page.wait_for_function("document.querySelectorAll('.htmx-request').length > 0")
    page.evaluate("window.__settled = false; document.body.addEventListener('htmx:afterSettle', "
                  "() => { window.__settled = true; }, {once: true})")
    held.pop(0).continue_()
    page.wait_for_function("window.__settled === true")


def test_evaluation_common_field_typed_during_kind_swap_is_kept(live_server, page, django_user_model, make_dataset):
    django_user_model.objects.create_user(username="boss", password="pw-boss-123", role="admin")
    make_dataset("mcq-one", "mcq", [{"id": "q1", "question": "1+1?", "choices": {"A": "2", "B": "3"}, "answer": "A"}])
    make_dataset("dialogue-one", "dialogue", [{"id": "d1", "messages": [{"role": "user", "content": "hi"},
                                                                          {"role": "assistant", "content": "hello"}]}])
    log_in(page, live_server.url, "boss", "pw-boss-123")
    page.goto(f"{live_server.url}/evaluation/new/")
    held = _hold_swaps(page, "**/evaluation/new/?*")
    page.select_option("#id_kind", "consultation")
    page.wait_for_function("document.querySelectorAll('.htmx-request').length > 0")
    page.fill("#id_model_name", "typed-while-swapping")  # a common field, typed before the swap lands
    page.fill("#id_limit", "7")
    _release(page, held)
    assert page.input_value("#id_model_name") == "typed-while-swapping"
    assert page.input_value("#id_limit") == "7"
    # the kind's own part did change: its dataset list now holds dialogues only, and the judge fields are there
    options = page.locator("#id_dataset option").all_inner_texts()
    assert any("dialogue-one" in o for o in options) and not any("mcq-one" in o for o in options)
    assert page.locator("#id_judge_model").count() == 1

    page.select_option("#id_backend", "openai")
    page.fill("#id_max_new_tokens", "64")
    _release(page, held)
    assert page.input_value("#id_max_new_tokens") == "64"
    assert page.input_value("#id_model_name") == "typed-while-swapping"
    assert page.locator("#id_base_url").count() == 1 and page.locator("#id_path").count() == 0


def test_queue_name_typed_during_dataset_swap_is_kept(live_server, page, django_user_model, make_dataset):
    django_user_model.objects.create_user(username="boss", password="pw-boss-123", role="admin")
    a = make_dataset("docs-a", "document", [{"id": "a1", "text": "alpha"}])
    b = make_dataset("docs-b", "document", [{"id": "b1", "text": "beta"}])
    log_in(page, live_server.url, "boss", "pw-boss-123")
    page.goto(f"{live_server.url}/annotate/queues/new/")
    held = _hold_swaps(page, "**/annotate/queues/new/?*")
    other = b if page.input_value("#id_dataset") == str(a.pk) else a
    page.select_option("#id_dataset", str(other.pk))
    page.wait_for_function("document.querySelectorAll('.htmx-request').length > 0")
    page.fill("#id_name", "round-one")
    _release(page, held)
    page.select_option("#id_method", "random")
    page.fill("#id_annotators_per_item", "3")
    _release(page, held)
    assert page.input_value("#id_name") == "round-one"
    assert page.input_value("#id_annotators_per_item") == "3"
    assert page.input_value("#id_dataset") == str(other.pk)
    assert page.locator("#id_seed").count() == 1  # the random method's own field came in
    page.screenshot(path="/tmp/shots/queue_new_swap.png", full_page=True)


def test_training_name_typed_during_stage_swap_is_kept(live_server, page, django_user_model, make_dataset):
    from tests.annotation.helpers import shared_rows

    django_user_model.objects.create_user(username="boss", password="pw-boss-123", role="admin")
    make_dataset("docs-cpt", "document", [{"id": "a1", "text": "alpha"}])
    make_dataset("pairs-dpo", "pair", shared_rows("hh_rlhf_harmless_pairs.jsonl", 2))
    log_in(page, live_server.url, "boss", "pw-boss-123")
    page.goto(f"{live_server.url}/training/new/")
    assert page.locator("#dpo-fields").count() == 0
    held = _hold_swaps(page, "**/training/new/?*")
    page.select_option("#id_stage", "dpo")
    page.wait_for_function("document.querySelectorAll('.htmx-request').length > 0")
    page.fill("#id_name", "dpo-typed")
    page.fill("#id_hosts", "gpu1,gpu2")
    _release(page, held)
    assert page.input_value("#id_name") == "dpo-typed" and page.input_value("#id_hosts") == "gpu1,gpu2"
    assert page.locator("#dpo-fields").count() == 1 and page.locator("#id_beta").count() == 1  # the stage's own fields
    options = " ".join(page.locator("#id_data option").all_inner_texts())
    assert "pairs-dpo" in options and "docs-cpt" not in options  # the data list follows the stage (hx-select-oob)
