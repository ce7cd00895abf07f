"""Annotation views: the labelling screen (clinicians) and queue management, agreement,
consensus, judges and exports (curators). Thin: parse the request, call a service, render."""
from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST
from django.utils.translation import gettext as _, ngettext
from django.utils.translation import gettext_noop

from medstudio.accounts.permissions import Role, role_required
from medstudio.backends.selectors import backend_choices, default_label

from . import agreement as ag
from . import plots, selectors, services
from . import questions as qs
from .judges import pair_in_shown_order
from .models import Assignment, Label, Queue, QueueItem, Question, QuestionKind

# The key-hint words of questions.key_hint (a Django-free module), listed for the catalogue.
_KEY_WORDS = (gettext_noop("score"), gettext_noop("label"), gettext_noop("A, B or tie"), gettext_noop("row"),
              gettext_noop("submit"), gettext_noop("skip"), gettext_noop("undo"))

# ------------------------------------------------------------------------------ labelling screen


def _labelable_queue(request, pk: int) -> Queue:
    queue, allowed = selectors.labelling_queue(pk, request.user)
    if queue is None:
        raise Http404("No such queue.")
    if not allowed:
        raise PermissionDenied("You are not assigned to this queue (or it is closed).")
    return queue


def _opt(value, key: str, text: str, checked) -> dict:
    return {"value": value, "key": key, "text": text, "checked": str(value) == str(checked) if checked is not None else False}


def _answer_rows(question: Question, content: dict, pre: dict, swapped: bool, *, pre_is_shown: bool = False) -> list[dict]:
    """The form as rows of radio options, each option with its keyboard key (see keys.js)."""
    s = question.full_schema
    kind = question.kind
    rows: list[dict] = []
    if kind == qs.RATING:
        lo, hi = s["scale"]
        scale = range(lo, hi + 1)
        anchors = qs.anchors(s)
        rows.append({"name": "score", "title": "Overall quality", "required": True,
                     "anchors": [(v, anchors[v]) for v in scale if v in anchors],
                     "options": [{**_opt(v, str(v), str(v), pre.get("score")), "anchor": anchors.get(v, "")} for v in scale]})
        for a in s["aspects"]:
            rows.append({"name": a, "title": a.replace("_", " "), "required": s.get("aspects_required", False),
                         "options": [_opt(v, str(v), str(v), (pre.get("aspects") or {}).get(a)) for v in scale]})
    elif kind == qs.LABEL:
        rows.append({"name": "label", "title": "Domain", "required": True,
                     "options": [_opt(lab, str(i), lab, pre.get("label")) for i, lab in enumerate(s["labels"], 1)]})
    elif kind == qs.TURN_RATING:
        lo, hi = s["scale"]
        anchors = qs.anchors(s)
        turns = pre.get("turns") or []
        for i in range(1, qs.n_assistant_turns(content) + 1):
            prev = turns[i - 1] if i - 1 < len(turns) else {}
            for a in s["aspects"]:
                rows.append({"name": f"t{i}_{a}", "title": a, "turn": i, "required": True,
                             "options": [{**_opt(v, str(v), str(v), prev.get(a)), "anchor": anchors.get(v, "")}
                                         for v in range(lo, hi + 1)]})
    elif kind == qs.PREFERENCE:
        shown = lambda v: (v if pre_is_shown else qs.canonical_to_shown(v, swapped)) if v else None  # noqa: E731
        opts = lambda cur: [_opt("A", "a", "A", cur), _opt("B", "b", "B", cur), _opt("tie", "t", "Tie", cur)]  # noqa: E731
        rows.append({"name": "winner", "title": "Better answer", "required": True, "options": opts(shown(pre.get("winner")))})
        for a in s["aspects"]:
            rows.append({"name": a, "title": a, "required": s.get("aspects_required", False),
                         "options": opts(shown((pre.get("aspects") or {}).get(a)))})
    return rows


