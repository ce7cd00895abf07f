"""Evaluation runs through the HTTP client and the job framework, on a local OpenAI-compatible server
and tiny local models: items stored with prompts and raw outputs, summaries, leaderboard, comparison,
memorisation hits and the high-risk store."""
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from django.urls import reverse

from medstudio.audit.models import AuditEvent
from medstudio.jobs.models import Job
from tests.fakes.fixtures import tiny_llama_path  # noqa: F401
from tests.fakes.openai_server import Status, fake_openai_server
from training.evaluation import selectors, services
from training.evaluation.models import EvalRun, HighRiskStore, MemorizationHit

pytestmark = pytest.mark.django_db


def _rows(shared_data, name, n, pred=lambda r: True):
    out = []
    with open(shared_data / name, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if pred(r):
                out.append(r)
            if len(out) >= n:
                break
    return out


def _cmmlu(shared_data, per_subject=4):
    rows = []
    for subj in ("anatomy", "genetics", "virology"):
        rows += _rows(shared_data, "cmmlu_med.jsonl", per_subject, lambda r, s=subj: r["subject"] == s and r["split"] == "test")
    return rows


def _question_of(prompt_text, rows):
    return next(r for r in rows if r["question"] in prompt_text)


def mcq_replier(rows, skill):
    """A scripted model: for record i and seed s, answers right when skill(i, s), else wrong or refuses.
    Phrasings vary so extraction is exercised end to end."""
    index = {r["id"]: i for i, r in enumerate(rows)}

    def reply(req):
        r = _question_of(req["messages"][-1]["content"], rows)
        i, seed = index[r["id"]], req.get("seed", 0)
        if i % 7 == 3:
            return "抱歉，我无法回答这个问题。"
        if skill(i, seed):
            return ["答案是{a}", "{a}", "正确答案为（{a}）。", "{a}. " + r["options"][r["answer"]]][i % 4].format(a=r["answer"])
        wrong = next(k for k in r["options"] if k != r["answer"])
        return f"The answer is ({wrong})"
    return reply


def expected_acc(rows, skill, seed):
    return sum(1 for i, _ in enumerate(rows) if i % 7 != 3 and skill(i, seed)) / len(rows)


def test_mcq_run_stores_prompts_outputs_and_averages_three_seeds(make_dataset, shared_data, admin_user, client_for):
    rows = _cmmlu(shared_data)
    ds = make_dataset("cmmlu-mini", "mcq", rows)
    skill = lambda i, s: (i + s) % 3 != 0
    with fake_openai_server(chat=mcq_replier(rows, skill)) as url:
        run = services.eval_run_start(user=admin_user, kind="mcq", dataset=ds, model_name="scripted",
                                      model_spec={"backend": "openai", "base_url": url, "model": "m"}, params={"batch_size": 5})
        sent = url.chat_requests()
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert run.job.status == "succeeded"
    assert run.items.count() == 3 * len(rows)
    assert {r["json"]["seed"] for r in sent} == {0, 1, 2}
    # 0-shot, Chinese prompt, one user message
    assert all(len(r["json"]["messages"]) == 1 and "单项选择题" in r["json"]["messages"][0]["content"] for r in sent)
    accs = [expected_acc(rows, skill, s) for s in (0, 1, 2)]
    s = run.summary
    assert s["overall"]["runs"] == pytest.approx(accs)
    assert s["overall"]["mean"] == pytest.approx(np.mean(accs))
    assert s["overall"]["std"] == pytest.approx(np.std(accs, ddof=1))
    assert set(s["per_subject"]) == {"anatomy", "genetics", "virology"}
    refusals = sum(1 for i in range(len(rows)) if i % 7 == 3)
    assert s["invalid_rate"]["mean"] == pytest.approx(refusals / len(rows))
    item = run.items.filter(output__contains="无法回答").first()
    assert item.extracted is None and item.correct is False and item.extraction_method == "refusal"
    assert item.prompt[0]["content"].endswith("答案：")

    page = client_for("curator").get(reverse("evaluation:run", args=[run.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert f'{s["overall"]["mean"]:.4f}' in html and "genetics" in html
    # filtering the stored items for invalid answers through HTMX returns the partial only
    part = client_for("curator").get(reverse("evaluation:run", args=[run.pk]) + "?only=invalid", HTTP_HX_REQUEST="true")
    assert part.status_code == 200 and "<html" not in part.content.decode() and "invalid" in part.content.decode()


def test_leaderboard_ranks_models_and_draws_per_subject_svg(make_dataset, shared_data, admin_user, client_for):
    rows = _cmmlu(shared_data, per_subject=3)
    ds = make_dataset("cmmlu-board", "mcq", rows)
    for name, skill in (("weak", lambda i, s: i % 3 == 0), ("strong", lambda i, s: i % 5 != 0)):
        with fake_openai_server(chat=mcq_replier(rows, skill)) as url:
            services.eval_run_start(user=admin_user, kind="mcq", dataset=ds, model_name=name,
                                    model_spec={"backend": "openai", "base_url": url, "model": name}, params={"seeds": [0]})
    board = selectors.leaderboard(dataset_id=ds.pk)
    assert [r["model"] for r in board["rows"]] == ["strong", "weak"]
    html = client_for("curator").get(reverse("evaluation:leaderboard", args=[ds.pk])).content.decode()
    assert "<svg" in html and html.count('class="bar"') == 2 * 3  # 2 models x 3 subjects
    widths = [float(w) for w in re.findall(r'class="bar" x="\d+" y="[\d.]+" width="([\d.]+)"', html)]
    strong_anat = board["rows"][0]["subjects"][0]
    assert widths[0] == pytest.approx(round(strong_anat * 460, 1))
    assert client_for("clinician").get(reverse("evaluation:leaderboard", args=[ds.pk])).status_code == 403


def test_run_form_is_admin_only_and_a_missing_model_is_refused_at_launch_with_what_to_change(make_dataset, shared_data, client_for, tmp_path):
    ds = make_dataset("cmmlu-form", "mcq", _cmmlu(shared_data, per_subject=1))
    data = {"kind": "mcq", "dataset": ds.pk, "backend": "transformers", "path": str(tmp_path / "missing-model"), "seeds": "0"}
    assert client_for("curator").post(reverse("evaluation:run_new"), data).status_code == 403
    # Issue 18.2: checked before launch (no run, no job), the message names the path field and what to do.
    resp = client_for("admin").post(reverse("evaluation:run_new"), data)
    html = resp.content.decode()
    assert resp.status_code == 400 and "is not a local model directory" in html and "choose a registered model" in html
    assert str(tmp_path / "missing-model") in html  # what was typed stays in the form
    assert not EvalRun.objects.exists() and not Job.objects.filter(kind__startswith="evaluation.").exists()
    # wrong dataset kind: a clear form error, nothing created
    qa = make_dataset("qa-form", "qa", [{"id": "q1", "question": "头痛？", "answer": "休息"}])
    resp = client_for("admin").post(reverse("evaluation:run_new"), {**data, "dataset": qa.pk})
    assert resp.status_code == 400 and "needs a dataset of kind mcq" in resp.content.decode()
    assert EvalRun.objects.count() == 0
    # The worker still reports a model that disappears after launch (a run made by the service directly).
    from training.evaluation.services import EvalConfigError

    with pytest.raises(EvalConfigError, match="not a local model directory"):
        services.eval_run_start(user=None, kind="mcq", dataset=ds, model_name="m",
                                model_spec={"backend": "transformers", "path": str(tmp_path / "missing-model")})


def test_consultation_judged_per_turn_and_compared_from_individual_scores(make_dataset, shared_data, admin_user, client_for):
    rows = _rows(shared_data, "cmtmedqa_multiturn.jsonl", 3, lambda r: r["subset"] == "dialogue" and 4 <= len(r["turns"]) <= 6)
    ds = make_dataset("cmt-mini", "dialogue", rows)
    n_items = sum(sum(t["role"] == "assistant" for t in r["turns"]) for r in rows)
    refs = {t["content"] for r in rows for t in r["turns"] if t["role"] == "assistant"}
    next_ref = {r["turns"][i]["content"]: r["turns"][i + 1]["content"]
                for r in rows for i in range(len(r["turns"]) - 1) if r["turns"][i]["role"] == "user"}

    def server(req):
        msgs = req["messages"]
        if req["model"] == "judge":
            reply = msgs[-1]["content"].split("【待评回复】\n", 1)[1]
            if "坏" in reply:
                return "I refuse to give numbers."  # malformed judge reply: marks the item only
            good = 5 if reply.startswith("好") else 2
            return json.dumps({"fluency": good, "relevance": good, "completeness": 3, "proficiency": good})
        # model "good" answers with the reference reply of the next turn; model "bad" answers generically
        user_turns = [m for m in msgs if m["role"] == "user"]
        if req["model"] == "good":
            return "好：" + next_ref[user_turns[-1]["content"]]
        return "坏" if len(user_turns) == 1 else "建议您去医院看看。"

    runs = {}
    with fake_openai_server(chat=server) as url:
        for name in ("good", "bad"):
            runs[name] = services.eval_run_start(
                user=admin_user, kind="consultation", dataset=ds, model_name=name,
                model_spec={"backend": "openai", "base_url": url, "model": name},
                params={"judge": {"base_url": url, "model": "judge"}, "batch_size": 2})
    good, bad = (EvalRun.objects.get(pk=runs[k].pk) for k in ("good", "bad"))
    assert good.status == bad.status == "succeeded"
    assert good.items.count() == bad.items.count() == n_items
    item = good.items.filter(turn=2).first()
    # each assistant turn was given the true history: the reference replies of earlier turns
    assert [m["role"] for m in item.prompt] == ["user", "assistant", "user"] and item.prompt[1]["content"] in refs
    assert good.summary["judged"] == n_items and good.summary["per_turn"][0]["fluency"] == 5
    assert bad.summary["judged"] == n_items - 3  # first-turn replies got an unusable verdict
    failed = bad.items.filter(turn=1).first()
    assert failed.judge_scores is None and "judge" in failed.error and failed.output == "坏"
    assert good.summary["mean_rouge_l"] > 0.8 > bad.summary["mean_rouge_l"]

    cmp = selectors.compare(a=good, b=bad)
    assert cmp["n_shared"] == n_items
    assert cmp["judged"]["mean"]["win"] == n_items - 3 and cmp["judged"]["mean"]["n"] == n_items - 3
    assert cmp["judged"]["completeness"]["tie"] == n_items - 3
    assert cmp["rouge"]["win"] == n_items
    html = client_for("curator").get(reverse("evaluation:compare") + f"?a={good.pk}&b={bad.pk}").content.decode()
    assert 'id="judge-wtl"' in html and 'id="turn-wtl"' in html
    page = client_for("curator").get(reverse("evaluation:run", args=[good.pk])).content.decode()
    table = page.split('id="per-turn"')[1].split("</table>")[0]
    n_turns = max(sum(t["role"] == "assistant" for t in r["turns"]) for r in rows)
    assert table.count("<tr>") == 1 + n_turns + 1  # header, one row per turn, "all"
    assert client_for("curator").get(reverse("evaluation:run", args=[bad.pk]) + "?only=failed").status_code == 200


def test_memorisation_hits_link_records_store_is_built_and_curator_reviews(make_dataset, shared_data, admin_user, client_for, settings):
    rows = _rows(shared_data, "huatuo26m_test_qa.jsonl", 5)
    ds = make_dataset("sft-mini", "qa", rows)
    from training.pipeline.memorization import split_prefix_suffix
    from medstudio.datasets.models import Record
    recs = list(Record.objects.filter(dataset=ds).order_by("id"))
    target = recs[2]
    t_prefix, t_suffix = split_prefix_suffix(target.text, prefix_ratio=0.5, max_prefix_units=256, max_suffix_units=96)

    def chat(req):
        prompt = req["messages"][-1]["content"]
        if prompt == t_prefix:
            return t_suffix + "以上。"
        if prompt in recs[4].text:
            return Status(500)
        return "请咨询医生。"

    with fake_openai_server(chat=chat, embeddings=lambda texts: [[float(len(t) % 7), 1.0, 2.0, float(len(t) % 3)] for t in texts]) as url:
        run = services.eval_run_start(user=admin_user, kind="memorization", dataset=ds, model_name="sft",
                                      model_spec={"backend": "openai", "base_url": url, "model": "sft", "max_retries": 0},
                                      params={"embedding_model": "fake-embed", "embedding_url": url})
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert run.summary["flagged"] == 1 and run.summary["failed"] == 1 and run.summary["scored"] == 4
    hit = MemorizationHit.objects.get(run=run)
    assert hit.record_id == target.pk and hit.rouge_l > 0.8
    assert hit.item.reference == t_suffix
    store = HighRiskStore.objects.get(run=run)
    assert store.n_entries == 1 and Path(store.path, "high_risk_embeddings.npy").exists()
    assert str(settings.MEDIA_ROOT) in store.path  # endpoint model: no local directory to write beside

    html = client_for("curator").get(reverse("evaluation:hits")).content.decode()
    assert reverse("datasets:record", args=[target.pk]) in html
    resp = client_for("curator").post(reverse("evaluation:hit_review", args=[hit.pk]), {"status": "exclude"})
    assert resp.status_code == 302
    hit.refresh_from_db()
    assert hit.status == "exclude" and hit.reviewed_by is not None
    assert list(selectors.memorised_record_ids(dataset_id=ds.pk)) == [target.pk]
    # from the hits page, HTMX swaps just the row
    row = client_for("curator").post(reverse("evaluation:hit_review", args=[hit.pk]), {"status": "accepted"}, HTTP_HX_REQUEST="true")
    assert row.status_code == 200 and row.content.decode().lstrip().startswith(f'<tr id="hit-{hit.pk}"')
    hit.refresh_from_db()
    assert hit.status == "accepted" and not selectors.memorised_record_ids(dataset_id=ds.pk).exists()
    assert AuditEvent.objects.filter(action="evaluation.hit_review").exists()
    assert client_for("clinician").post(reverse("evaluation:hit_review", args=[hit.pk]), {"status": "open"}).status_code == 403

    # repeatable: the same settings again give the same verdicts
    with fake_openai_server(chat=chat, embeddings=lambda texts: [[1.0, 2.0, 3.0, 4.0] for _ in texts]) as url2:
        spec = {**run.model_spec, "base_url": url2}
        EvalRun.objects.filter(pk=run.pk).update(model_spec=spec, params={**run.params, "embedding_url": url2})
        run.refresh_from_db()
        again = services.eval_run_repeat(user=admin_user, run=run)
    again.refresh_from_db()
    assert again.repeat_of_id == run.pk and again.params == run.params
    assert again.summary["flagged"] == 1


@pytest.mark.slow
def test_memorisation_on_local_tiny_model_writes_store_beside_the_model(make_dataset, admin_user, memorised_llama, tmp_path):
    from sentence_transformers import SentenceTransformer

    from medstudio.datasets.models import Record
    from tests.fakes.tiny_models import build_tiny_encoder
    from training.pipeline.memorization import HighRiskStore as Store

    trained, _, texts = memorised_llama
    model = str(tmp_path / "model")
    shutil.copytree(trained, model)  # the store is written beside the model: keep the shared one clean
    ds = make_dataset("sft-tiny", "document", [{"id": f"d{i}", "text": t} for i, t in enumerate(texts)])
    seen = Record.objects.get(dataset=ds, external_id="d0")
    assert seen.text == texts[0]
    encoder = build_tiny_encoder(tmp_path / "enc")
    run = services.eval_run_start(user=admin_user, kind="memorization", dataset=ds, model_name="tiny",
                                  model_spec={"backend": "transformers", "path": model},
                                  params={"embedding_model": encoder, "max_new_tokens": 60})
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert list(run.hits.values_list("record_id", flat=True)) == [seen.pk]
    item = run.items.get(record=seen)
    assert item.prompt_text == item.prompt and item.output  # raw continuation, stored as generated
    store_dir = Path(model) / "high_risk_store"
    assert HighRiskStore.objects.get(run=run).path == str(store_dir)
    store = Store.load(store_dir)
    enc = SentenceTransformer(encoder, device="cpu")
    assert store.check(enc.encode([item.prompt], normalize_embeddings=True)[0]).high_risk


class _WorkerDied(BaseException):
    """Stands in for a killed worker: not an Exception, so no handler code gets to clean up."""


def test_mcq_job_resumes_from_its_cursor_without_redoing_or_losing_items(make_dataset, shared_data, admin_user, settings, monkeypatch):
    from medstudio.jobs.context import JobContext
    from medstudio.jobs.models import Job
    from medstudio.jobs.services import job_execute
    from training.evaluation import handlers

    rows = _cmmlu(shared_data, per_subject=3)  # 9 records
    ds = make_dataset("cmmlu-resume", "mcq", rows)
    settings.JOBS_EAGER = False  # leave the job queued; we play the worker
    with fake_openai_server(chat=mcq_replier(rows, lambda i, s: True)) as url:
        run = services.eval_run_start(user=admin_user, kind="mcq", dataset=ds, model_name="m",
                                      model_spec={"backend": "openai", "base_url": url, "model": "m"},
                                      params={"seeds": [0, 1], "batch_size": 4})
        real = handlers._generate
        calls = {"n": 0}

        def dying(gen, prompts, params):
            calls["n"] += 1
            if calls["n"] == 4:  # seed 0 done (batches of 4, 4, 1), dies in seed 1's first batch
                raise _WorkerDied()
            return real(gen, prompts, params)

        monkeypatch.setattr(handlers, "_generate", dying)
        with pytest.raises(_WorkerDied):
            handlers.mcq_job(JobContext(Job.objects.get(pk=run.job_id)))
        assert run.items.count() == 9
        assert Job.objects.get(pk=run.job_id).cursor == {"seed_idx": 0, "after_id": run.items.order_by("-record_id").first().record_id, "done": 9}

        monkeypatch.setattr(handlers, "_generate", real)
        before = len(url.chat_requests())
        job_execute(job_id=run.job_id)
        resumed = len(url.chat_requests()) - before
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert resumed == 9  # only seed 1 was generated again
    assert run.items.count() == 18 and run.items.filter(seed=1).count() == 9
    assert run.summary["overall"]["runs"] == pytest.approx([expected_acc(rows, lambda i, s: True, s) for s in (0, 1)])


def test_run_from_registry_model_ref_copies_its_path_and_name(make_dataset, shared_data, client_for, tmp_path,
                                                              tiny_llama_path):  # noqa: F811
    from training.models import ModelRef

    ds = make_dataset("cmmlu-ref", "mcq", _cmmlu(shared_data, per_subject=1))
    ref = ModelRef.objects.create(name="sft-v1", path=str(tmp_path / "not-there"))
    form = {"kind": "mcq", "dataset": ds.pk, "backend": "transformers", "model_ref": ref.pk, "seeds": "0"}
    resp = client_for("admin").post(reverse("evaluation:run_new"), form)
    # A registry entry whose directory is gone is refused at launch, naming the path (nothing crashed, no run).
    assert resp.status_code == 400 and ref.path in resp.content.decode() and not EvalRun.objects.exists()
    ref.path = tiny_llama_path
    ref.save()
    resp = client_for("admin").post(reverse("evaluation:run_new"), {**form, "limit": "1"})
    assert resp.status_code == 302
    run = EvalRun.objects.get()
    assert run.model_ref == ref and run.model_name == "sft-v1" and run.model_spec["path"] == ref.path


def test_store_check_from_the_run_page_says_whether_a_prompt_is_high_risk(make_dataset, shared_data, admin_user, client_for):
    from medstudio.jobs.models import Job
    from tests.fakes.openai_server import default_embedding
    from training.pipeline.memorization import split_prefix_suffix

    rows = _rows(shared_data, "huatuo26m_test_qa.jsonl", 3)
    ds = make_dataset("sft-check", "qa", rows)
    from medstudio.datasets.models import Record
    target = Record.objects.filter(dataset=ds).order_by("id").first()
    prefix, suffix = split_prefix_suffix(target.text, prefix_ratio=0.5, max_prefix_units=256, max_suffix_units=96)
    embed = lambda texts: [default_embedding(t, 16) for t in texts]  # deterministic, unrelated texts far apart
    with fake_openai_server(chat=lambda req: suffix if req["messages"][-1]["content"] == prefix else "不清楚。", embeddings=embed) as url:
        run = services.eval_run_start(user=admin_user, kind="memorization", dataset=ds, model_name="sft",
                                      model_spec={"backend": "openai", "base_url": url, "model": "sft"},
                                      params={"embedding_model": "fake-embed", "embedding_url": url})
        store = HighRiskStore.objects.get(run=run)
        page = client_for("curator").get(reverse("evaluation:run", args=[run.pk])).content.decode()
        assert 'id="risk-check"' in page
        check = lambda prompt, **kw: Job.objects.get(pk=int(client_for("curator").post(
            reverse("evaluation:store_check", args=[store.pk]), {"prompt": prompt, **kw})["Location"].rstrip("/").split("/")[-1]))
        same = check(prefix)
        other = check("孩子发烧三十八度五，需要吃抗生素吗？")
        strict = check(prefix, threshold="1")
    assert same.status == "succeeded" and same.result["high_risk"] is True and same.result["nearest_record_id"] == target.pk
    assert other.result["high_risk"] is False and other.result["max_cosine"] < 0.8
    assert strict.result["high_risk"] is False  # cosine 1.0 is not above an edited threshold of 1
    assert client_for("clinician").post(reverse("evaluation:store_check", args=[store.pk]), {"prompt": "x"}).status_code == 403


def test_evaluate_command_runs_in_process_and_prints_the_summary(make_dataset, shared_data, settings, capsys):
    from django.core.management import CommandError, call_command

    rows = _cmmlu(shared_data, per_subject=2)
    make_dataset("cmmlu-cli", "mcq", rows)
    settings.JOBS_EAGER = False  # the command itself runs the job
    with fake_openai_server(chat=mcq_replier(rows, lambda i, s: True)) as url:
        call_command("evaluate", "--kind", "mcq", "--dataset", "cmmlu-cli", "--backend", "openai", "--base-url", url,
                     "--model", "m", "--name", "cli", "--param", "seeds=[0]")
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "succeeded"
    assert out["summary"]["overall"]["mean"] == pytest.approx(expected_acc(rows, lambda i, s: True, 0))
    with pytest.raises(CommandError, match="no dataset"):
        call_command("evaluate", "--kind", "mcq", "--dataset", "nope", "--backend", "openai")
