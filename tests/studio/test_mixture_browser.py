"""A curator plans a mixture from a dataset through a recipe and a whole dataset, sees the missing
language as a warning, builds it, and the mixture page names the selections frozen from them."""
from __future__ import annotations

import re

import pytest

from medstudio.handoffs.models import Mixture, Selection

from .test_mixture_sources import zh_only  # noqa: F401  (fixture)
from tests.browser_steps import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_mixture_form_with_dataset_sources(live_server, page, zh_only):  # noqa: F811
    qa, gen, rv = zh_only
    log_in(page, live_server.url, "curator1", "pw-curator")

    page.goto(f"{live_server.url}/studio/mixtures/new/")
    page.fill("input[name=name]", "browser-mix")
    page.fill("input[name=budget]", "200000")
    page.fill("input[name=shard_tokens]", "50000")
    page.select_option(f"select[name='drecipe.{qa.pk}']", str(rv.pk))
    page.fill(f"input[name='dcat.{qa.pk}']", "medical")
    page.fill(f"input[name='dcat.{gen.pk}']", "general")
    page.click("button[value=preview]")
    page.wait_for_selector(".plan-warning")
    assert "No English available: 0 of 180,000 tokens planned" in page.locator(".plan-warning").inner_text()
    assert page.locator("#plan").get_by_text("huatuo (qa-clean v1)").count() >= 1
    # what was chosen survives the preview
    assert page.locator(f"select[name='drecipe.{qa.pk}']").input_value() == str(rv.pk)
    assert page.locator(f"input[name='dcat.{gen.pk}']").input_value() == "general"
    assert not Selection.objects.exists()

    page.click("button[value=build]")
    page.wait_for_url(re.compile(r"/studio/mixtures/\d+/$"))
    mix = Mixture.objects.get(name="browser-mix")
    assert mix.status == "succeeded"
    sources = page.locator("#mix-sources").inner_text()
    assert "frozen from dataset huatuo" in sources and "frozen from dataset gen-zh" in sources
    assert Selection.objects.filter(recipe_version=rv, datasets=qa).exists()
    assert page.locator(".plan-warning").count() == 1
