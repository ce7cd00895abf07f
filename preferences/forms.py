from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _, gettext_noop

from medstudio.backends.forms import EndpointField, backend_choice_field, fill_backend_choices

from .models import Origin


# The model choice labels of preferences/models.py (kept plain there: no migration) as catalogue msgids:
# forms translate them with _(), templates with the choice_word filter.
CHOICE_WORDS = (
    gettext_noop("Subjective (LLM answer vs existing, judged)"), gettext_noop("Objective (MCQ truth vs wrong option)"),
    gettext_noop("Sampled (N answers, K judges vote)"), gettext_noop("From existing scores"),
    gettext_noop("Ordered"), gettext_noop("Tie (kept apart)"),
    gettext_noop("Not voted"), gettext_noop("Kept"), gettext_noop("Flipped (lowest strength)"),
    gettext_noop("Dropped (highest strength)"), gettext_noop("No vote"),
    gettext_noop("Not reviewed"), gettext_noop("Clinician agrees"), gettext_noop("Clinician prefers the rejected answer"),
    gettext_noop("Clinician: tie"),
    gettext_noop("K trained reward models"), gettext_noop("K judges' scores"),
)


def backend_field() -> forms.ChoiceField:
    """A registry backend to send this job's chat calls to; choices are filled per form instance."""
    return backend_choice_field(help_text=_("A chat server an admin registered (models below run on it; empty = its model)."))


class BackendChoiceMixin:
    """Fills the `backend` choices and refuses a backend together with an explicit base URL."""

    def _set_backend_choices(self) -> None:
        fill_backend_choices(self, "backend")

    def clean(self):
        d = super().clean()
        if d.get("backend") and (d.get("base_url") or "").strip():
            self.add_error("base_url", _("Pick a registered backend or give a base URL, not both."))
        return d


class SetForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))


class FittingDatasetField(forms.ModelChoiceField):
    """A dataset among those that fit; one that exists but does not fit is named in the error."""

    builder, wanted = "", ""

    def to_python(self, value):
        try:
            return super().to_python(value)
        except forms.ValidationError:
            from medstudio.datasets.models import Dataset

            ds = Dataset.objects.filter(pk=value).first() if str(value).isdigit() else None
            if ds is None:
                raise
            raise forms.ValidationError(_("The %(builder)s builder needs a %(wanted)s dataset; %(name)s holds %(kind)s records.")
                                        % {"builder": self.builder, "wanted": self.wanted, "name": ds.name, "kind": ds.kind},
                                        code="invalid_choice") from None


# Fields each builder has besides the source (dataset or selection) and the seed; the form shows
# only the chosen builder's (issue 18.4).
BUILDER_FIELDS = {
    Origin.SUBJECTIVE: ("backend", "base_url", "generator", "judge", "both_orders"),
    Origin.OBJECTIVE: (),
    Origin.SAMPLED: ("backend", "base_url", "generator", "judges", "n", "both_orders"),
    Origin.FROM_SCORES: ("path", "min_gap", "mode"),
}


class ModeFieldsMixin:
    """Splits a form into what its mode select changes and what it does not: the page swaps only the
    mode's fieldset (hx-select), so a field typed in the common part while the swap is in flight keeps
    its value."""

    MODE_FIELD = ""
    COMMON: tuple[str, ...] = ()

    def mode_fields(self):
        return [self[n] for n in self.fields if n != self.MODE_FIELD and n not in self.COMMON]

    def common_fields(self):
        return [self[n] for n in self.fields if n in self.COMMON]