def _answer_from_post(question: Question, content: dict, post) -> dict:
    s = question.full_schema
    kind = question.kind
    if kind == qs.RATING:
        return {"score": post.get("score"), "aspects": {a: post.get(a) for a in s["aspects"]}}
    if kind == qs.LABEL:
        return {"label": post.get("label")}
    if kind == qs.TURN_RATING:
        n = qs.n_assistant_turns(content)
        return {"turns": [{a: post.get(f"t{i}_{a}") for a in s["aspects"]} for i in range(1, n + 1)]}
    if kind == qs.PREFERENCE:
        return {"winner": post.get("winner"), "aspects": {a: post.get(a) for a in s["aspects"]},
                "comment": post.get("comment", "")}
    return {"text": post.get("text", "")}


def _work_context(request, queue: Queue, assignment: Assignment | None, *, notice: str = "", error: str = "",
                  posted: dict | None = None, new_labels: int = 0) -> dict:
    ctx = {"queue": queue, "question": queue.question, "assignment": assignment, "notice": notice, "error": error,
           "progress": selectors.queue_progress(queue, request.user, new_labels=new_labels),
           "key_hints": [(k, _(what)) for k, what in qs.key_hint(queue.question.kind, queue.question.schema)],
           "remaining": _remaining_for(queue, request.user, assignment)}
    if assignment is None:
        ctx["next_queue"] = _next_queue(queue, request.user)
        return ctx
    record = assignment.item.record
    content = record.content
    pre: dict = {}
    saved = selectors.saved_values(assignment)
    if posted is not None:
        pre = posted  # a rejected answer stays on screen as typed
    elif saved is not None:
        pre = saved  # reopened by undo: show what was saved
    suggestion = assignment.item.suggestion if queue.show_suggestion else None
    if not pre and suggestion and queue.question.kind == qs.RATING and isinstance(suggestion.get("value"), (int, float)):
        lo, hi = queue.question.full_schema["scale"]
        pre = {"score": min(hi, max(lo, round(suggestion["value"])))}
    ctx.update({
        "record": record, "c": content, "kind": queue.dataset.kind, "suggestion": suggestion,
        "rows": _answer_rows(queue.question, content, pre, assignment.swapped, pre_is_shown=posted is not None),
        "text_value": (pre or {}).get("text", ""), "comment_value": (pre or {}).get("comment", ""),
        "reopened": saved is not None,
    })
    n = 0
    turns_view = []
    for t in content.get("turns") or content.get("prompt_turns") or []:
        if t.get("role") == "assistant" and "turns" in content:
            n += 1
        turns_view.append({"role": t.get("role"), "content": t.get("content", ""),
                           "n": n if t.get("role") == "assistant" and "turns" in content else None})
    ctx["turns"] = turns_view
    if suggestion and isinstance((suggestion.get("detail") or {}).get("per_turn"), list):
        per_turn = suggestion["detail"]["per_turn"]
        ctx["turn_suggestions"] = per_turn
        for row in ctx["rows"]:
            if row.get("turn"):
                row["hint"] = per_turn[row["turn"] - 1] if row["turn"] - 1 < len(per_turn) else None
    if queue.dataset.kind == "pair":
        ctx["answer_a"], ctx["answer_b"] = pair_in_shown_order(content, assignment.swapped)
    return ctx


def _remaining_for(queue: Queue, user, assignment) -> int:
    """Items this clinician can still label here: the open one plus items with a free slot they hold no slot of."""
    mine = Assignment.objects.filter(queue=queue, annotator=services.annotator_key(user)).values("item_id")
    free = Assignment.objects.filter(queue=queue, status="free").exclude(item_id__in=mine).values("item_id").distinct().count()
    return free + (1 if assignment is not None else 0)


def _next_queue(queue: Queue, user):
    """The next open queue with work left for this clinician (None when there is none)."""
    for other in selectors.queues_for_annotator(user).exclude(pk=queue.pk)[:20]:
        if _remaining_for(other, user, None) > 0:
            return other
    return None


