"""Issue 15, point 3: the run page's invalid-answer card (per model and subject, with example replies)
and `manage.py evaluate --reextract RUN` (re-score stored outputs without generating)."""
import json

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from medstudio.audit.models import AuditEvent
from medstudio.datasets.models import Record
from training.evaluation import selectors
from training.evaluation.models import EvalItem, EvalRun

pytestmark = pytest.mark.django_db


def _rows(shared_data, per_subject=4):
    out = []
    with open(shared_data / "cmmlu_med.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    for subj in ("anatomy", "genetics"):
        out += [r for r in rows if r["subject"] == subj and r["split"] == "test"][:per_subject]
    return out


def _run(ds, name="scripted", status="succeeded", **kw):
    return EvalRun.objects.create(kind="mcq", dataset=ds, model_name=name, model_spec={"backend": "openai", "model": name},
                                  params={"seeds": [0]}, status=status, **kw)


def _item(run, rec, output, extracted, correct, method="none", seed=0):
    return EvalItem.objects.create(run=run, record=rec, seed=seed, subset=rec.subset, prompt=[{"role": "user", "content": "q"}],
                                   output=output, reference=rec.content["answer"], extracted=extracted,
                                   extraction_method=method, correct=correct)


def test_run_page_lists_invalid_rates_per_subject_with_escaped_truncated_examples(make_dataset, shared_data, client_for):
    ds = make_dataset("cmmlu-invalid", "mcq", _rows(shared_data, per_subject=5))
    run = _run(ds)
    anat = list(Record.objects.filter(dataset=ds, subset="anatomy"))
    gen = list(Record.objects.filter(dataset=ds, subset="genetics"))
    long_reply = "我需要更多信息。" + "很长的分析" * 200
    # anatomy: 4 of 5 invalid (one long, one with markup), genetics: 1 of 5 invalid, one failed generation
    _item(run, anat[0], "<script>alert('x')</script> 我不确定", None, False)
    _item(run, anat[1], long_reply, None, False)
    _item(run, anat[2], "抱歉，我无法回答。", None, False, "refusal")
    _item(run, anat[3], "either A or B", None, False, "hedge")
    _item(run, anat[4], f"答案是{anat[4].content['answer']}", anat[4].content["answer"], True, "explicit")
    for rec in gen[:3]:
        _item(run, rec, f"答案是{rec.content['answer']}", rec.content["answer"], True, "explicit")
    _item(run, gen[3], "I cannot answer that.", None, False, "refusal")
    _item(run, gen[4], None, None, False, "failed")

    groups = selectors.invalid_extractions(runs=[run])
    by = {g["subject"]: g for g in groups}
    assert [g["subject"] for g in groups] == ["anatomy", "genetics"]  # highest rate first
    assert (by["anatomy"]["invalid"], by["anatomy"]["n"], by["anatomy"]["rate"]) == (4, 5, pytest.approx(0.8))
    assert (by["genetics"]["invalid"], by["genetics"]["failed"], by["genetics"]["rate"]) == (1, 1, pytest.approx(0.2))
    assert len(by["anatomy"]["examples"]) == 3 and by["genetics"]["examples"][0]["output"] == "I cannot answer that."
    assert all(g["model"] == "scripted" for g in groups)

    html = client_for("curator").get(reverse("evaluation:run", args=[run.pk])).content.decode()
    card = html[html.index('id="invalid-extraction"'):]
    card = card[:card.index("</table>")]
    assert card.count('class="invalid-group"') == 2
    assert "0.8000" in card and "0.2000" in card and "anatomy" in card and "scripted" in card
    assert card.count('class="small invalid-example"') == 3 + 1  # at most 3 examples per group
    assert "&lt;script&gt;" in card and "<script>alert" not in html  # escaped
    assert "我需要更多信息。" in card and long_reply not in card and "…" in card  # truncated
    assert "抱歉，我无法回答。" in card
    assert "either A or B" not in card  # the 4th invalid anatomy reply is beyond the 3 examples

    # the HTMX item filter still returns only the partial, without the card
    part = client_for("curator").get(reverse("evaluation:run", args=[run.pk]) + "?only=invalid", HTTP_HX_REQUEST="true")
    assert "invalid-extraction" not in part.content.decode()


def test_reextract_rescores_stored_outputs_and_updates_the_summary(make_dataset, shared_data, capsys):
    rows = _rows(shared_data, per_subject=3)
    ds = make_dataset("cmmlu-reextract", "mcq", rows)
    run = _run(ds, name="old-rules")
    recs = list(Record.objects.filter(dataset=ds).order_by("id"))
    stale = recs[:3]
    for rec in stale:  # what the old rule called invalid: markdown around the letter after "答案是 "
        _item(run, rec, f"答案是 **{rec.content['answer']}**", None, False)
    wrong = recs[3]
    other = next(k for k in wrong.content["options"] if k != wrong.content["answer"])
    _item(run, wrong, f"<think>答案是{wrong.content['answer']}</think>\n\n答案：{other}", wrong.content["answer"], True, "explicit")
    _item(run, recs[4], "抱歉，我无法回答这个问题。", None, False, "refusal")
    _item(run, recs[5], f"{recs[5].content['answer']}", recs[5].content["answer"], True, "bare")
    run.summary = selectors.mcq_summary(run)
    run.save(update_fields=["summary"])
    assert run.summary["overall"]["mean"] == pytest.approx(2 / 6)

    call_command("evaluate", "--reextract", str(run.pk))
    out = capsys.readouterr().out
    run.refresh_from_db()
    assert "0.3333 → 0.6667" in out  # 2 right before; 3 stale invalid now right, the think-only letter now wrong
    assert "invalid 4 → 1" in out
    assert "4 changed" in out
    for rec in stale:
        it = run.items.get(record=rec)
        assert it.extracted == rec.content["answer"] and it.correct is True and it.extraction_method == "explicit"
    it = run.items.get(record=wrong)
    assert it.extracted == other and it.correct is False  # letters inside <think> no longer count
    assert run.items.get(record=recs[4]).extraction_method == "refusal"
    assert run.summary["overall"]["mean"] == pytest.approx(4 / 6)
    assert run.summary["invalid_rate"]["mean"] == pytest.approx(1 / 6)
    assert run.summary["reextracted"]["changed"] == 4 and run.summary["reextracted"]["invalid_before"] == 4
    assert run.status == "succeeded" and run.items.count() == 6  # nothing regenerated
    ev = AuditEvent.objects.get(action="evaluation.reextract")
    assert ev.target_id == str(run.pk) and ev.data["invalid_after"] == 1

    # a second pass changes nothing
    call_command("evaluate", "--reextract", str(run.pk))
    assert "0 changed" in capsys.readouterr().out


def test_reextract_refuses_missing_running_and_non_mcq_runs(make_dataset, shared_data):
    ds = make_dataset("cmmlu-reextract-bad", "mcq", _rows(shared_data, per_subject=1))
    with pytest.raises(CommandError, match="no evaluation run"):
        call_command("evaluate", "--reextract", "999999")
    running = _run(ds, status="running")
    with pytest.raises(CommandError, match="running"):
        call_command("evaluate", "--reextract", str(running.pk))
    memo = EvalRun.objects.create(kind="memorization", dataset=ds, model_name="m", model_spec={}, status="succeeded")
    with pytest.raises(CommandError, match="only MCQ"):
        call_command("evaluate", "--reextract", str(memo.pk))
    with pytest.raises(CommandError, match="--kind and --dataset"):
        call_command("evaluate", "--dataset", "cmmlu-reextract-bad")
