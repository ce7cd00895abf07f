"""The "Run scorer" form: a scorer select filtered to the dataset's kind, then the chosen scorer's
own settings as typed fields (number inputs with their range and default, selects, checkboxes),
built from the `Param`s declared beside its registration. An "advanced JSON" field may still
override or add settings. Platform code: it lists scorers from the registry, never a stage.
"""
from __future__ import annotations

import json
from typing import Any

from django import forms
from django.utils.translation import gettext, gettext_lazy as _

from .scorers import Param, scorer_params, scorers

PREFIX = "p_"


def _choices(param: Param, dataset) -> list:
    choices = param.choices(dataset) if callable(param.choices) else param.choices
    return [(c, c) if not isinstance(c, (tuple, list)) else tuple(c) for c in choices]


def _number_attrs(param: Param) -> dict:
    attrs = {}
    for key in ("min", "max", "step"):
        if getattr(param, key) is not None:
            attrs[key] = getattr(param, key)
    if "step" not in attrs and param.type == "float":
        attrs["step"] = "any"
    return attrs


def param_field(param: Param, dataset) -> forms.Field:
    """One form field for one declared setting."""
    label = param.label or param.name.replace("_", " ")
    help_text = param.help
    if param.setting:
        help_text = f"{help_text} " if help_text else ""
        help_text += gettext("Empty: the setting %(setting)s.") % {"setting": param.setting}
    common = {"label": label, "help_text": help_text, "initial": param.default}
    t = param.type
    if t == "int":
        return forms.IntegerField(required=False, min_value=param.min, max_value=param.max,
                                  widget=forms.NumberInput(attrs=_number_attrs(param)), **common)
    if t == "float":
        return forms.FloatField(required=False, min_value=param.min, max_value=param.max,
                                widget=forms.NumberInput(attrs=_number_attrs(param)), **common)
    if t == "bool":
        return forms.BooleanField(required=False, **common)
    if t == "choice":
        return forms.ChoiceField(required=False, choices=_choices(param, dataset), **common)
    if t == "multi":
        return forms.MultipleChoiceField(required=False, choices=_choices(param, dataset),
                                         widget=forms.CheckboxSelectMultiple, **common)
    if t == "datasets":
        from medstudio.datasets.models import Dataset

        qs = Dataset.objects.order_by("name")
        if param.benchmarks_only:
            qs = qs.filter(is_benchmark=True)
        if dataset is not None:
            qs = qs.exclude(pk=dataset.pk)
        return forms.MultipleChoiceField(required=False, choices=[(d.name, f"{d.name} ({d.kind}, {d.n_records})") for d in qs],
                                         widget=forms.SelectMultiple(attrs={"size": 4}), **common)
    if t == "scorer_run":
        from .models import ScorerRun

        qs = ScorerRun.objects.filter(dataset=dataset, status="succeeded") if dataset is not None else ScorerRun.objects.none()
        return forms.TypedChoiceField(required=False, coerce=int, empty_value=None,
                                      choices=[("", "—")] + [(r.pk, f"{r.scorer} #{r.pk}") for r in qs.order_by("-pk")[:100]],
                                      **common)
    if t == "backend":
        from medstudio.backends.forms import BLANK, INVALID
        from medstudio.backends.selectors import backend_choices

        return forms.ChoiceField(required=False, choices=backend_choices(blank=BLANK),
                                 error_messages={"invalid_choice": INVALID}, **common)
    placeholder = {"placeholder": str(param.default)} if param.default not in (None, "") else {}
    return forms.CharField(required=False, widget=forms.TextInput(attrs=placeholder), **common)


class ScorerRunForm(forms.Form):
    scorer = forms.ChoiceField(label=_("Scorer"))
    shards = forms.IntegerField(label=_("Shards"), initial=1, required=False, min_value=1, max_value=64,
                                help_text=_("Parallel jobs over id ranges (per-record scorers)."))
    params_json = forms.CharField(
        label=_("Advanced: settings as JSON"), required=False, widget=forms.Textarea(attrs={"rows": 2}),
        help_text=_("Optional. A JSON object merged over the fields above (for settings without a field)."))

    def __init__(self, *args, dataset=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.dataset = dataset
        specs = [s for s in scorers().values() if dataset is None or not s.kinds or dataset.kind in s.kinds]
        self.fields["scorer"].choices = [(s.name, s.name) for s in specs]
        self.descriptions = {s.name: s.description for s in specs}
        src = self.data if self.is_bound else self.initial
        first = "rules" if "rules" in self.descriptions else (specs[0].name if specs else "")  # the usual first pass
        name = src.get("scorer") or first
        self.scorer_name = name if name in self.descriptions else first
        if not self.is_bound:
            self.initial.setdefault("scorer", self.scorer_name)
        self.params = scorer_params(self.scorer_name)
        mode_param = next((p for p in self.params if p.name == "mode"), None)
        mode = (src.get(PREFIX + "mode") or (mode_param.default if mode_param else "")) if mode_param else ""
        self.mode = mode
        self.shown = [p for p in self.params if not p.modes or mode in p.modes]
        for p in self.shown:
            self.fields[PREFIX + p.name] = param_field(p, dataset)
        self.has_mode = mode_param is not None

    @classmethod
    def initial_from(cls, query, *, dataset=None) -> "ScorerRunForm":
        """An unbound form showing what a GET (an HTMX swap after a scorer or mode change) carried."""
        form = cls(initial={k: query.get(k) for k in query}, dataset=dataset)
        for name, field in form.fields.items():
            if isinstance(field, forms.MultipleChoiceField) and name in query:
                form.initial[name] = query.getlist(name)
        return form

    def attach_error(self, message: str) -> None:
        """A pre-launch refusal, shown on the field whose setting or name it mentions, else on the form."""
        for p in self.shown:
            if (p.setting and p.setting in message) or f"{p.name} " in message or f"{p.name}:" in message:
                self.add_error(PREFIX + p.name, message)
                return
        self.add_error(None, message)

    @property
    def description(self) -> str:
        return self.descriptions.get(self.scorer_name, "")

    def param_fields(self):
        return [self[PREFIX + p.name] for p in self.shown]

    def clean_params_json(self) -> dict:
        # "params" is the older name of this field (scripts and API clients post it).
        raw = (self.cleaned_data.get("params_json") or self.data.get("params") or "").strip()
        if not raw:
            return {}
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise forms.ValidationError(gettext("Not valid JSON: %(error)s") % {"error": exc}) from None
        if not isinstance(value, dict):
            raise forms.ValidationError(gettext("Give a JSON object, e.g. {\"threshold\": 0.7}."))
        return value

    def scorer_settings(self) -> dict[str, Any]:
        """The params dict the scorer gets: every typed field that has a value, then the JSON override."""
        d = self.cleaned_data
        out: dict[str, Any] = {}
        for p in self.shown:
            v = d.get(PREFIX + p.name)
            if p.type == "bool":
                out[p.name] = bool(v)
            elif p.type in ("multi", "datasets"):
                if v:  # nothing ticked: the block's own default
                    out[p.name] = list(v)
            elif v not in (None, ""):
                out[p.name] = v.strip() if isinstance(v, str) else v
        out.update(d.get("params_json") or {})
        return out