class BuildForm(ModeFieldsMixin, BackendChoiceMixin, forms.Form):
    MODE_FIELD, COMMON = "builder", ("seed",)

    builder = forms.ChoiceField(label=_("Builder"), choices=[(v, _(label)) for v, label in Origin.choices])
    dataset = FittingDatasetField(queryset=None, required=False, label=_("Dataset"),
                                  help_text=_("Source records; only datasets this builder reads are listed."))
    selection_id = forms.TypedChoiceField(required=False, coerce=int, empty_value=None, label=_("Or a selection"),
                                          help_text=_("A ready curation selection of records this builder reads."))
    path = forms.CharField(required=False, max_length=500, label=_("Or a file"),
                           help_text=_("A scored-answers JSONL file on the server."))
    seed = forms.IntegerField(initial=0, label=_("Seed"))
    # from scores
    min_gap = forms.FloatField(initial=1.0, required=False, min_value=0, label=_("Minimum gap"),
                               widget=forms.NumberInput(attrs={"step": "0.1"}), help_text=_("Minimum gap of mean scores."))
    mode = forms.ChoiceField(choices=[("best_worst", _("best vs worst")), ("all", _("every pair over the gap"))], required=False,
                             label=_("Pairs"))
    # LLM builders
    backend = backend_field()
    base_url = EndpointField(required=False, label=_("Base URL"), help_text=_("OpenAI-compatible server; empty = MEDSTUDIO_CHAT_URL."))
    generator = forms.CharField(required=False, label=_("Generator model"), help_text=_("Empty = MEDSTUDIO_CHAT_MODEL."))
    judge = forms.CharField(required=False, label=_("Judge model"))
    judges = forms.CharField(required=False, label=_("Judge models"), help_text=_("Comma-separated."))
    n = forms.IntegerField(initial=4, min_value=2, max_value=16, required=False, label=_("Answers per prompt"))
    both_orders = forms.BooleanField(required=False, label=_("Both orders"),
                                     help_text=_("Score both answers again in the opposite order."))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from medstudio.datasets.models import Dataset
        from medstudio.handoffs.models import Selection

        from .services import BUILDER_KINDS

        src = self.data if self.is_bound else self.initial
        builder = src.get("builder") or Origin.values[0]
        self.chosen_builder = builder if builder in BUILDER_FIELDS else Origin.values[0]
        kinds = BUILDER_KINDS[self.chosen_builder]
        self.fields["dataset"].queryset = Dataset.objects.filter(kind__in=kinds, helper_role="").order_by("name")
        self.fields["dataset"].label_from_instance = lambda d: f"{d.name} ({d.kind}, {d.n_records:,})"
        sel_choices = [("", "—")]
        for sel in Selection.objects.filter(status="ready").prefetch_related("datasets").order_by("name", "pk")[:500]:
            sel_kinds = {d.kind for d in sel.datasets.all()}
            if sel_kinds <= set(kinds):  # every record it holds is of a kind this builder reads
                sel_choices.append((sel.pk, f"{sel.name} (#{sel.pk}, {'/'.join(sorted(sel_kinds)) or '?'}, {sel.n_records:,})"))
        self.fields["selection_id"].choices = sel_choices
        wanted = " or ".join(sorted(kinds))
        self.fields["dataset"].builder, self.fields["dataset"].wanted = self.chosen_builder, wanted
        self.fields["selection_id"].error_messages["invalid_choice"] = (
            _("The %(builder)s builder reads %(wanted)s records: choose one from the list.")
            % {"builder": self.chosen_builder, "wanted": wanted})
        keep = set(BUILDER_FIELDS[self.chosen_builder])
        for name in {f for fs in BUILDER_FIELDS.values() for f in fs} - keep:
            del self.fields[name]
        if "backend" in self.fields:
            self._set_backend_choices()

    def clean(self):
        d = super().clean()
        if self.is_bound and (self.data.get("path") or "").strip() and "path" not in self.fields:
            self.add_error(None, _("Only the from-scores builder reads a file; import other data as a dataset."))
        return d

    def build_params(self) -> dict:
        d = self.cleaned_data
        params: dict = {"seed": d.get("seed") or 0}
        b = d["builder"]
        if b == Origin.FROM_SCORES:
            params["min_gap"] = d.get("min_gap") if d.get("min_gap") is not None else 1.0
            params["mode"] = d.get("mode") or "best_worst"
        if b in (Origin.SUBJECTIVE, Origin.SAMPLED):
            for k in ("backend", "base_url", "generator", "judge"):
                if d.get(k):
                    params[k] = d[k].strip()
            params["both_orders"] = bool(d.get("both_orders"))
        if b == Origin.SAMPLED:
            params["n"] = d.get("n") or 4
            params["judges"] = [j.strip() for j in (d.get("judges") or "").split(",") if j.strip()]
        return params

    def attach_error(self, message: str) -> None:
        """A service refusal, on the field it is about when that is clear."""
        low = message.lower()
        for needle, field in (("judge", "judges" if "judges" in self.fields else "judge"), ("chat server", "backend"),
                              ("source", "dataset"), ("file", "path"), ("gap", "min_gap"), ("answers per prompt", "n")):
            if needle in low and field in self.fields:
                self.add_error(field, message)
                return
        self.add_error(None, message)