def _render_work(request, queue, assignment, **kw):
    ctx = _work_context(request, queue, assignment, **kw)
    template = "annotation/label.html#work" if request.htmx else "annotation/label.html"
    return render(request, template, ctx)


@role_required(Role.CLINICIAN)
def home(request):
    queues = list(selectors.queues_for_annotator(request.user))
    for q in queues:
        q.progress = selectors.queue_progress(q, request.user)
    context = {"queues": queues}
    if request.user.has_role(Role.CURATOR):
        context["all_queues"] = Queue.objects.select_related("question", "dataset")[:100]
    return render(request, "annotation/home.html", context)


@role_required(Role.CLINICIAN)
def peek(request, pk: int):
    """The item this clinician will most likely get after the current one, rendered ahead (issue 18.5:
    the label page fetches it while they read, and shows it the moment they submit). Read only:
    nothing is claimed; the submit response still decides which item they get."""
    queue = _labelable_queue(request, pk)
    key = services.annotator_key(request.user)
    mine = Assignment.objects.filter(queue=queue, annotator=key).values("item_id")
    nxt = (Assignment.objects.select_related("item__record").filter(queue=queue, status="free")
           .exclude(item_id__in=mine).order_by("position", "id").first())
    if nxt is None or not queue.is_open:
        return HttpResponse(status=204)
    ctx = _work_context(request, queue, nxt)
    ctx["preview"] = True
    return render(request, "annotation/label.html#work", ctx)


@role_required(Role.CLINICIAN)
def label(request, pk: int):
    queue = _labelable_queue(request, pk)
    return _render_work(request, queue, services.assignment_next(queue=queue, user=request.user))


def _int(v, default=-1) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


@role_required(Role.CLINICIAN)
@require_POST
def submit(request, pk: int):
    queue = _labelable_queue(request, pk)
    aid = _int(request.POST.get("assignment"))
    assignment = selectors.own_assignment(queue, request.user, aid)
    if assignment is None:
        return _render_work(request, queue, services.assignment_next(queue=queue, user=request.user),
                            error="That item is no longer yours (released by an undo in another tab?).")
    answer = _answer_from_post(queue.question, assignment.item.record.content, request.POST)
    try:
        outcome = services.label_submit(assignment_id=aid, assignment=assignment, user=request.user, answer=answer,
                                        revision=_int(request.POST.get("revision")),
                                        duration_ms=request.POST.get("duration_ms"))
    except services.SubmitConflict as exc:
        return _render_work(request, queue, services.assignment_next(queue=queue, user=request.user), error=str(exc))
    except services.AnnotationError as exc:
        # Keep the clinician on the same item with their answer intact: nothing is lost.
        assignment.refresh_from_db()
        resp = _render_work(request, queue, assignment, error=str(exc), posted=answer)
        resp.status_code = 200 if request.htmx else 400
        return resp
    if not request.htmx:
        return redirect("annotation:label", pk=queue.pk)
    saved = outcome.status == "saved"
    notice = _("Saved.") if saved else _("Already saved (repeated submit ignored).")
    # After a fresh save this annotator has no open item left, so the next one is claimed at once.
    nxt = services.assignment_next(queue=queue, user=request.user, known_none_active=saved)
    return _render_work(request, queue, nxt, notice=notice, new_labels=int(outcome.created))


@role_required(Role.CLINICIAN)
@require_POST
def skip(request, pk: int):
    queue = _labelable_queue(request, pk)
    try:
        skipped = services.assignment_skip(assignment_id=_int(request.POST.get("assignment")), user=request.user,
                                           revision=_int(request.POST.get("revision")))
    except services.AnnotationError as exc:
        if not request.htmx:
            messages.error(request, str(exc))
            return redirect("annotation:label", pk=queue.pk)
        return _render_work(request, queue, services.assignment_next(queue=queue, user=request.user), error=str(exc))
    if not request.htmx:
        return redirect("annotation:label", pk=queue.pk)
    nxt = services.assignment_next(queue=queue, user=request.user, known_none_active=skipped)
    return _render_work(request, queue, nxt, notice="Skipped." if skipped else "")


