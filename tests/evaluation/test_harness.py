"""lm-evaluation-harness backend (issue 15 point 3), offline, on a tiny local model and a small
local task built from /work/shared/data/cmmlu_med.jsonl (saved with save_to_disk in tmp_path).

Which scores are compared, and why: MedStudio's own MCQ scorer reads a *generated* reply (its
answer extractor), whereas the harness's standard medical tasks score by *log-likelihood* of each
option letter. Those answer different questions (a model can rank "B" highest yet write "A"), so
comparing them item by item would test nothing. Like is compared with like instead: the harness runs
a generate_until task with MedStudio's own prompt, the harness grades the reply with its regex
filter + exact_match, MedStudio grades the *same raw reply* with its extractor, and wherever both
extract a letter they must agree on correctness. A scripted harness LM (replies shaped like real
model answers) makes sure the comparison is not vacuous when the random tiny model writes no letter.
The standard log-likelihood task is run end to end through the MedStudio job as well.
"""
import json
import os

import pytest

pytest.importorskip("lm_eval")

from tests.fakes.fixtures import tiny_llama_path  # noqa: F401,E402
from training.pipeline import evaluation as ev  # noqa: E402
from training.pipeline import harness  # noqa: E402

N_TEST = 6


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def _anatomy(shared_data):
    rows = [json.loads(line) for line in open(shared_data / "cmmlu_med.jsonl", encoding="utf-8")]
    rows = [r for r in rows if r["subject"] == "anatomy"]
    return [r for r in rows if r["split"] == "dev"], [r for r in rows if r["split"] == "test"][:N_TEST]


def _columns(rows):  # the haonan-li/cmmlu column layout the harness's cmmlu tasks read
    return {"Question": [r["question"] for r in rows], **{k: [r["options"][k] for r in rows] for k in "ABCD"},
            "Answer": [r["answer"] for r in rows]}


@pytest.fixture
def task_dir(tmp_path, shared_data):
    import datasets

    dev, test = _anatomy(shared_data)
    datasets.DatasetDict({"dev": datasets.Dataset.from_dict(_columns(dev)),
                          "test": datasets.Dataset.from_dict(_columns(test))}).save_to_disk(tmp_path / "cmmlu_anatomy")
    return tmp_path


def test_local_tasks_says_which_are_available(task_dir):
    avail = {t["name"]: t["available"] for t in harness.local_tasks(task_dir)}
    assert avail["cmmlu_anatomy"] is True
    assert avail["medqa_4options"] is False and avail["pubmedqa"] is False
    assert {"medmcqa", "mmlu_professional_medicine", "ceval-valid_physician"} <= set(avail)


def _medstudio_prompt(doc):
    content = {"question": doc["Question"], "options": {k: doc[k] for k in "ABCD"}, "answer": doc["Answer"]}
    return ev.mcq_messages(content, lang="zh", subject="anatomy")[0]["content"]


def _generative_config(task_dir):
    """The same local data as a generate_until task with MedStudio's prompt; the harness extracts a
    letter with its own regex filter (first standalone A-D), "[invalid]" when none."""
    return harness.task_config("cmmlu_anatomy", task_dir, overrides={
        "task": "cmmlu_anatomy_gen", "output_type": "generate_until", "doc_to_text": _medstudio_prompt,
        "doc_to_target": "{{Answer}}", "doc_to_choice": None, "description": "",
        "generation_kwargs": {"until": ["\n\n"], "do_sample": False, "max_gen_toks": 12},
        "filter_list": [{"name": "letter", "filter": [
            {"function": "regex", "regex_pattern": r"(?<![A-Za-z])([ABCD])(?![A-Za-z])", "group_select": 0},
            {"function": "take_first"}]}],
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
    })


def _agreement(samples, docs):
    """(n both extracted, n agreeing): harness exact_match vs MedStudio's extractor on the same reply."""
    both = agree = 0
    for s in samples:
        doc = docs[s["doc_id"]]
        item = ev.McqItem(s["doc_id"], "anatomy", {k: doc[k] for k in "ABCD"}, doc["Answer"])
        verdict = ev.mcq_verdicts([item], [s["output"]])[0]
        harness_extracted = s["filtered"] not in ("", "[invalid]")
        if harness_extracted and verdict.extraction.valid:
            both += 1
            agree += int(bool(s["exact_match"]) == verdict.correct)
    return both, agree


