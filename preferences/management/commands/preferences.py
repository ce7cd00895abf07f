"""Build, vote on and list preference sets from the command line, through the same services and jobs as the UI.

    python manage.py preferences build --builder objective --dataset NAME --set SETNAME
    python manage.py preferences build --builder subjective --selection NAME|#ID --set SETNAME --backend B [--judge M]
    python manage.py preferences build --builder sampled --dataset NAME --set SETNAME --judges j1,j2 [--n 4]
    python manage.py preferences build --builder from_scores --file scored.jsonl --set SETNAME [--min-gap 1.0]
    python manage.py preferences vote --set SETNAME --method judges --judges j1,j2,j3 [--backend B | --base-url URL]
    python manage.py preferences vote --set SETNAME --method reward_models [--k 10] [--base-model M]
    python manage.py preferences apply --set SETNAME --flip-frac 0.05 --drop-frac 0.1   (re-apply the latest vote)
    python manage.py preferences resume --run ID                                         (a paused/failed build)
    python manage.py preferences list

Options are read through preferences.forms.BuildForm / VoteForm, so defaults and checks are the web
form's. Jobs run in this process and the command blocks until they end; the last line is
`set: NAME (N pairs)`. Any refusal or failed run exits non-zero with the reason.
"""
from __future__ import annotations

import difflib

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import Count

from medstudio.handoffs.models import PreferenceSet, Selection
from medstudio.jobs.services import job_run_here
from preferences import services
from preferences.forms import BuildForm, VoteForm
from preferences.models import BuildRun, Origin, PairStatus, PreferencePair, RunStatus, VoteRun

# Which builders / voting methods read each option (an option given to one that ignores it is refused).
CHAT = (Origin.SUBJECTIVE, Origin.SAMPLED)
BUILD_OPTS = {
    "min_gap": (Origin.FROM_SCORES,), "mode": (Origin.FROM_SCORES,),
    "backend": CHAT, "base_url": CHAT, "generator": CHAT, "both_orders": CHAT,
    "judge": (Origin.SUBJECTIVE,), "judges": (Origin.SAMPLED,), "n": (Origin.SAMPLED,),
}
VOTE_OPTS = {
    "judges": ("judges",), "backend": ("judges",), "base_url": ("judges",),
    "k": ("reward_models",), "base_model": ("reward_models",), "epochs": ("reward_models",),
}
# Form field -> flag, for the form's error messages.
FLAGS = {"dataset": "--dataset", "selection_id": "--selection", "path": "--file", "n": "--n"}


def _flag(field: str) -> str:
    return FLAGS.get(field, "--" + field.replace("_", "-"))


def _form_errors(form) -> str:
    return "; ".join(f"{_flag(k) if k != '__all__' else 'options'}: {' '.join(v)}" for k, v in form.errors.items())


def _initial(form_cls, field: str):
    return form_cls.base_fields[field].initial


def _dataset(name: str):
    from medstudio.datasets.models import Dataset

    ds = Dataset.objects.filter(name=name).first()
    if ds is None and name.startswith("#") and name[1:].isdigit():
        ds = Dataset.objects.filter(pk=int(name[1:])).first()
    if ds is None:
        close = difflib.get_close_matches(name, list(Dataset.objects.values_list("name", flat=True)), n=3)
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else " (import it with `manage.py import_records`)"
        raise CommandError(f"No dataset named {name!r}{hint}; fix --dataset.")
    return ds


def _selection(value: str) -> Selection:
    if value.startswith("#") and value[1:].isdigit():
        sel = Selection.objects.filter(pk=int(value[1:])).first()
        if sel is None:
            raise CommandError(f"No selection {value}; fix --selection.")
    else:
        hits = list(Selection.objects.filter(name=value).order_by("id"))
        if not hits:
            raise CommandError(f"No selection named {value!r}; fix --selection (a name, or #ID).")
        ready = [s for s in hits if s.status == Selection.Status.READY]
        if len(ready) > 1:
            raise CommandError(f"{len(ready)} ready selections are named {value!r}; pick one with --selection '#ID' "
                               f"({', '.join('#' + str(s.pk) for s in ready)}).")
        sel = ready[0] if ready else hits[-1]
    if sel.status != Selection.Status.READY:
        raise CommandError(f"Selection {sel.name} (#{sel.pk}) is {sel.get_status_display().lower()}, not ready; "
                           "wait for it to finish or pick another --selection.")
    return sel


def _set(name: str) -> PreferenceSet:
    s = PreferenceSet.objects.filter(name=name).first()
    if s is None:
        close = difflib.get_close_matches(name, list(PreferenceSet.objects.values_list("name", flat=True)), n=3)
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else " (see `manage.py preferences list`)"
        raise CommandError(f"No preference set named {name!r}{hint}; fix --set.")
    return s


