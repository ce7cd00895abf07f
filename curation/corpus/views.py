"""Corpus pages (curators and admins): the list, and one corpus with its shards, a random sample
(re-drawn with ?seed=), its runs' aggregates and a retry of failed shards."""
from django.contrib import messages
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from medstudio.accounts.permissions import Role, role_required

from . import services
from .models import Corpus, CorpusRun


@role_required(Role.CURATOR)
@require_GET
def corpus_list(request):
    return render(request, "curation/corpus_list.html", {"corpora": Corpus.objects.all()})


@role_required(Role.CURATOR)
@require_GET
def corpus_detail(request, pk: int):
    corpus = get_object_or_404(Corpus, pk=pk)
    try:
        seed = int(request.GET.get("seed") or 0)
    except ValueError:
        seed = 0
    sample = services.random_sample(corpus=corpus, n=20, seed=seed)
    shards = Paginator(corpus.shards.all(), 100).get_page(request.GET.get("page"))
    runs = list(corpus.runs.select_related("job")[:10])
    return render(request, "curation/corpus_detail.html", {
        "corpus": corpus, "sample": sample, "seed": seed, "next_seed": seed + 1, "shards": shards, "runs": runs,
    })


@role_required(Role.CURATOR)
@require_POST
def corpus_run_retry(request, pk: int):
    run = get_object_or_404(CorpusRun, pk=pk)
    try:
        new = services.corpus_run_retry_failed(actor=request.user, run=run)
    except ValueError as exc:
        messages.error(request, str(exc))
        return redirect("curation:corpus_detail", pk=run.corpus_id)
    messages.info(request, _("Retrying %(n)s failed shard(s) (run %(run)s).") % {"n": len(new.job.params["only"]), "run": new.pk})
    return redirect("jobs:detail", pk=new.job_id)


# --- threshold studio over the newest run's score files (curation/pipeline/corpus/studio.py) ------

def _studio_conditions(data, cols: dict) -> tuple[list, dict]:
    """Form fields min.C / max.C (value columns), drop.C (keep columns), min_chars -> conditions and
    the bounds per column for the markLines. A number that is not one: ValueError naming the field."""
    from curation.pipeline.corpus.studio import Condition

    conds, bounds = [], {}
    for col in cols["values"]:
        b = {}
        for side, op in (("min", ">="), ("max", "<=")):
            raw = (data.get(f"{side}.{col}") or "").strip()
            if raw:
                try:
                    b[side] = float(raw)
                except ValueError:
                    raise ValueError(_("%(field)s: %(value)r is not a number") % {"field": f"{col} {side}", "value": raw}) from None
                conds.append(Condition(col, op, b[side]))
        bounds[col] = b
    for col in cols["keeps"]:
        if data.get(f"drop.{col}"):
            conds.append(Condition(col, "==", True))
    raw = (data.get("min_chars") or "").strip()
    if raw:
        try:
            conds.append(Condition("n_chars", ">=", float(raw)))
        except ValueError:
            raise ValueError(_("minimum characters: %(value)r is not a number") % {"value": raw}) from None
    return conds, bounds


def _studio_cards(score_dir: str, cols: dict, bounds: dict, split: str) -> list[dict]:
    from curation.pipeline.corpus.studio import histogram
    from curation.studio.charts import histogram_option

    cards = []
    for col in cols["values"]:
        hist = histogram(score_dir, col, split=split)
        b = bounds.get(col) or {}
        step = (hist["hi"] - hist["lo"]) / 200 if hist["lo"] is not None and hist["hi"] > hist["lo"] else 0.01
        cards.append({"name": col, "hist": hist, "bound": b, "step": f"{step:.6g}",
                      "chart": histogram_option(hist, b.get("min"), b.get("max"))})
    return cards


def _grouped(out: dict) -> dict:
    by_lang, by_source = {}, {}
    for b in out["by"]:
        for key, table in ((b["lang"] or "-", by_lang), (b["source"] or "-", by_source)):
            row = table.setdefault(key, {"docs": 0, "kept": 0, "kept_chars": 0, "kept_tokens": 0})
            for k in ("docs", "kept", "kept_chars"):
                row[k] += b[k]
            row["kept_tokens"] += b["kept_tokens"] or 0
    return {"by_lang": dict(sorted(by_lang.items())), "by_source": dict(sorted(by_source.items()))}


def _studio_context(request, corpus: Corpus, data) -> dict:
    from curation.pipeline.corpus.studio import StudioError, columns, counts

    from medstudio.handoffs.models import CorpusSelection

    split = data.get("split") if data.get("split") in ("lang", "source") else ""
    ctx = {"corpus": corpus, "split": split, "selections": CorpusSelection.objects.filter(corpus=corpus.name)[:20]}
    try:
        score_dir = services.corpus_score_dir(corpus)
        cols = columns(score_dir)
        conds, bounds = _studio_conditions(data, cols)
        out = counts(score_dir, conds)
        ctx.update(score_dir=score_dir, cols=cols, cards=_studio_cards(score_dir, cols, bounds, split), counts=out,
                   conditions=conds, **_grouped(out))
    except (StudioError, ValueError) as exc:
        ctx["error"] = str(exc)
    return ctx


@role_required(Role.CURATOR)
@require_GET
def corpus_studio(request, pk: int):
    corpus = get_object_or_404(Corpus, pk=pk)
    ctx = _studio_context(request, corpus, request.GET)
    ctx["data"] = request.GET
    return render(request, "curation/corpus_studio.html", ctx)


@role_required(Role.CURATOR)
@require_POST
def corpus_studio_counts(request, pk: int):
    """The HTMX live update: counts per language and source, and the histograms (out of band)."""
    corpus = get_object_or_404(Corpus, pk=pk)
    ctx = _studio_context(request, corpus, request.POST)
    return render(request, "curation/corpus_studio.html#results", {**ctx, "oob": True, "data": request.POST})


@role_required(Role.CURATOR)
@require_POST
def corpus_studio_freeze(request, pk: int):
    """Freeze what the thresholds keep, as a job (its result: the exact count and the manifest)."""
    from curation.pipeline.corpus.studio import StudioError, columns

    corpus = get_object_or_404(Corpus, pk=pk)
    try:
        cols = columns(services.corpus_score_dir(corpus))
        conds, _bounds = _studio_conditions(request.POST, cols)
        job = services.corpus_freeze_start(actor=request.user, corpus=corpus, name=request.POST.get("selection_name", ""),
                                           conditions=[[c.column, c.op, c.value] for c in conds])
    except (StudioError, ValueError) as exc:
        messages.error(request, str(exc))
        return redirect("curation:corpus_studio", pk=corpus.pk)
    messages.info(request, _("Freezing selection %(name)s (job %(job)s).") % {"name": job.params["name"], "job": job.pk})
    return redirect("jobs:detail", pk=job.pk)
