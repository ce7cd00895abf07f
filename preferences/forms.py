from __future__ import annotations

from django import forms

from medstudio.backends.forms import EndpointField, backend_choice_field, fill_backend_choices

from .models import Origin


def backend_field() -> forms.ChoiceField:
    """A registry backend to send this job's chat calls to; choices are filled per form instance."""
    return backend_choice_field(help_text="A chat server an admin registered (models below run on it; empty = its model).")


class BackendChoiceMixin:
    """Fills the `backend` choices and refuses a backend together with an explicit base URL."""

    def _set_backend_choices(self) -> None:
        fill_backend_choices(self, "backend")

    def clean(self):
        d = super().clean()
        if d.get("backend") and (d.get("base_url") or "").strip():
            self.add_error("base_url", "Pick a registered backend or give a base URL, not both.")
        return d


class SetForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))


class BuildForm(BackendChoiceMixin, forms.Form):
    builder = forms.ChoiceField(choices=Origin.choices)
    dataset = forms.ModelChoiceField(queryset=None, required=False, help_text="Source records.")
    selection_id = forms.IntegerField(required=False, min_value=1, help_text="Or a curation selection id.")
    path = forms.CharField(required=False, max_length=500, help_text="Or a scored-answers JSONL file (from scores only).")
    seed = forms.IntegerField(initial=0)
    # from scores
    min_gap = forms.FloatField(initial=1.0, required=False, help_text="Minimum gap of mean scores.")
    mode = forms.ChoiceField(choices=[("best_worst", "best vs worst"), ("all", "every pair over the gap")], required=False)
    # LLM builders
    backend = backend_field()
    base_url = EndpointField(required=False, help_text="OpenAI-compatible server; empty = MEDSTUDIO_CHAT_URL.")
    generator = forms.CharField(required=False, help_text="Generator model; empty = MEDSTUDIO_CHAT_MODEL.")
    judge = forms.CharField(required=False, help_text="Judge model (subjective).")
    judges = forms.CharField(required=False, help_text="Judge models, comma-separated (sampled).")
    n = forms.IntegerField(initial=4, min_value=2, max_value=16, required=False, help_text="Answers per prompt (sampled).")
    both_orders = forms.BooleanField(required=False, help_text="Score both answers again in the opposite order.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from medstudio.datasets.models import Dataset

        self.fields["dataset"].queryset = Dataset.objects.order_by("name")
        self._set_backend_choices()

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


class VoteForm(BackendChoiceMixin, forms.Form):
    method = forms.ChoiceField(choices=[("reward_models", "K trained reward models"), ("judges", "K judges' scores")])
    k = forms.IntegerField(required=False, min_value=1, max_value=32, help_text="Reward models (empty = setting).")
    base_model = forms.CharField(required=False, help_text="Reward base model (empty = MEDSTUDIO_PREF_REWARD_BASE).")
    epochs = forms.FloatField(initial=1.0, min_value=0.01)
    judges = forms.CharField(required=False, help_text="Judge models, comma-separated (with a backend: empty = its model).")
    backend = backend_field()
    base_url = EndpointField(required=False)
    flip_frac = forms.FloatField(initial=0.1, min_value=0, max_value=1)
    drop_frac = forms.FloatField(initial=0.1, min_value=0, max_value=1)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
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
    n = forms.IntegerField(required=False, min_value=1, help_text="Pairs to sample (empty = all).")
    seed = forms.IntegerField(initial=0)
    origin = forms.ChoiceField(choices=[("", "any origin"), *Origin.choices], required=False)
    annotators_per_item = forms.IntegerField(initial=1, min_value=1, max_value=20)
    include_ties = forms.BooleanField(required=False, initial=True)


class DiversifyForm(BackendChoiceMixin, forms.Form):
    seeds = forms.CharField(widget=forms.Textarea(attrs={"rows": 6}), help_text="Seed instructions, one per line.")
    source = forms.ModelChoiceField(queryset=None, required=False, help_text="SFT dataset that receives the instructions.")
    output_name = forms.CharField(required=False, max_length=200, help_text="Name of the new dataset.")
    rounds = forms.IntegerField(initial=10, min_value=1, max_value=1000)
    m = forms.IntegerField(initial=20, min_value=1, help_text="Keep the oldest m per bank.")
    n = forms.IntegerField(initial=40, min_value=1, help_text="Keep the newest n per bank.")
    k = forms.IntegerField(initial=3, min_value=0, help_text="Swap banks every k rounds (0 = never).")
    seed = forms.IntegerField(initial=0)
    backend = backend_field()
    base_url = EndpointField(required=False)
    model = forms.CharField(required=False, help_text="Empty = the backend's model, else MEDSTUDIO_CHAT_MODEL.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from medstudio.datasets.models import Dataset

        self.fields["source"].queryset = Dataset.objects.filter(kind__in=["qa", "dialogue"]).order_by("name")
        self._set_backend_choices()