VOTE_FIELDS = {"reward_models": ("k", "base_model", "epochs"), "judges": ("judges", "backend", "base_url")}


class VoteForm(ModeFieldsMixin, BackendChoiceMixin, forms.Form):
    MODE_FIELD, COMMON = "method", ("flip_frac", "drop_frac")

    method = forms.ChoiceField(label=_("Voters"),
                               choices=[("reward_models", _("K trained reward models")), ("judges", _("K judges' scores"))])
    k = forms.IntegerField(required=False, min_value=1, max_value=32, label="K", help_text=_("Reward models (empty = setting)."))
    base_model = forms.CharField(required=False, label=_("Reward base model"),
                                 help_text=_("Empty = MEDSTUDIO_PREF_REWARD_BASE."))
    epochs = forms.FloatField(initial=1.0, min_value=0.01, required=False, label=_("Epochs"),
                              widget=forms.NumberInput(attrs={"step": "0.1"}))
    judges = forms.CharField(required=False, label=_("Judge models"),
                             help_text=_("Comma-separated (with a backend: empty = its model)."))
    backend = backend_field()
    base_url = EndpointField(required=False, label=_("Base URL"))
    flip_frac = forms.FloatField(initial=0.1, min_value=0, max_value=1, label=_("Flip fraction"),
                                 widget=forms.NumberInput(attrs={"step": "0.01"}))
    drop_frac = forms.FloatField(initial=0.1, min_value=0, max_value=1, label=_("Drop fraction"),
                                 widget=forms.NumberInput(attrs={"step": "0.01"}))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        src = self.data if self.is_bound else self.initial
        method = src.get("method") or "reward_models"
        self.chosen_method = method if method in VOTE_FIELDS else "reward_models"
        for name in {f for fs in VOTE_FIELDS.values() for f in fs} - set(VOTE_FIELDS[self.chosen_method]):
            del self.fields[name]
        if "backend" in self.fields:
            self._set_backend_choices()

    def vote_params(self) -> dict:
        d = self.cleaned_data
        if d["method"] == "judges":
            return {"judges": [j.strip() for j in (d.get("judges") or "").split(",") if j.strip()],
                    **{k: d[k].strip() for k in ("backend", "base_url") if d.get(k)}}
        params = {"epochs": d.get("epochs") or 1.0}
        if d.get("k"):
            params["k"] = d["k"]
        if d.get("base_model"):
            params["base_model"] = d["base_model"].strip()
        return params


class FracForm(forms.Form):
    flip_frac = forms.FloatField(min_value=0, max_value=1)
    drop_frac = forms.FloatField(min_value=0, max_value=1)


class ReviewForm(forms.Form):
    n = forms.IntegerField(required=False, min_value=1, help_text=_("Pairs to sample (empty = all)."))
    seed = forms.IntegerField(initial=0)
    origin = forms.ChoiceField(choices=[("", "any origin"), *Origin.choices], required=False)
    annotators_per_item = forms.IntegerField(initial=1, min_value=1, max_value=20)
    include_ties = forms.BooleanField(required=False, initial=True)


TARGETS = (("backend", _("a model backend an admin registered")), ("url", _("a server URL")))


