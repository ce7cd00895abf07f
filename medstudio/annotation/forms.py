"""The "new labelling queue" form: the sampling method decides which fields appear (HTMX swap),
and the dataset decides which questions, selections and scorer runs are offered (issue 18.4)."""
from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model
from django.utils.translation import gettext_lazy as _

from medstudio.accounts.permissions import Role

from . import services
from .models import Question

# Fields each sampling method has; the others are left out of the form.
METHOD_FIELDS = {
    "all": ("n",),
    "random": ("n", "seed"),
    "stratified": ("n", "seed", "field"),
    "threshold": ("n", "threshold"),
}
METHOD_LABELS = {"all": _("every record"), "random": _("random sample"), "stratified": _("stratified sample"),
                 "threshold": _("near a score threshold")}


class QueueForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=200)
    dataset = forms.ModelChoiceField(queryset=None, label=_("Dataset"))
    question = forms.ModelChoiceField(queryset=None, label=_("Question"),
                                      help_text=_("Only questions that fit the dataset's records are listed."))
    selection = forms.TypedChoiceField(required=False, coerce=int, empty_value=None, label=_("From a selection"),
                                       help_text=_("Optional: only its records in this dataset."))
    method = forms.ChoiceField(label=_("Sample"), choices=[(m, METHOD_LABELS.get(m, m)) for m in services.SAMPLE_METHODS])
    n = forms.IntegerField(required=False, min_value=1, label=_("Number of items"))
    seed = forms.IntegerField(required=False, initial=0, label=_("Seed"))
    field = forms.CharField(required=False, initial="subset", label=_("Stratify by"),
                            help_text=_("subset, lang, source or meta.<field>"))
    threshold = forms.FloatField(required=False, label=_("Threshold"),
                                 widget=forms.NumberInput(attrs={"step": "any"}),
                                 help_text=_("Items whose score in the scorer run below lies closest to this."))
    annotators_per_item = forms.IntegerField(initial=2, required=False, min_value=1, max_value=20, label=_("Annotators per item"))
    assignees = forms.ModelMultipleChoiceField(queryset=None, required=False, label=_("Clinicians"),
                                               help_text=_("None selected = every clinician."),
                                               widget=forms.SelectMultiple(attrs={"size": 6}))
    suggestion_run = forms.ModelChoiceField(queryset=None, required=False, label=_("Scorer run"),
                                            help_text=_("Runs on this dataset only."))
    show_suggestion = forms.BooleanField(required=False, label=_("Show its value as a pre-filled suggestion"),
                                         help_text=_("Off: hidden, compared afterwards."))
    consensus_threshold = forms.FloatField(initial=2.0, required=False, min_value=0, label=_("Consensus threshold"),
                                           widget=forms.NumberInput(attrs={"step": "0.5"}),
                                           help_text=_("Ratings this far apart are set aside for adjudication."))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from medstudio.datasets.models import Dataset
        from medstudio.handoffs.models import ScorerRun, Selection

        src = self.data if self.is_bound else self.initial
        method = src.get("method") or "all"
        self.chosen_method = method if method in METHOD_FIELDS else "all"
        self.fields["dataset"].queryset = Dataset.objects.order_by("name")
        self.fields["dataset"].label_from_instance = lambda d: f"{d.name} ({d.kind}, {d.n_records:,})"
        dataset = Dataset.objects.filter(pk=src.get("dataset")).first() if str(src.get("dataset") or "").isdigit() else None
        if dataset is None and not self.is_bound:
            dataset = self.fields["dataset"].queryset.first()
            if dataset is not None:
                self.initial.setdefault("dataset", dataset.pk)
        self.chosen_dataset = dataset
        questions = Question.objects.order_by("-id")
        if dataset is not None:
            # A question of a kind with a fixed record kind (turn ratings: dialogues; preferences: pairs)
            # is offered only for datasets of that kind.
            unfit = [k for k, allowed in services.COMPATIBLE.items() if dataset.kind not in allowed]
            questions = questions.exclude(kind__in=unfit)
        self.fields["question"].queryset = questions
        if dataset is not None:
            self.fields["question"].error_messages["invalid_choice"] = (
                _("This question does not fit %(kind)s records: choose one from the list.") % {"kind": dataset.kind})
        sels = Selection.objects.filter(status="ready")
        if dataset is not None:
            from django.db.models import Q

            # Selections that draw from this dataset (older ones without their datasets recorded: by their records).
            sels = sels.filter(Q(datasets=dataset) | Q(datasets__isnull=True, items__record__dataset=dataset)).distinct()
        else:
            sels = sels.none()
        self.fields["selection"].choices = [("", _("whole dataset"))] + [
            (s.pk, f"{s.name} · {s.n_records:,}") for s in sels.order_by("name")[:200]]
        runs = ScorerRun.objects.filter(dataset=dataset) if dataset is not None else ScorerRun.objects.none()
        self.fields["suggestion_run"].queryset = runs.order_by("-pk")
        self.fields["suggestion_run"].label_from_instance = lambda r: f"{r.scorer} v{r.version} #{r.pk} ({r.status})"
        self.fields["assignees"].queryset = get_user_model().objects.filter(is_active=True, role=Role.CLINICIAN).order_by("username")
        self.fields["assignees"].label_from_instance = lambda u: u.username
        if self.chosen_method == "threshold":
            self.fields["threshold"].required = True
            self.fields["suggestion_run"].required = True
            self.fields["suggestion_run"].help_text = _("The run whose scores the threshold applies to (this dataset's runs).")
        if self.chosen_method == "all":
            self.fields["n"].help_text = _("Blank = all.")
        keep = set(METHOD_FIELDS[self.chosen_method])
        for name in {f for fs in METHOD_FIELDS.values() for f in fs} - keep:
            del self.fields[name]

    def method_fields(self):
        """The chosen method's own fields: the page swaps only these when the method changes."""
        names = {f for fs in METHOD_FIELDS.values() for f in fs}
        return [self[n] for n in self.fields if n in names]

    def queue_kwargs(self) -> dict:
        d = self.cleaned_data
        from medstudio.handoffs.models import Selection

        return {
            "name": d["name"], "dataset": d["dataset"], "question": d["question"],
            "annotators_per_item": d.get("annotators_per_item") or 2, "assignees": d.get("assignees") or [],
            "method": d["method"], "n": d.get("n"), "seed": d.get("seed") or 0, "field": (d.get("field") or "").strip(),
            "threshold": d.get("threshold"), "suggestion_run": d.get("suggestion_run"),
            "show_suggestion": bool(d.get("show_suggestion")), "consensus_threshold": 2.0 if d.get("consensus_threshold") is None else d["consensus_threshold"],
            "selection": Selection.objects.filter(pk=d["selection"]).first() if d.get("selection") else None,
        }

    def attach_error(self, message: str) -> None:
        low = message.lower()
        for needle, field in (("number of items", "n"), ("stratify", "field"), ("scorer run", "suggestion_run"),
                              ("question needs", "question"), ("annotators", "annotators_per_item"), ("name", "name"),
                              ("no records", "selection" if self.cleaned_data.get("selection") else "dataset")):
            if needle in low and field in self.fields:
                self.add_error(field, message)
                return
        self.add_error(None, message)