def test_generation_scoring_agrees_with_medstudio_on_tiny_model(task_dir, tiny_llama_path):  # noqa: F811
    import datasets

    docs = datasets.load_from_disk(str(task_dir / "cmmlu_anatomy"))["test"]
    model, args = harness.model_for({"backend": "transformers", "path": tiny_llama_path})
    out = harness.run(tasks=[_generative_config(task_dir)], datasets_dir=task_dir, model=model, model_args=args,
                      num_fewshot=0)
    samples = [s for s in out["samples"] if s["task"] == "cmmlu_anatomy_gen"]
    assert len(samples) == N_TEST and all("output" in s for s in samples)
    both, agree = _agreement(samples, docs)
    assert agree == both  # wherever both extract an answer, they agree on correctness


def test_generation_scoring_agrees_on_scripted_replies(task_dir):
    """A harness LM that answers like real models do (bare, bracketed, bold, sentence, Chinese)."""
    import datasets
    from lm_eval.api.model import LM

    docs = datasets.load_from_disk(str(task_dir / "cmmlu_anatomy"))["test"]
    shapes = ["{L}", "({L})", "**{L}**", "答案：{L}", "The answer is {L}.", "{L}. {T}"]

    class Scripted(LM):
        def generate_until(self, requests):
            out = []
            for i, req in enumerate(requests):
                doc = req.doc
                letter = doc["Answer"] if i % 2 == 0 else "ABCD"[("ABCD".index(doc["Answer"]) + 1) % 4]
                out.append(shapes[i % len(shapes)].format(L=letter, T=doc[letter]))
            return out

        def loglikelihood(self, requests):  # pragma: no cover - generation task only
            raise NotImplementedError

        def loglikelihood_rolling(self, requests):  # pragma: no cover
            raise NotImplementedError

    out = harness.run(tasks=[_generative_config(task_dir)], datasets_dir=task_dir, model=Scripted(), num_fewshot=0)
    samples = out["samples"]
    both, agree = _agreement(samples, docs)
    assert both == N_TEST and agree == both
    assert out["results"]["cmmlu_anatomy_gen"]["exact_match"] == pytest.approx(0.5)


@pytest.mark.django_db
def test_harness_job_stores_run_beside_medstudio_scorer(task_dir, tiny_llama_path, settings, tmp_path, django_user_model):  # noqa: F811
    """The standard (log-likelihood) cmmlu_anatomy task through a MedStudio job, offline."""
    from medstudio.jobs.services import job_execute
    from training.evaluation import selectors, services
    from training.evaluation.models import EvalRun

    settings.MEDSTUDIO_EVAL_DATASETS_DIR = str(task_dir)
    settings.MEDIA_ROOT = str(tmp_path / "media")
    with pytest.raises(services.EvalConfigError, match="no local copy"):
        services.harness_run_start(user=None, tasks=["medqa_4options"], model_name="tiny",
                                   model_spec={"backend": "transformers", "path": tiny_llama_path})
    run = services.harness_run_start(user=None, tasks=["cmmlu_anatomy"], model_name="tiny",
                                     model_spec={"backend": "transformers", "path": tiny_llama_path}, enqueue=False)
    job_execute(job_id=run.job_id)
    run = EvalRun.objects.get(pk=run.pk)
    assert run.status == "succeeded", run.error
    assert run.source == "lm-eval" and run.dataset_id is None
    acc = run.summary["per_subject"]["cmmlu_anatomy"]["mean"]
    assert 0.0 <= acc <= 1.0 and run.summary["per_subject"]["cmmlu_anatomy"]["n"] == N_TEST
    rows = [json.loads(line) for line in open(run.summary["samples_path"], encoding="utf-8")]
    assert len(rows) == N_TEST
    # the harness's per-sample choice is the argmax of its log-likelihoods, and acc follows from it
    for r in rows:
        assert r["choice"] == max(range(4), key=r["loglikelihoods"].__getitem__)
        assert r["acc"] == float(r["choice"] == r["target"])
    assert acc == pytest.approx(sum(r["acc"] for r in rows) / N_TEST)
    board = selectors.harness_leaderboard()
    assert board["tasks"] == ["cmmlu_anatomy"] and board["rows"][0]["model"] == "tiny"
    assert os.path.exists(run.summary["samples_path"])
    # beside MedStudio's own scorer: the MCQ leaderboard page shows the lm-eval table too
    from django.test import Client
    from django.urls import reverse

    from medstudio.datasets.models import Dataset

    ds = Dataset.objects.create(name="cmmlu-lb", kind="mcq")
    user = django_user_model.objects.create_user(username="cur-h", password="x", role="curator")
    c = Client()
    c.force_login(user)
    html = c.get(reverse("evaluation:leaderboard", args=[ds.pk])).content.decode()
    assert 'id="harness-leaderboard"' in html and "tiny" in html and "cmmlu_anatomy" in html


