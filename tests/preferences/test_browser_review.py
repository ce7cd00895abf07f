"""In headless Chromium: a curator sends pairs to review, a clinician judges them side by side (in
random A/B order), and the curator applies the verdicts and sees judge-vs-clinician agreement."""
import pytest

from preferences import services
from preferences.models import PreferencePair

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _login(page, base, username, password):
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")


def test_clinician_review_then_curator_applies_verdicts(live_server, page, django_user_model):
    curator = django_user_model.objects.create_user(username="cur", password="pw-cur-123", role="curator")
    django_user_model.objects.create_user(username="dr", password="pw-dr-123", role="clinician")
    s = services.preference_set_create(user=curator, name="browser set")
    for i in range(4):
        PreferencePair.objects.create(pref_set=s, origin="subjective", item_key=i,
                                      prompt_turns=[{"role": "user", "content": f"头痛{i}天怎么办？"}],
                                      chosen=f"GOOD 建议就医{i}", rejected=f"BAD 随便{i}")
    review = services.review_send(user=curator, pref_set=s, seed=2)

    _login(page, live_server.url, "dr", "pw-dr-123")
    page.goto(f"{live_server.url}/annotate/q/{review.queue_id}/")
    shown_first = []
    for i in range(1, 5):
        a_text = page.locator("#pair .answer-a").inner_text()
        shown_first.append("GOOD" in a_text)
        # The clinician prefers the GOOD answer except on the pair about day 3, where they prefer BAD.
        prefers_good = "3" not in page.locator("#item .msg.user").inner_text()
        pick = "A" if ("GOOD" in a_text) == prefers_good else "B"
        page.check(f"input[name=winner][value={pick}]")
        page.click("#answer-form button[type=submit]")
        page.wait_for_function(f"document.querySelector('#mine-done').textContent.trim() === '{i}'")
    assert len(set(shown_first)) == 2  # both orders were shown: the chosen answer is not always A

    cur = page.context.browser.new_context().new_page()
    try:
        cur.set_default_timeout(15000)
        _login(cur, live_server.url, "cur", "pw-cur-123")
        cur.goto(f"{live_server.url}/preferences/{s.pk}/")
        cur.click("#review button:has-text('Apply verdicts')")
        cur.wait_for_selector("text=4 verdict(s) applied")
        row = cur.locator("#agreement tbody tr").first.inner_text()
        assert row.split("\t")[:5] == ["subjective", "4", "3", "1", "75.0%"]
    finally:
        cur.context.close()
    assert PreferencePair.objects.get(pref_set=s, item_key=3).verdict == "rejected"