@role_required(Role.CLINICIAN)
@require_POST
def undo(request, pk: int):
    queue = _labelable_queue(request, pk)
    reopened = services.assignment_undo(queue=queue, user=request.user)
    if not request.htmx:
        return redirect("annotation:label", pk=queue.pk)
    if reopened is None:
        return _render_work(request, queue, services.assignment_next(queue=queue, user=request.user),
                            notice="Nothing to undo.")
    return _render_work(request, queue, reopened, notice="Reopened your last item.")


# ------------------------------------------------------------------------------------ curators


@role_required(Role.CURATOR)
def question_new(request):
    error = ""
    if request.method == "POST":
        kind = request.POST.get("kind", "")
        schema = {}
        labels = [x.strip() for x in request.POST.get("labels", "").split(",") if x.strip()]
        if kind == qs.LABEL and labels:
            schema["labels"] = labels
        if request.POST.get("aspects_required"):
            schema["aspects_required"] = True
        anchors = {}
        for line in request.POST.get("anchors", "").splitlines():
            score, sep, text = line.partition(":")
            if sep and score.strip().isdigit() and text.strip():
                anchors[score.strip()] = text.strip()
            elif line.strip():
                error = f"Anchor line {line.strip()!r} is not \"score: what it means\"."
        if anchors:
            schema["anchors"] = anchors
        try:
            if error:
                raise services.AnnotationError(error)
            question = services.question_create(user=request.user, name=request.POST.get("name", ""), kind=kind,
                                                schema=schema, instructions=request.POST.get("instructions", ""))
        except services.AnnotationError as exc:
            error = str(exc)
        else:
            messages.success(request, _("Question %(name)s created.") % {"name": question.name})
            return redirect(reverse("annotation:queue_new") + f"?question={question.pk}")
    return render(request, "annotation/question_new.html", {"kinds": QuestionKind.choices, "error": error,
                                                             "post": request.POST, "starters": qs.STARTER_QUESTIONS,
                                                             "questions": Question.objects.order_by("name")[:100]})


@role_required(Role.CURATOR)
@require_POST
def question_starters(request):
    made = services.starter_questions_create(user=request.user)
    if made:
        messages.success(request, _("Created the starter questions: %(names)s.") % {"names": ", ".join(q.name for q in made)})
    else:
        messages.info(request, _("The starter questions exist already."))
    return redirect("annotation:queue_new")


@role_required(Role.CURATOR)
def queue_new(request):
    """Build a labelling queue. GET ?question= pre-selects a question; with HTMX (the dataset or the
    sampling method changed) the form comes back with only the fitting lists and that method's
    fields, keeping what was typed. A refusal re-renders the form as typed, saying what to change."""
    from .forms import QueueForm

    if request.method == "POST":
        form = QueueForm(request.POST)
        if form.is_valid():
            try:
                queue = services.queue_create(user=request.user, **form.queue_kwargs())
            except ValueError as exc:  # AnnotationError
                form.attach_error(str(exc))
            else:
                messages.success(request, ngettext("Queue %(name)s created with %(n)s item.", "Queue %(name)s created with %(n)s items.",
                                                          queue.n_items) % {"name": queue.name, "n": queue.n_items})
                return redirect("annotation:queue_detail", pk=queue.pk)
    else:
        initial = {k: v for k, v in request.GET.items() if v}
        if "assignees" in request.GET:
            initial["assignees"] = request.GET.getlist("assignees")
        form = QueueForm(initial=initial)
    context = {"form": form, "questions_exist": Question.objects.exists()}
    if request.htmx and request.method != "POST":
        return render(request, "annotation/queue_new.html#queue-form", context)
    return render(request, "annotation/queue_new.html", context, status=400 if form.errors else 200)


