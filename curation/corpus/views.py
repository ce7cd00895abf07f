"""Corpus pages (curators and admins): the list, and one corpus with its shards, a random sample
(re-drawn with ?seed=), its runs' aggregates and a retry of failed shards."""
from django.contrib import messages
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
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
    messages.info(request, f"Retrying {len(new.job.params['only'])} failed shard(s) (run {new.pk}).")
    return redirect("jobs:detail", pk=new.job_id)