def _refuse_unused(opts: dict, table: dict, chosen: str, what: str) -> None:
    for key, users in table.items():
        if opts.get(key) not in (None, False) and chosen not in users:
            raise CommandError(f"{_flag(key)} is not used by the {chosen} {what} (only by {', '.join(users)}); drop it.")


def _set_line(pref_set: PreferenceSet) -> str:
    return f"set: {pref_set.name} ({PreferencePair.objects.filter(pref_set=pref_set).count()} pairs)"


def _by_origin(pref_set: PreferenceSet) -> str:
    rows = (PreferencePair.objects.filter(pref_set=pref_set).values_list("origin").annotate(n=Count("id"))
            .order_by("origin"))
    return ", ".join(f"{o} {n}" for o, n in rows) or "none"


class Command(BaseCommand):
    help = ("Preference pairs for DPO: `build` pairs into a set (objective, subjective, sampled, from_scores), "
            "`vote` on a set (judges or reward models), `apply` new flip/drop fractions, `resume` a stopped "
            "build, `list` the sets.")

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)

        b = sub.add_parser("build", help="Build pairs into a set (created if missing) and wait for the run.")
        b.add_argument("--builder", required=True, choices=Origin.values)
        b.add_argument("--set", dest="set_name", required=True, metavar="SETNAME", help="Preference set (created if missing).")
        b.add_argument("--description", default="", help="Description of a set this command creates.")
        src = b.add_mutually_exclusive_group(required=True)
        src.add_argument("--dataset", help="Source dataset, by name.")
        src.add_argument("--selection", help="Source frozen selection, by name or '#ID' (status ready).")
        src.add_argument("--file", help="Scored-answers JSONL file (from_scores only).")
        b.add_argument("--seed", type=int, default=_initial(BuildForm, "seed"),
                       help="Seed (wrong option, answer order); default %(default)s.")
        g = b.add_argument_group("from_scores")
        g.add_argument("--min-gap", type=float, default=None,
                       help=f"Minimum gap of mean scores (default {_initial(BuildForm, 'min_gap')}).")
        g.add_argument("--mode", choices=[c for c, _ in BuildForm.base_fields["mode"].choices], default=None,
                       help="best_worst (default) or all (every pair over the gap).")
        g = b.add_argument_group("subjective / sampled (chat models)")
        g.add_argument("--backend", default=None, help="A registered model backend (see `manage.py backends list`).")
        g.add_argument("--base-url", default=None, help="Or an OpenAI-compatible server URL (default MEDSTUDIO_CHAT_URL).")
        g.add_argument("--generator", default=None, help="Generator model (default: the backend's / MEDSTUDIO_CHAT_MODEL).")
        g.add_argument("--judge", default=None, help="Judge model (subjective).")
        g.add_argument("--judges", default=None, help="Judge models, comma-separated (sampled).")
        g.add_argument("--n", type=int, default=None,
                       help=f"Answers per prompt, 2-16 (sampled; default {_initial(BuildForm, 'n')}).")
        g.add_argument("--both-orders", action="store_true", default=None,
                       help="Score both answers again in the opposite order.")

        v = sub.add_parser("vote", help="Vote on a set's ordered pairs (judges or K reward models) and wait.")
        v.add_argument("--set", dest="set_name", required=True, metavar="SETNAME")
        v.add_argument("--method", required=True, choices=[m for m, _ in VoteRun.METHODS])
        v.add_argument("--flip-frac", type=float, default=_initial(VoteForm, "flip_frac"),
                       help="Share of lowest-strength pairs flipped; default %(default)s.")
        v.add_argument("--drop-frac", type=float, default=_initial(VoteForm, "drop_frac"),
                       help="Share of highest-strength pairs dropped; default %(default)s.")
        g = v.add_argument_group("judges")
        g.add_argument("--judges", default=None, help="Judge models, comma-separated (with a backend: empty = its model).")
        g.add_argument("--backend", default=None, help="A registered model backend.")
        g.add_argument("--base-url", default=None, help="Or an OpenAI-compatible server URL (default MEDSTUDIO_PREF_JUDGE_URL).")
        g = v.add_argument_group("reward_models (trains K reward models: needs torch and a GPU)")
        g.add_argument("--k", type=int, default=None, help="Reward models (default MEDSTUDIO_PREF_REWARD_K).")
        g.add_argument("--base-model", default=None, help="Reward base model (default MEDSTUDIO_PREF_REWARD_BASE).")
        g.add_argument("--epochs", type=float, default=None, help=f"Default {_initial(VoteForm, 'epochs')}.")

        a = sub.add_parser("apply", help="Re-apply flip/drop fractions to a vote (no re-voting).")
        a.add_argument("--set", dest="set_name", required=True, metavar="SETNAME")
        a.add_argument("--vote", type=int, default=None, help="Vote id (default: the set's latest finished vote).")
        a.add_argument("--flip-frac", type=float, required=True)
        a.add_argument("--drop-frac", type=float, required=True)

        r = sub.add_parser("resume", help="Resume a paused or failed build run after its last stored item.")
        r.add_argument("--run", type=int, required=True, help="Build run id (printed by `build`).")

        sub.add_parser("list", help="Preference sets with their pair counts by origin.")

    def handle(self, *args, **opts):
        getattr(self, f"_{opts['action']}")(opts)

    # ------------------------------------------------------------------------------------ build

    def _build(self, o: dict) -> None:
        builder = o["builder"]
        _refuse_unused(o, BUILD_OPTS, builder, "builder")
        dataset = _dataset(o["dataset"]) if o["dataset"] else None
        selection = _selection(o["selection"]) if o["selection"] else None
        if selection is not None:
            from medstudio.handoffs.selectors import selection_kinds

            wanted = services.BUILDER_KINDS[builder]
            kinds = selection_kinds(selection)
            if not kinds <= wanted:
                raise CommandError(f"The {builder} builder needs a {' or '.join(sorted(wanted))} dataset; selection "
                                   f"{selection.name} (#{selection.pk}) holds {', '.join(sorted(kinds - wanted))} records.")
        data = {"builder": builder, "dataset": dataset.pk if dataset else "", "seed": o["seed"],
                "selection_id": selection.pk if selection else "", "path": o["file"] or ""}
        for key in ("min_gap", "mode", "backend", "base_url", "generator", "judge", "judges", "n"):
            if o.get(key) is not None:
                data[key] = o[key]
        if o.get("both_orders"):
            data["both_orders"] = "on"
        form = BuildForm(data)
        if not form.is_valid():
            raise CommandError(_form_errors(form))
        d = form.cleaned_data
        try:
            with transaction.atomic():  # a refused build leaves no new empty set behind
                pref_set = PreferenceSet.objects.filter(name=o["set_name"]).first()
                created = pref_set is None
                if created:
                    pref_set = services.preference_set_create(user=None, name=o["set_name"], description=o["description"])
                run = services.build_start(user=None, pref_set=pref_set, builder=builder, dataset=d.get("dataset"),
                                           selection_id=d.get("selection_id"), path=(d.get("path") or "").strip(),
                                           params=form.build_params(), enqueue=False)
        except services.PreferenceError as exc:
            raise CommandError(str(exc)) from None
        source = (f"dataset {dataset.name}" if dataset else f"selection {selection.name} (#{selection.pk})" if selection
                  else f"file {o['file']}")
        self.stdout.write(f"{'Created' if created else 'Using'} set {pref_set.name}; run {run.pk}: {builder} on {source} "
                          f"(job {run.job_id})")
        earlier = BuildRun.objects.filter(pref_set=pref_set, builder=builder, dataset=run.dataset_id,
                                          selection=run.selection_id, path=run.path).exclude(pk=run.pk)
        if earlier.exists():
            self.stdout.write(f"note: runs {', '.join('#' + str(r) for r in earlier.values_list('pk', flat=True))} "
                              f"already built {builder} pairs from this source into {pref_set.name}; this run adds its own.")
        self._run_build(run)

    def _run_build(self, run: BuildRun) -> None:
        job_run_here(job_id=run.job_id)
        run.refresh_from_db()
        self.stdout.write(f"run {run.pk} {run.status}: {run.n_pairs} pair(s) built, "
                          f"{run.n_ties} tie(s) kept apart, {run.n_failed} failed, of {run.n_done} item(s)")
        by_origin = (PreferencePair.objects.filter(run=run).values_list("origin").annotate(n=Count("id")).order_by("origin"))
        self.stdout.write("this run by origin: " + (", ".join(f"{o} {n}" for o, n in by_origin) or "none"))
        self.stdout.write(f"set by origin: {_by_origin(run.pref_set)}")
        if run.usage.get("calls"):
            self.stdout.write(f"usage: {run.usage.get('calls')} call(s), {run.usage.get('prompt_tokens', 0)}+"
                              f"{run.usage.get('completion_tokens', 0)} tokens, ${run.cost_usd:.4f}")
        for f in run.failures.order_by("id")[:5]:
            self.stdout.write(f"  failed item {f.item_key}: {f.reason[:200]}")
        if run.n_failed > 5:
            self.stdout.write(f"  ... {run.n_failed - 5} more failure(s) on the run page")
        if run.status != RunStatus.DONE:
            error = run.error or (run.job.error if run.job_id else "") or "no reason recorded"
            hint = (f"\nFix the cause, then `manage.py preferences resume --run {run.pk}`."
                    if run.status in (RunStatus.PAUSED, RunStatus.FAILED) else "")
            raise CommandError(f"run {run.pk} {run.status}: {error}{hint}")
        self.stdout.write(_set_line(run.pref_set))

    def _resume(self, o: dict) -> None:
        run = BuildRun.objects.filter(pk=o["run"]).select_related("pref_set").first()
        if run is None:
            raise CommandError(f"No build run #{o['run']}; fix --run.")
        try:
            run = services.build_resume(user=None, run=run, enqueue=False)
        except services.PreferenceError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"run {run.pk}: resuming {run.builder} after item {run.after} (job {run.job_id})")
        self._run_build(run)

    # ------------------------------------------------------------------------------------- vote

    def _vote(self, o: dict) -> None:
        method = o["method"]
        _refuse_unused(o, VOTE_OPTS, method, "voting method")
        pref_set = _set(o["set_name"])
        data = {"method": method, "flip_frac": o["flip_frac"], "drop_frac": o["drop_frac"],
                "epochs": o["epochs"] if o["epochs"] is not None else _initial(VoteForm, "epochs")}
        for key in ("k", "base_model", "judges", "backend", "base_url"):
            if o.get(key) is not None:
                data[key] = o[key]
        form = VoteForm(data)
        if not form.is_valid():
            raise CommandError(_form_errors(form))
        d = form.cleaned_data
        try:
            vote = services.vote_start(user=None, pref_set=pref_set, method=method, params=form.vote_params(),
                                       flip_frac=d["flip_frac"], drop_frac=d["drop_frac"], enqueue=False)
        except services.PreferenceError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"vote {vote.pk}: {method} on {pref_set.name} (job {vote.job_id})")
        job_run_here(job_id=vote.job_id)
        vote.refresh_from_db()
        if vote.status != RunStatus.DONE:
            error = vote.error or (vote.job.error if vote.job_id else "") or "no reason recorded"
            raise CommandError(f"vote {vote.pk} {vote.status}: {error}")
        self._vote_summary(vote)

    def _apply(self, o: dict) -> None:
        pref_set = _set(o["set_name"])
        if o["vote"] is not None:
            vote = VoteRun.objects.filter(pk=o["vote"], pref_set=pref_set).first()
            if vote is None:
                raise CommandError(f"No vote #{o['vote']} on set {pref_set.name}; fix --vote.")
        else:
            vote = VoteRun.objects.filter(pref_set=pref_set, status=RunStatus.DONE).order_by("-created_at", "-id").first()
            if vote is None:
                raise CommandError(f"Set {pref_set.name} has no finished vote; run `preferences vote` first.")
        try:
            vote = services.vote_apply(user=None, vote=vote, flip_frac=o["flip_frac"], drop_frac=o["drop_frac"])
        except services.PreferenceError as exc:
            raise CommandError(str(exc)) from None
        self._vote_summary(vote)

    def _vote_summary(self, vote: VoteRun) -> None:
        s = vote.summary or {}
        counts = s.get("counts", {})
        self.stdout.write(f"vote {vote.pk} done: {s.get('n', 0)} pair(s) scored by {s.get('k', 0)} voter(s); "
                          + ", ".join(f"{k} {counts.get(k, 0)}" for k in ("keep", "flip", "drop", "unscored"))
                          + f" (flip {vote.flip_frac:g}, drop {vote.drop_frac:g})")
        if vote.usage.get("calls"):
            self.stdout.write(f"usage: {vote.usage.get('calls')} call(s), ${vote.cost_usd:.4f}")
        self.stdout.write(_set_line(vote.pref_set))

    # ------------------------------------------------------------------------------------- list

    def _list(self, o: dict) -> None:
        by: dict[int, dict[str, int]] = {}
        for set_id, origin, n in (PreferencePair.objects.values_list("pref_set_id", "origin").annotate(n=Count("id"))
                                  .order_by()):
            by.setdefault(set_id, {})[origin] = n
        ties = dict(PreferencePair.objects.filter(status=PairStatus.TIE).values_list("pref_set_id").annotate(n=Count("id"))
                    .order_by())
        rows = list(PreferenceSet.objects.order_by("name"))
        if not rows:
            self.stdout.write("No preference sets (create one with `preferences build ... --set NAME`).")
            return
        for s in rows:
            counts = by.get(s.pk, {})
            origins = ", ".join(f"{k} {counts[k]}" for k in sorted(counts)) or "no pairs"
            self.stdout.write(f"{s.name}\t{sum(counts.values())} pairs\t{ties.get(s.pk, 0)} ties\t{origins}")