@role_required(Role.CURATOR)
def queue_detail(request, pk: int):
    queue = get_object_or_404(Queue.objects.select_related("question", "dataset", "suggestion_run"), pk=pk)
    from medstudio.jobs.models import Job

    context = {
        "queue": queue, "progress": selectors.queue_progress(queue), "annotators": selectors.annotator_summary(queue),
        "assignees": queue.assignees.all(), "jobs": Job.objects.filter(kind="annotation.judge", params__queue_id=queue.pk)[:20],
        "judge_url": getattr(settings, "MEDSTUDIO_CHAT_URL", ""), "judge_model": getattr(settings, "MEDSTUDIO_CHAT_MODEL", ""),
        "backends": backend_choices(), "backend_default": default_label(),
        "counts": selectors.consensus_counts(selectors.consensus_outcomes(queue)),
    }
    return render(request, "annotation/queue_detail.html", context)


@role_required(Role.CURATOR)
@require_POST
def queue_settings(request, pk: int):
    queue = get_object_or_404(Queue, pk=pk)
    p = request.POST
    try:
        services.queue_update(
            queue=queue, user=request.user,
            is_open=(p.get("is_open") == "1") if "is_open" in p else None,
            show_suggestion=(p.get("show_suggestion") == "1") if "show_suggestion" in p else None,
            consensus_threshold=float(p["consensus_threshold"]) if p.get("consensus_threshold") else None,
            consensus_judges=(p.get("consensus_judges") == "1") if "consensus_judges" in p else None)
    except ValueError as exc:
        messages.error(request, str(exc))
    return redirect("annotation:queue_detail", pk=pk)


@role_required(Role.CURATOR)
@require_POST
def judge(request, pk: int):
    queue = get_object_or_404(Queue.objects.select_related("question"), pk=pk)
    try:
        jobs = services.judge_start(queue=queue, user=request.user, backend=request.POST.get("backend", "").strip(),
                                    base_url=request.POST.get("base_url", "").strip(),
                                    model=request.POST.get("model", "").strip(), passes=_int(request.POST.get("passes"), 1),
                                    temperature=float(request.POST.get("temperature") or 0.7),
                                    api_key_env=request.POST.get("api_key_env", "").strip())
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, ngettext("Started %(n)s judge pass.", "Started %(n)s judge passes.", len(jobs)) % {"n": len(jobs)})
    return redirect("annotation:queue_detail", pk=pk)


@role_required(Role.CURATOR)
def agreement(request, pk: int):
    queue = get_object_or_404(Queue.objects.select_related("question", "suggestion_run"), pk=pk)
    runs = list(selectors.comparable_runs(queue)[:50])
    wanted = {_int(x) for x in request.GET.getlist("run")}
    chosen = [r for r in runs if r.pk in wanted]
    split = selectors.agreement_split(queue, scorer_runs=chosen)
    keys = sorted({a for s in split for a in s["all"].annotators})
    names = selectors.annotator_names(keys)
    sections = []
    for s in split:
        rep = s["all"]
        # Humans first, then judges and scorers, so the clinicians' block reads as one square.
        order = sorted(rep.annotators, key=lambda a: (not selectors.is_human(a), a))
        labels = [names.get(a, a) for a in order]
        matrix = [[None if a == b else getattr(rep.pair(a, b), "kappa", None) for b in order] for a in order]
        sections.append({
            "measure": s["measure"], "report": rep, "human": s["human"], "names": labels,
            "human_names": [names.get(a, a) for a in s["human"].annotators],
            "judges": [{"name": names.get(j["key"], j["key"]), "consensus": j["consensus"],
                        "pairs": [{"human": names.get(p.a if selectors.is_human(p.a) else p.b), "p": p} for p in j["pairs"]]}
                       for j in s["judges"]],
            "pairs": [{"a": names.get(p.a, p.a), "b": names.get(p.b, p.b), "p": p} for p in rep.pairs],
            "heatmap": plots.heatmap(labels, matrix) if rep.n_units else None,
            "heatmap_height": plots.heatmap_px(len(labels)),
        })
    outcomes = selectors.consensus_outcomes(queue)
    spreads: dict[str, int] = {}
    for o in outcomes.values():
        if o.spread is not None:
            k = f"{o.spread:g}"
            spreads[k] = spreads.get(k, 0) + 1
    spread_chart = plots.histogram(sorted(spreads.items(), key=lambda kv: float(kv[0])))
    return render(request, "annotation/agreement.html", {"queue": queue, "sections": sections, "spread_chart": spread_chart,
                                                          "runs": runs, "chosen": {r.pk for r in chosen}})