class DiversifyForm(ModeFieldsMixin, BackendChoiceMixin, forms.Form):
    """SF-Med instruction diversification. Where the prompts go (a registered backend or a server URL)
    decides which fields appear; clean() checks before launch that a server and a model will be
    found and says which field or setting to fill when not."""

    MODE_FIELD = "target"
    COMMON = ("seeds", "source", "output_name", "rounds", "m", "n", "k", "seed")

    seeds = forms.CharField(label=_("Seed instructions"), widget=forms.Textarea(attrs={"rows": 6}),
                            help_text=_("Seed instructions, one per line."))
    target = forms.ChoiceField(label=_("Send the prompts to"), choices=TARGETS, required=False)
    backend = backend_field()
    base_url = EndpointField(required=False, label=_("Base URL"),
                             help_text=_("OpenAI-compatible server; empty = MEDSTUDIO_CHAT_URL."))
    model = forms.CharField(required=False, label=_("Model"),
                            help_text=_("Empty = the backend's model, else MEDSTUDIO_CHAT_MODEL."))
    source = forms.ModelChoiceField(queryset=None, required=False, label=_("Apply to a dataset"),
                                    help_text=_("SFT dataset that receives the instructions."))
    output_name = forms.CharField(required=False, max_length=200, label=_("New dataset name"),
                                  help_text=_("Name of the new dataset."))
    rounds = forms.IntegerField(initial=10, min_value=1, max_value=1000, label=_("Rounds"))
    m = forms.IntegerField(initial=20, min_value=1, label="m", help_text=_("Keep the oldest m per bank."))
    n = forms.IntegerField(initial=40, min_value=1, label="n", help_text=_("Keep the newest n per bank."))
    k = forms.IntegerField(initial=3, min_value=0, label="k", help_text=_("Swap banks every k rounds (0 = never)."))
    seed = forms.IntegerField(initial=0, label=_("Seed"))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from medstudio.backends.selectors import default_backend
        from medstudio.datasets.models import Dataset

        self.fields["source"].queryset = Dataset.objects.filter(kind__in=["qa", "dialogue"], helper_role="").order_by("name")
        self.fields["source"].label_from_instance = lambda d: f"{d.name} ({d.kind}, {d.n_records:,})"
        self._set_backend_choices()
        src = self.data if self.is_bound else self.initial
        target = src.get("target") or ""
        if target not in dict(TARGETS):  # older posts name no target: the fields they fill say which
            if src.get("backend"):
                target = "backend"
            elif src.get("base_url"):
                target = "url"
            else:
                has_backends = len(self.fields["backend"].choices) > 1
                target = "backend" if has_backends or default_backend() is not None else "url"
        self.chosen_target = target
        if not self.is_bound:
            self.initial["target"] = target
        del self.fields["base_url" if target == "backend" else "backend"]

    def clean(self):
        from medstudio.backends.selectors import default_backend

        from . import conf

        d = super().clean()
        d["target"] = self.chosen_target
        seeds = {s.strip() for s in (d.get("seeds") or "").splitlines() if s.strip()}
        if "seeds" in d and len(seeds) < 2:
            self.add_error("seeds", _("Give at least two distinct seed instructions, one per line."))
        if self.chosen_target == "backend":
            if not d.get("backend") and default_backend() is None and "backend" not in self.errors:
                self.add_error("backend", _("Choose a model backend (an admin registers them under Admin → Backends), "
                                            "or send the prompts to a server URL instead."))
        else:
            if not (d.get("base_url") or "").strip() and not conf.chat_url() and "base_url" not in self.errors:
                self.add_error("base_url", _("No server to send the prompts to: give its base URL (for example "
                                             "http://gpu1:8000/v1), or set MEDSTUDIO_CHAT_URL."))
            if not (d.get("model") or "").strip() and not conf.chat_model():
                self.add_error("model", _("No model named: type the model the server runs, or set MEDSTUDIO_CHAT_MODEL."))
        if d.get("source") is not None and not (d.get("output_name") or "").strip():
            self.add_error("output_name", _("Name the new dataset: it gets the records of %(name)s with their new "
                                            "system prompts.") % {"name": d["source"].name})
        return d
