"""A clinician logs in, opens a dialogue dataset and reads a record's turns, in headless Chromium."""
import json

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_clinician_opens_a_dialogue_and_sees_its_turns(live_server, page, django_user_model, make_dataset, shared_data):
    django_user_model.objects.create_user(username="dr-wang", password="pw-wang-123", role="clinician")
    rows = [json.loads(line) for line in open(shared_data / "cmtmedqa_multiturn.jsonl", encoding="utf-8")][:30]
    rows[0]["turns"][0]["content"] = "<script>window.pwned=1</script>" + rows[0]["turns"][0]["content"]
    ds = make_dataset("cmtmedqa", "dialogue", rows)

    page.goto(f"{live_server.url}/")
    assert "/accounts/login/" in page.url
    page.fill("#id_username", "dr-wang")
    page.fill("#id_password", "pw-wang-123")
    page.click("button[type=submit]")
    page.goto(f"{live_server.url}/datasets/")
    page.click(f"text={ds.name}")
    assert page.locator("#n-records").inner_text() == "30"
    page.click("text=Browse records")
    page.click(f"text={rows[0]['id']}")
    turns = page.locator(".chat .msg")
    assert turns.count() == len(rows[0]["turns"])
    for i, turn in enumerate(rows[0]["turns"][1:], start=1):
        assert turns.nth(i).locator(".content").inner_text().split() == turn["content"].split()
    first = turns.nth(0).locator(".content").inner_text()
    assert "<script>" in first  # shown as text, never run
    assert page.evaluate("window.pwned === undefined")
    # a clinician cannot reach curator pages
    resp = page.goto(f"{live_server.url}/datasets/import/")
    assert resp.status == 403


def test_record_search_updates_without_reload(live_server, page, django_user_model, make_dataset):
    user = django_user_model.objects.create_user(username="cur", password="pw-cur-123", role="curator")
    ds = make_dataset("docs", "document", [{"id": f"r{i}", "text": ("头痛" if i % 2 else "fever") + f" case {i}"}
                                           for i in range(20)])
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", "pw-cur-123")
    page.click("button[type=submit]")
    page.goto(f"{live_server.url}/datasets/{ds.pk}/records/")
    page.evaluate("window.marker = 'same page'")
    page.fill("input[name=q]", "fever case 1")
    page.wait_for_function("document.querySelectorAll('#results tbody tr').length === 5")
    assert page.evaluate("window.marker") == "same page"  # HTMX swapped the results, no reload
