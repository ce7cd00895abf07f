"""In headless Chromium (issue 18.5): a dialogue is rated per turn with the keyboard, the rated turn
highlighted and its rows beside it; the next item is prefetched and shown on submit; at the end the
clinician gets a link to their next queue. Screenshots in /tmp/shots."""
from pathlib import Path

import pytest

from medstudio.annotation import services
from medstudio.annotation.models import Label

from .helpers import rating_queue, shared_rows

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SHOTS = Path("/tmp/shots")


def _login(page, base, username, password):
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")


def test_per_turn_keyboard_labelling_prefetch_and_next_queue(live_server, page, django_user_model, make_dataset, curator):
    django_user_model.objects.create_user(username="dr-turn", password="pw-turn-123", role="clinician")
    services.starter_questions_create(user=curator)
    from medstudio.annotation.models import Question
    q = Question.objects.get(kind="turn_rating")
    rows = [r for r in shared_rows("cmtmedqa_multiturn.jsonl", 972) if sum(t["role"] == "assistant" for t in r["turns"]) == 2][:2]
    ds = make_dataset("dlg-b", "dialogue", rows)
    queue = services.queue_create(user=curator, name="turns b", dataset=ds, question=q, annotators_per_item=1)
    nxt = rating_queue(make_dataset, curator, n_docs=1, per_item=1, name="after")
    page.set_viewport_size({"width": 1280, "height": 800})
    _login(page, live_server.url, "dr-turn", "pw-turn-123")
    page.goto(f"{live_server.url}/annotate/q/{queue.pk}/")
    assert page.locator("#instructions strong").count() >= 1  # markdown rendered
    hints = page.locator("#key-hints").inner_text()
    assert "1–5" in hints and "0–9" not in hints
    assert page.locator('#item .msg[data-turn="1"]').get_attribute("class").split().count("turn-active") == 1
    page.wait_for_function("window.medstudioPrefetched && window.medstudioPrefetched() !== null")
    page.evaluate("window.marker = 'same page'")
    for key in "4444":  # turn 1: four aspects
        page.keyboard.press(key)
    assert "turn-active" in page.locator('#item .msg[data-turn="2"]').get_attribute("class")
    assert "turn-active" not in page.locator('#item .msg[data-turn="1"]').get_attribute("class")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "label_turns.png"), full_page=False)
    for key in "3333":
        page.keyboard.press(key)
    first = page.locator("#item").get_attribute("data-record")
    page.keyboard.press("Enter")
    page.wait_for_function(f"document.querySelector('#item') && document.querySelector('#item').dataset.record !== '{first}'")
    page.wait_for_function("document.querySelector('#mine-done').textContent.trim() === '1'")
    assert page.locator("#mine-left").inner_text() == "1"
    for key in "55555555":
        page.keyboard.press(key)
    page.keyboard.press("Enter")
    page.wait_for_selector("#done-card")
    assert page.evaluate("window.marker") == "same page"
    link = page.locator("#next-queue a")
    assert link.get_attribute("href") == f"/annotate/q/{nxt.pk}/"
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.screenshot(path=str(SHOTS / "label_done_next_queue.png"), full_page=False)
    assert Label.objects.filter(queue=queue).count() == 2
    assert Label.objects.filter(queue=queue).first().values["turns"][0]["fluency"] in (4, 5)


def test_import_form_fills_the_name_from_the_file(live_server, page, django_user_model, tmp_path):
    django_user_model.objects.create_user(username="cur-imp", password="pw-imp-123", role="curator")
    f = tmp_path / "cardiology_notes.jsonl"
    f.write_text('{"id": "1", "text": "chest pain"}\n')
    _login(page, live_server.url, "cur-imp", "pw-imp-123")
    page.goto(f"{live_server.url}/datasets/import/")
    page.set_input_files("#id_file", str(f))
    assert page.input_value("#id_dataset") == "cardiology_notes"
    assert page.locator("#id_benchmark").count() == 1