@role_required(Role.CURATOR)
def consensus(request, pk: int):
    queue = get_object_or_404(Queue.objects.select_related("question"), pk=pk)
    threshold = request.GET.get("threshold")
    try:
        t = float(threshold) if threshold else None
    except ValueError:
        t = None
    outcomes = selectors.consensus_outcomes(queue, threshold=t)
    show = request.GET.get("show", ag.DISAGREED)
    items = {it.pk: it for it in QueueItem.objects.filter(pk__in=[i for i, o in outcomes.items() if o.status == show])
             .select_related("record")[:200]}
    per_item = {}
    for item_id, annotator, values in Label.objects.filter(item_id__in=items).values_list("item_id", "annotator", "values"):
        per_item.setdefault(item_id, []).append((annotator, qs.primary_value(queue.question.kind, values)))
    names = selectors.annotator_names(list({a for v in per_item.values() for a, _ in v}))
    # Clinicians' labels decide; judges' labels are shown beside them (counted only when the queue says so).
    rows = [{"item": items[i], "outcome": outcomes[i],
             "labels": [(names.get(a, a), v) for a, v in sorted(per_item.get(i, [])) if selectors.is_human(a)],
             "judge_labels": [(names.get(a, a), v) for a, v in sorted(per_item.get(i, [])) if not selectors.is_human(a)]}
            for i in items]
    context = {"queue": queue, "rows": rows, "counts": selectors.consensus_counts(outcomes), "show": show,
               "threshold": t if t is not None else queue.consensus_threshold,
               "choices": _adjudication_choices(queue)}
    template = "annotation/consensus.html#rows" if request.htmx else "annotation/consensus.html"
    return render(request, template, context)


def _adjudication_choices(queue: Queue) -> list:
    s = queue.question.full_schema
    if queue.question.kind == qs.LABEL:
        return s["labels"]
    if queue.question.kind == qs.PREFERENCE:
        return list(qs.PREF_CANONICAL)
    if queue.question.kind in (qs.RATING, qs.TURN_RATING):
        lo, hi = s["scale"]
        return list(range(lo, hi + 1))
    return []


@role_required(Role.CURATOR)
@require_POST
def adjudicate(request, pk: int, item_id: int):
    item = get_object_or_404(QueueItem.objects.select_related("queue__question"), pk=item_id, queue_id=pk)
    if request.POST.get("clear"):
        services.adjudication_clear(item=item, user=request.user)
    else:
        try:
            services.adjudication_set(item=item, user=request.user, value=request.POST.get("value"),
                                      note=request.POST.get("note", ""))
        except services.AnnotationError as exc:
            messages.error(request, str(exc))
    return redirect(reverse("annotation:consensus", args=[pk]) + f"?show={request.POST.get('show', 'disagreed')}")


@role_required(Role.CURATOR)
def export(request, pk: int):
    queue = get_object_or_404(Queue.objects.select_related("question"), pk=pk)
    resp = StreamingHttpResponse(selectors.labels_export_lines(queue), content_type="application/x-ndjson")
    resp["Content-Disposition"] = f'attachment; filename="queue-{queue.pk}-labels.jsonl"'
    return resp

