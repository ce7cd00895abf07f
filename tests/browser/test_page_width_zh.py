"""Each role's main pages in Simplified Chinese (issue 18, points 8 and 9), in headless Chromium with a
zh-CN browser at 1,280 x 800: the page is in Chinese (a string the catalogue translates appears, in
the form the catalogue gives it) and nothing scrolls sideways (longer Chinese labels, tables).

Screenshots go to $MEDSTUDIO_SCREENSHOTS (default: the test's tmp dir) as zh-<role>-<page>.png.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.browser.test_page_width import WIDTHS, _demo
from tests.fakes.fixtures import tiny_llama_path  # noqa: F401
from tests.studio.conftest import test_scorers  # noqa: F401
from tests.browser_steps import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTH, HEIGHT = 1280, 800


def _role_pages(pages: dict, queue_pk: int) -> dict:
    """{role: (username, password, [(page name, path, English msgid that must show translated)])}."""
    return {
        "clinician": ("dr_a", "pw", [
            ("annotate", pages["annotate"], "Labelling queues"),
            ("label", f"/annotate/q/{queue_pk}/", "Annotate"),
        ]),
        "curator": ("cur-zh", "pw-cur-12345", [
            ("datasets", pages["datasets"], "Import a file"),
            ("dataset", pages["dataset"], "Contents"),
            ("studio-home", pages["studio-home"], "Threshold studio"),
            ("studio", pages["studio"], "Save as recipe"),
            ("scorer-run", pages["scorer-run-rules"], "Kept and dropped"),
            ("jobs", pages["jobs"], "any status"),
            ("job", pages["job"], "Status:"),
            ("queue", pages["queue"], "Consensus threshold"),
            ("scorer-new", pages["scorer-new"], "Minimum tokens"),  # a scorer setting's label
            ("queue-new", pages["queue-new"], "New labelling queue"),
            ("diversify", pages["diversify"], "Send the prompts to"),
        ]),
        "admin": ("boss", "pw-boss-123", [
            ("training-runs", pages["training-runs"], "Model registry"),
            ("training-run", pages["training-run"], "Checkpoints"),
            ("model", pages["model"], "Lineage"),
            ("evaluation", pages["evaluation"], "New evaluation"),
            ("evaluation-new", pages["evaluation-new"], "Generation backend"),
            ("training-new", pages["training-new"], "Hyper-parameters"),
            ("people", pages["users"], "People and roles"),
        ]),
    }


def test_each_role_main_pages_in_chinese_fit_1280(live_server, django_user_model, make_dataset, tmp_path, settings,
                                                  test_scorers, tiny_llama_path):  # noqa: F811
    from django.utils import translation
    from playwright.sync_api import sync_playwright

    from medstudio.annotation.models import Queue

    pages = _demo(django_user_model, make_dataset, tmp_path, settings, tiny_llama_path)
    django_user_model.objects.create_user(username="cur-zh", password="pw-cur-12345", role="curator")
    roles = _role_pages(pages, Queue.objects.get(name="rate queue").pk)
    shots = Path(os.environ.get("MEDSTUDIO_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)

    problems = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"), headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        for role, (username, password, role_pages) in roles.items():
            context = browser.new_context(locale="zh-CN", viewport={"width": WIDTH, "height": HEIGHT})
            page = context.new_page()
            page.set_default_timeout(15000)
            log_in(page, live_server.url, username, password)
            for name, path, msgid in role_pages:
                with translation.override("zh-hans"):
                    expected = translation.gettext(msgid)
                assert expected != msgid, f"{msgid!r} has no Chinese translation"
                response = page.goto(f"{live_server.url}{path}")
                if response.status != 200:
                    problems.append(f"{role} {name} {path}: HTTP {response.status}")
                    continue
                page.wait_for_timeout(150)  # let charts size themselves before measuring
                if page.evaluate("document.documentElement.lang") != "zh-hans":
                    problems.append(f"{role} {name}: <html lang> is {page.evaluate('document.documentElement.lang')}")
                if expected not in page.locator("body").inner_text():
                    problems.append(f"{role} {name}: {expected!r} ({msgid!r}) not on the page")
                page.screenshot(path=str(shots / f"zh-{role}-{name}.png"), full_page=True)
                fits = page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
                if not fits:
                    w = page.evaluate(WIDTHS)
                    problems.append(f"{role} {name} {path}: scrollWidth {w['scroll']} > {WIDTH} (wide: {w['wide']})")
            context.close()
        browser.close()
    assert not problems, "\n".join(problems)
