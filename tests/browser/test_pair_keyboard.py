"""Keyboard-only labelling of a pair (issue 18.9): A / B pick the better answer in the highlighted row,
Enter submits, each submit swaps in the next pair without a page load; the stored winner is in
record order (chosen / rejected) whichever side the pair was shown on."""
from __future__ import annotations

import pytest

from medstudio.annotation.models import Assignment, Label
from tests.annotation.helpers import shared_rows
from tests.browser_steps import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_clinician_labels_pairs_with_the_keyboard_alone(live_server, page, django_user_model, make_dataset):
    from medstudio.annotation import services

    curator = django_user_model.objects.create_user(username="cur-p", password="pw-cur-123", role="curator")
    django_user_model.objects.create_user(username="dr-pair", password="pw-pair-123", role="clinician")
    ds = make_dataset("hh-keys", "pair", shared_rows("hh_rlhf_harmless_pairs.jsonl", 4))
    q = services.question_create(user=curator, name="pref-keys", kind="preference")
    queue = services.queue_create(user=curator, name="pairs-keys", dataset=ds, question=q, annotators_per_item=1, seed=3)
    log_in(page, live_server.url, "dr-pair", "pw-pair-123")
    page.goto(f"{live_server.url}/annotate/q/{queue.pk}/")
    page.evaluate("window.marker = 'same page'")
    hints = page.locator("#key-hints").inner_text()
    assert "A B T" in hints and "0" not in hints  # only the keys that work on a pair
    picks = []
    for i, key in enumerate(("a", "b", "a"), start=1):
        record = int(page.locator("#item").get_attribute("data-record"))
        page.keyboard.press(key)  # the winner row is highlighted first
        page.keyboard.press("Enter")
        page.wait_for_function(f"document.querySelector('#mine-done').textContent.trim() === '{i}'")
        picks.append((record, key))
    assert page.evaluate("window.marker") == "same page"  # every submit was an HTMX swap
    for record, key in picks:
        lab = Label.objects.get(queue=queue, record_id=record)
        swapped = Assignment.objects.get(pk=lab.assignment_id).swapped
        shown_first = "rejected" if swapped else "chosen"
        other = "chosen" if swapped else "rejected"
        assert lab.values["winner"] == (shown_first if key == "a" else other)
