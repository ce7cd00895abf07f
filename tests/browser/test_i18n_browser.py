"""In headless Chromium with a Chinese locale, the login and datasets pages render in Chinese; the
switcher turns the UI back to English."""
import os

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_chinese_browser_gets_chinese_pages_and_can_switch(live_server, django_user_model, make_dataset, tmp_path):
    from playwright.sync_api import sync_playwright

    django_user_model.objects.create_user(username="dr-li", password="pw-li-12345", role="clinician")
    make_dataset("肺炎病例", "document", [{"id": "a", "text": "发热咳嗽三天"}])
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"), headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        context = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 800})
        page = context.new_page()
        page.set_default_timeout(15000)
        page.goto(f"{live_server.url}/accounts/login/")
        assert page.locator("h1").inner_text() == "登录"
        page.fill("#id_username", "dr-li")
        page.fill("#id_password", "pw-li-12345")
        page.click("button[type=submit]")
        page.goto(f"{live_server.url}/datasets/")
        assert page.locator("h1").inner_text() == "数据集"
        assert page.locator("#datasets").get_by_text("肺炎病例").count() == 1
        assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth")
        page.screenshot(path=str(tmp_path / "datasets-zh.png"))
        page.select_option("select[name=language]", "en")
        page.wait_for_load_state()
        page.wait_for_function("document.querySelector('h1').innerText === 'Datasets'")
        assert "/datasets/" in page.url
        context.close()
        browser.close()