@pytest.mark.django_db
def test_evaluation_page_lists_local_tasks_and_starts_runs(task_dir, client_for, settings, tiny_llama_path):  # noqa: F811
    from django.urls import reverse

    from training.evaluation.models import EvalRun

    settings.MEDSTUDIO_EVAL_DATASETS_DIR = str(task_dir)
    html = client_for("curator").get(reverse("evaluation:home")).content.decode()
    assert 'id="harness-tasks"' in html and "cmmlu_anatomy" in html and "medqa_4options" in html
    assert "Tasks available locally: 1 of" in html and 'id="harness-form"' not in html  # the form is for admins
    admin = client_for("admin")
    assert 'id="harness-form"' in admin.get(reverse("evaluation:home")).content.decode()
    r = admin.post(reverse("evaluation:harness_new"), {"tasks": ["medqa_4options"], "backend": "transformers", "path": "/x"})
    assert r.status_code == 400 and not EvalRun.objects.exists()  # not available locally: refused, the form re-rendered
    r = admin.post(reverse("evaluation:harness_new"), {"tasks": ["cmmlu_anatomy"], "backend": "transformers", "path": "",
                                                       "model_name": "typed-name", "limit": "3"})
    html = r.content.decode()
    assert r.status_code == 400 and not EvalRun.objects.exists()  # no model: said on the path field, with the fix
    assert "Choose a registered model or give a local model folder" in html
    assert 'value="typed-name"' in html and 'value="3"' in html  # what was typed is kept
    r = admin.post(reverse("evaluation:harness_new"), {"tasks": ["cmmlu_anatomy"], "backend": "transformers", "path": "/no/such/model"})
    assert r.status_code == 400 and "cannot be loaded" in r.content.decode() and not EvalRun.objects.exists()
    r = admin.post(reverse("evaluation:harness_new"), {"tasks": ["cmmlu_anatomy"], "backend": "openai"})
    assert r.status_code == 400 and "No endpoint" in r.content.decode() and 'name="path"' not in r.content.decode()
    settings.JOBS_EAGER = False
    r = admin.post(reverse("evaluation:harness_new"), {"tasks": ["cmmlu_anatomy"], "backend": "transformers",
                                                       "path": tiny_llama_path, "model_name": "tiny", "limit": "2"})
    run = EvalRun.objects.get()
    assert r.status_code == 302 and run.kind == "harness" and run.params["tasks"] == ["cmmlu_anatomy"]
    assert run.params["limit"] == 2 and run.job.kind == "evaluation.harness"
    page = client_for("curator").get(reverse("evaluation:run", args=[run.pk]))
    assert page.status_code == 200 and "lm-evaluation-harness" in page.content.decode()


def test_openai_compatible_chat_endpoint_target(task_dir, shared_data, monkeypatch):
    """The harness against an OpenAI-compatible chat endpoint (local fake server), generation task;
    MedStudio's extractor agrees with the harness on every reply."""
    import datasets

    from tests.fakes.openai_server import fake_openai_server

    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    _, test = _anatomy(shared_data)

    def reply(req):
        text = req["messages"][-1]["content"]
        r = next(r for r in test if r["question"] in text)
        return ["答案是{a}", "({a})", "**{a}**"][len(text) % 3].format(a=r["answer"])

    docs = datasets.load_from_disk(str(task_dir / "cmmlu_anatomy"))["test"]
    with fake_openai_server(chat=reply) as url:
        model, args = harness.model_for({"backend": "openai", "base_url": url, "model": "m",
                                         "harness_model": "local-chat-completions"})
        out = harness.run(tasks=[_generative_config(task_dir)], datasets_dir=task_dir, model=model, model_args=args,
                          num_fewshot=0)
    assert out["results"]["cmmlu_anatomy_gen"]["exact_match"] == 1.0
    assert _agreement(out["samples"], docs) == (N_TEST, N_TEST)
