"""In headless Chromium: a clinician labels five items with the keyboard alone and sees progress
move without a page load; a second clinician gets other items and never sees the first's labels."""
import pytest

from medstudio.annotation.models import Label

from .helpers import rating_queue

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _login(page, base, username, password):
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")


def test_keyboard_only_labelling_and_a_second_clinician(live_server, page, django_user_model, make_dataset, curator):
    django_user_model.objects.create_user(username="dr-one", password="pw-one-123", role="clinician")
    django_user_model.objects.create_user(username="dr-two", password="pw-two-123", role="clinician")
    queue = rating_queue(make_dataset, curator, n_docs=8, per_item=1, name="zhdocs")
    url = f"{live_server.url}/annotate/q/{queue.pk}/"

    _login(page, live_server.url, "dr-one", "pw-one-123")
    page.goto(url)
    page.evaluate("window.marker = 'same page'")
    seen = []
    for i in range(1, 6):
        record = page.locator("#item").get_attribute("data-record")
        seen.append(int(record))
        page.keyboard.press(str(i % 6))  # the overall score row is highlighted first
        page.keyboard.press("3")  # the next row (grammar) is highlighted after a pick
        page.keyboard.press("Enter")
        page.wait_for_function(f"document.querySelector('#mine-done').textContent.trim() === '{i}'")
        assert page.locator("#queue-progress").get_attribute("value") == str(i)
        assert page.locator("#item").get_attribute("data-record") != record
    assert page.evaluate("window.marker") == "same page"  # every submit was an HTMX swap
    labels = {lab.record_id: lab.values for lab in Label.objects.filter(queue=queue)}
    assert sorted(labels) == sorted(seen)
    assert [labels[r]["score"] for r in seen] == [1, 2, 3, 4, 5]
    assert all(labels[r]["aspects"] == {"grammar": 3} for r in seen)
    assert all(lab.duration_ms and lab.duration_ms > 0 for lab in Label.objects.filter(queue=queue))

    # U reopens the last label with its answer; S skips
    page.keyboard.press("u")
    page.wait_for_selector("text=changing an answer")
    assert int(page.locator("#item").get_attribute("data-record")) == seen[-1]
    assert page.locator("input[name=score][value='5']").is_checked()
    page.keyboard.press("Enter")
    page.wait_for_selector("text=Saved.")
    before = page.locator("#item").get_attribute("data-record")
    page.keyboard.press("s")
    page.wait_for_selector("text=Skipped.")
    assert page.locator("#item").get_attribute("data-record") != before
    held = int(page.locator("#item").get_attribute("data-record"))

    other = page.context.browser.new_context().new_page()
    try:
        _login(other, live_server.url, "dr-two", "pw-two-123")
        other.goto(url)
        record2 = int(other.locator("#item").get_attribute("data-record"))
        assert record2 not in seen and record2 != held  # other items
        assert other.locator("#mine-done").inner_text() == "0"
        assert other.locator("#answer-form input:checked").count() == 0  # nothing of dr-one's shown
        other.keyboard.press("2")
        other.keyboard.press("Enter")
        other.wait_for_function("document.querySelector('#mine-done').textContent.trim() === '1'")
        assert int(other.locator("#item").get_attribute("data-record")) not in seen
    finally:
        other.context.close()
