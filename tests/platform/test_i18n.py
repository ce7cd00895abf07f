"""Simplified Chinese and English UI: the browser's language by default, a switcher, a complete
catalogue; record text and names are never translated."""
import os
import re
from pathlib import Path

import pytest
from django.conf import settings

pytestmark = pytest.mark.django_db

PO = Path(settings.BASE_DIR) / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"


def test_login_page_follows_accept_language(client):
    zh = client.get("/accounts/login/", HTTP_ACCEPT_LANGUAGE="zh-Hans").content.decode()
    assert "<h1>登录</h1>" in zh and "用户名" in zh and 'lang="zh-hans"' in zh
    zh_cn = client.get("/accounts/login/", HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9").content.decode()
    assert "<h1>登录</h1>" in zh_cn  # zh-CN falls back to zh-hans
    en = client.get("/accounts/login/", HTTP_ACCEPT_LANGUAGE="en-US").content.decode()
    assert "<h1>Log in</h1>" in en and "登录" not in en


def test_datasets_page_in_chinese_keeps_record_names(client_for, make_dataset):
    make_dataset("cardiology-notes", "document", [{"id": "a", "text": "fever and cough"}])
    c = client_for("curator")
    html = c.get("/datasets/", HTTP_ACCEPT_LANGUAGE="zh-Hans").content.decode()
    assert "<h1>数据集</h1>" in html and "导入文件" in html and ">文档<" in html
    assert "cardiology-notes" in html  # names are data, not UI
    assert "数据管理员" in html  # the role badge


def test_switcher_sets_the_language_over_the_browser(client_for):
    c = client_for("clinician")
    resp = c.post("/i18n/setlang/", {"language": "zh-hans", "next": "/datasets/"})
    assert resp.status_code == 302 and resp["Location"] == "/datasets/"
    html = c.get("/datasets/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "<h1>数据集</h1>" in html
    c.post("/i18n/setlang/", {"language": "en", "next": "/datasets/"})
    assert "<h1>Datasets</h1>" in c.get("/datasets/", HTTP_ACCEPT_LANGUAGE="zh-Hans").content.decode()


def test_catalogue_is_complete_and_compiled():
    text = PO.read_text(encoding="utf-8")
    entries = [e for e in text.split("\n\n") if "msgid" in e and not e.lstrip().startswith('msgid ""\nmsgstr ""\n"')]
    untranslated = [e for e in entries if re.search(r'^msgstr(\[0\])? ""$(?!\n")', e, re.M) and "#, fuzzy" not in e]
    assert not untranslated, "untranslated strings in locale/zh_Hans:\n" + "\n".join(untranslated[:5])
    assert "#, fuzzy" not in text.split("\n\n", 1)[1], "fuzzy entries are not used by gettext: review them"
    mo = PO.with_suffix(".mo")
    assert mo.exists() and os.path.getmtime(mo) >= os.path.getmtime(PO) - 1, "run `make setup` (compilemessages)"


def test_labelling_screen_in_chinese(client_for, make_dataset, django_user_model):
    from medstudio.annotation import services

    ds = make_dataset("notes", "document", [{"id": f"d{i}", "text": f"fever case {i}"} for i in range(3)])
    curator = django_user_model.objects.create_user(username="cur-zh", password="x", role="curator")
    question = services.question_create(user=curator, name="quality", kind="rating")
    queue = services.queue_create(user=curator, name="q-zh", dataset=ds, question=question, annotators_per_item=1)
    c = client_for("clinician")
    html = c.get(f"/annotate/q/{queue.pk}/", HTTP_ACCEPT_LANGUAGE="zh-Hans").content.decode()
    assert "提交" in html and "跳过" in html and "我还剩" in html and "</kbd> 评分" in html  # key hints too
    assert "fever case" in html  # the record text is untouched
    en = c.get(f"/annotate/q/{queue.pk}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Submit" in en and "提交" not in en


def test_answer_error_in_the_annotators_language(make_dataset, django_user_model):
    """questions.py stays Django-free: AnswerError carries a template and params, the Django layer
    translates it (the aspect word too); English is unchanged."""
    from django.utils import translation

    from medstudio.annotation import services
    from medstudio.annotation.questions import AnswerError, clean_answer

    with pytest.raises(AnswerError) as err:
        clean_answer("rating", {}, {})
    assert err.value.code == "missing" and err.value.params == {"what": "score", "lo": 0, "hi": 5}
    assert str(err.value) == "Choose a score from 0 to 5 before submitting (press a number key or click one)."

    ds = make_dataset("notes", "document", [{"id": "d0", "text": "fever"}])
    curator = django_user_model.objects.create_user(username="cur-ae", password="x", role="curator")
    clinician = django_user_model.objects.create_user(username="doc-ae", password="x", role="clinician")
    question = services.question_create(user=curator, name="quality", kind="rating")
    queue = services.queue_create(user=curator, name="q-ae", dataset=ds, question=question, annotators_per_item=1)
    a = services.assignment_next(queue=queue, user=clinician)
    with translation.override("zh-hans"), pytest.raises(services.AnnotationError) as zh:
        services.label_submit(assignment_id=a.pk, user=clinician, answer={}, revision=a.revision)
    assert "提交前请选择评分" in str(zh.value) and "0 到 5" in str(zh.value)
    with translation.override("en"), pytest.raises(services.AnnotationError) as en:
        services.label_submit(assignment_id=a.pk, user=clinician, answer={"score": "x"}, revision=a.revision)
    assert str(en.value) == "score: 'x' is not a whole number"


def test_job_page_in_chinese(client_for):
    """A failed job's plain cause, its status and kind read in Chinese; the error text itself is data."""
    from medstudio.jobs.models import Job, JobLog, JobStatus

    job = Job.objects.create(kind="training.run", status=JobStatus.FAILED, error="exited with code 1")
    JobLog.objects.create(job=job, level="error", message="torch.OutOfMemoryError: CUDA out of memory. Tried 2 GiB")
    html = client_for("curator").get(f"/jobs/{job.pk}/", HTTP_ACCEPT_LANGUAGE="zh-Hans").content.decode()
    assert "失败原因：" in html and "GPU 显存不足" in html and "训练运行" in html  # cause, kind label
    assert 'id="job-status">失败<' in html
    en = client_for("curator").get(f"/jobs/{job.pk}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "The GPU ran out of memory" in en and 'id="job-status">Failed<' in en


@pytest.mark.django_db
def test_counts_are_plural_aware_in_english(client_for, make_dataset):
    """'1 record' but '2 records' (ngettext / blocktranslate count), not '1 records'."""
    from django.utils import translation

    one = make_dataset("plural-one", "document", [{"id": "a", "text": "alpha beta"}])
    two = make_dataset("plural-two", "document", [{"id": "a", "text": "alpha"}, {"id": "b", "text": "beta"}])
    c = client_for("curator")
    with translation.override("en"):
        page_one = c.get(f"/datasets/{one.pk}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
        page_two = c.get(f"/datasets/{two.pk}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert 'id="n-records">1</strong> record,' in page_one
    assert 'id="n-records">2</strong> records,' in page_two


@pytest.mark.django_db
def test_a_handlers_failure_shows_translated_with_its_params(client_for):
    """A worker's own failure (a registered msgid + params in Job.error) reads in Chinese above the
    log on the job page; the raw English stays on the page as the detail."""
    from django.urls import reverse

    import curation.handlers as ch
    from medstudio.jobs.errors import failure
    from medstudio.jobs.models import Job, JobStatus

    error = failure(ch.NO_DATASET, names="cmmlu-x, medqa-y")
    job = Job.objects.create(kind="curation.score", status=JobStatus.FAILED, error=error, params={})
    c = client_for("curator")
    zh = c.get(reverse("jobs:detail", args=[job.pk]), HTTP_ACCEPT_LANGUAGE="zh-Hans").content.decode()
    cause = re.search(r'id="job-cause">(.*?)</p>', zh, re.S).group(1)
    assert "cmmlu-x, medqa-y" in cause and "No dataset named" not in cause
    assert re.search(r"[\u4e00-\u9fff]", cause)
    assert "No dataset named cmmlu-x, medqa-y." in zh  # the raw detail is kept
    en = c.get(reverse("jobs:detail", args=[job.pk]), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "No dataset named cmmlu-x, medqa-y." in re.search(r'id="job-cause">(.*?)</p>', en, re.S).group(1)


def test_translation_markers_are_names_makemessages_reads():
    """xgettext only reads gettext, gettext_lazy, gettext_noop, ngettext... and `_`: a string marked
    with another alias (`gettext_lazy as _l`) never reaches the catalogue and shows in English."""
    root = Path(settings.BASE_DIR)
    alias = re.compile(r"from django\.utils\.translation import ([^\n]+)")
    bad = []
    for app in ("medstudio", "curation", "preferences", "training"):
        for path in (root / app).rglob("*.py"):
            for names in alias.findall(path.read_text(encoding="utf-8")):
                for part in names.strip("()").split(","):
                    m = re.fullmatch(r"\s*(\w+)\s+as\s+(\w+)\s*", part)
                    if m and m.group(2) != "_":
                        bad.append(f"{path.relative_to(root)}: {part.strip()}")
    assert not bad, bad


@pytest.mark.django_db
def test_scorer_settings_and_description_in_chinese(client_for, make_dataset):
    """The Run-scorer form's param labels, help and the scorer's description come from the catalogue."""
    from django.utils import translation

    from curation.scorer_params import RULE_PARAMS
    from medstudio.handoffs.scorers import scorers

    ds = make_dataset("zh-scorer", "document", [{"id": "a", "text": "alpha beta"}])
    html = client_for("curator").get(f"/curation/datasets/{ds.pk}/run/", {"scorer": "rules"},
                                     HTTP_ACCEPT_LANGUAGE="zh-Hans").content.decode()
    with translation.override("zh-hans"):
        label, desc = str(RULE_PARAMS[0].label), str(scorers()["rules"].description)
    assert label != "Minimum tokens" and label in html
    assert desc != "Gopher/C4/FineWeb-style rule filters (length, symbols, repetition, non-text, toxic words, PII); " \
                   "reason = first failing rule." and desc in html


@pytest.mark.django_db
def test_wrong_kind_import_failure_reads_in_chinese_with_its_numbers(client_for):
    """The importer's English refusal (medstudio/datasets/services.py) is matched back on the job page:
    the cause is in Chinese with the kinds and counts of this file, the English stays as the detail."""
    from django.urls import reverse

    from medstudio.jobs.models import Job, JobStatus

    error = ("Nothing was imported. This looks like kind=document, not kind=qa: 2924 of 2924 lines do not fit qa but "
             "fit document. Import it as document (into a document dataset), or choose kind auto.")
    job = Job.objects.create(kind="datasets.import", status=JobStatus.FAILED, error=error, params={})
    zh = client_for("curator").get(reverse("jobs:detail", args=[job.pk]), HTTP_ACCEPT_LANGUAGE="zh-Hans").content.decode()
    cause = re.search(r'id="job-cause">(.*?)</p>', zh, re.S).group(1)
    assert "kind=document" in cause and "2924" in cause and "Nothing was imported" not in cause
    assert "数据集导入" in zh and error in zh  # the kind label in Chinese; the raw English kept


def test_no_template_comment_spans_lines():
    """Django's {# #} comment is one line only: spread over two it is printed on the page."""
    root = Path(settings.BASE_DIR)
    bad = []
    for path in root.glob("**/templates/**/*.html"):
        if ".venv" in path.parts or "node_modules" in path.parts:
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "{#" in line and "#}" not in line.split("{#", 1)[1]:
                bad.append(f"{path.relative_to(root)}:{n}")
    assert not bad, bad
