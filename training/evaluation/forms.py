from django import forms
from django.utils.translation import gettext_lazy as _

from medstudio.backends.forms import EndpointField, backend_choice_field, fill_backend_choices
from medstudio.datasets.models import Dataset

from .models import EvalKind, HitStatus

LOCAL_BACKENDS = ("transformers", "vllm")
# Fields each evaluation kind and each generation backend has; the form shows only the chosen ones (issue 18.4).
KIND_FIELDS = {
    EvalKind.MCQ: ("seeds",),
    EvalKind.CONSULTATION: ("seeds", "judge_backend", "judge_base_url", "judge_model"),
    EvalKind.MEMORIZATION: ("rouge_threshold", "cosine_threshold", "prefix_ratio", "embedding_model"),
}
BACKEND_FIELDS = {"transformers": ("model_ref", "path"), "vllm": ("model_ref", "path"),
                  "openai": ("chat_backend", "base_url", "remote_model")}


# The kinds in the reader's language (the model's own labels stay English: no migration); templates
# show a run's kind with {% translate run.get_kind_display %}, which these msgids also cover.
KIND_LABELS = {EvalKind.MCQ: _("MCQ benchmark"), EvalKind.CONSULTATION: _("Consultation (judged)"),
               EvalKind.MEMORIZATION: _("Memorisation audit"), EvalKind.HARNESS: _("lm-evaluation-harness tasks")}


class _GenerationTarget(forms.Form):
    """The model a run generates with, for the evaluation and lm-eval forms alike: a backend, then a
    registered model or a local path (local backends) or an endpoint (the form adds its own)."""

    backend = forms.ChoiceField(label=_("Generation backend"),
                                choices=[("transformers", _("transformers (local path)")), ("vllm", _("vLLM (GPU worker, local path)")),
                                         ("openai", _("OpenAI-compatible endpoint"))])
    model_ref = forms.ModelChoiceField(queryset=None, required=False, label=_("Registered model"),
                                       help_text=_("From the training registry; fills the local path (or give a path below)."))
    path = forms.CharField(required=False, label=_("Local path"), help_text=_("Local model directory (transformers / vLLM)."))


class EvalRunForm(_GenerationTarget):
    field_order = ["kind", "dataset"]  # before the target fields (a base class's fields come first)
    kind = forms.ChoiceField(label=_("Evaluation"), choices=[(k, KIND_LABELS[k]) for k in KIND_FIELDS])
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.filter(helper_role="").order_by("name"), label=_("Dataset"),
                                     help_text=_("Only datasets that fit the evaluation are listed."))
    chat_backend = backend_choice_field(
        label=_("Model backend"),
        help_text=_("A server an admin registered (endpoint model name below overrides its model)."))
    base_url = EndpointField(required=False, label=_("Base URL"),
                             help_text=_("Endpoint base URL, e.g. http://gpu1:8000/v1 (key: MEDSTUDIO_CHAT_API_KEY)."))
    remote_model = forms.CharField(required=False, label=_("Endpoint model name"))
    model_name = forms.CharField(max_length=200, required=False, label=_("Leaderboard name"),
                                 help_text=_("Label on the leaderboard (default: the registered name, path or model)."))
    seeds = forms.CharField(required=False, label=_("Seeds"), help_text=_("Comma-separated; default 0,1,2 for MCQ (mean of 3 runs)."))
    temperature = forms.FloatField(required=False, min_value=0, max_value=2, label=_("Temperature"),
                                   widget=forms.NumberInput(attrs={"step": "0.05"}))
    max_new_tokens = forms.IntegerField(required=False, min_value=1, max_value=8192, label=_("Max new tokens"))
    limit = forms.IntegerField(required=False, min_value=1, label=_("Limit"), help_text=_("Only the first N records (a quick check)."))
    judge_backend = backend_choice_field(
        label=_("Judge backend"), help_text=_("Consultation judge: a registered server (judge model below overrides its model)."))
    judge_base_url = EndpointField(required=False, label=_("Judge URL"),
                                   help_text=_("Consultation judge endpoint (default MEDSTUDIO_CHAT_URL)."))
    judge_model = forms.CharField(required=False, label=_("Judge model"))
    rouge_threshold = forms.FloatField(required=False, min_value=0, max_value=1, label=_("ROUGE-L threshold"), initial=0.8,
                                       widget=forms.NumberInput(attrs={"step": "0.05"}),
                                       help_text=_("ROUGE-L(output, suffix) above this flags a record."))
    cosine_threshold = forms.FloatField(required=False, min_value=0, max_value=1, label=_("Cosine threshold"), initial=0.8,
                                        widget=forms.NumberInput(attrs={"step": "0.05"}),
                                        help_text=_("High-risk store: cosine above this is high-risk."))
    prefix_ratio = forms.FloatField(required=False, min_value=0.05, max_value=0.95, label=_("Prefix ratio"), initial=0.5,
                                    widget=forms.NumberInput(attrs={"step": "0.05"}))
    embedding_model = forms.CharField(required=False, label=_("Embedding model"),
                                      help_text=_("High-risk store encoder (default MEDSTUDIO_EMBEDDING_MODEL)."))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from training.models import ModelRef

        from .services import KINDS_FOR

        src = self.data if self.is_bound else self.initial
        kind = src.get("kind") or EvalKind.MCQ
        self.chosen_kind = kind if kind in KIND_FIELDS else EvalKind.MCQ
        backend = src.get("backend") or "transformers"
        self.chosen_backend = backend if backend in BACKEND_FIELDS else "transformers"
        self.fields["model_ref"].queryset = ModelRef.objects.order_by("name")
        self.fields["dataset"].queryset = Dataset.objects.filter(kind__in=KINDS_FOR[self.chosen_kind], helper_role="").order_by("name")
        self.fields["dataset"].label_from_instance = lambda d: f"{d.name} ({d.kind}, {d.n_records:,})"
        wanted = " or ".join(sorted(KINDS_FOR[self.chosen_kind]))
        self.fields["dataset"].error_messages["invalid_choice"] = (
            _("a %(kind)s evaluation needs a dataset of kind %(wanted)s: choose one from the list")
            % {"kind": self.chosen_kind, "wanted": wanted})
        fill_backend_choices(self, "chat_backend", "judge_backend")
        keep = set(KIND_FIELDS[self.chosen_kind]) | set(BACKEND_FIELDS[self.chosen_backend])
        for name in {f for fs in KIND_FIELDS.values() for f in fs} | {f for fs in BACKEND_FIELDS.values() for f in fs}:
            if name not in keep:
                del self.fields[name]

    # The page swaps only these groups when the kind or the backend changes (hx-select), so a field
    # typed in the common group while the swap is in flight keeps its value.
    def kind_fields(self):
        names = {"dataset"} | {f for fs in KIND_FIELDS.values() for f in fs}
        return [self[n] for n in self.fields if n in names]

    def backend_fields(self):
        names = {f for fs in BACKEND_FIELDS.values() for f in fs}
        return [self[n] for n in self.fields if n in names]

    def common_fields(self):
        mode = {"kind", "backend", "dataset"} | {f for fs in KIND_FIELDS.values() for f in fs} | {
            f for fs in BACKEND_FIELDS.values() for f in fs}
        return [self[n] for n in self.fields if n not in mode]

    def clean(self):
        d = super().clean()
        if self.is_bound and self.data.get("chat_backend") and self.chosen_backend != "openai":
            self.add_error(None, _("A model backend is an OpenAI-compatible endpoint: choose that backend above."))
        if d.get("chat_backend"):
            if d.get("backend") != "openai":
                self.add_error("chat_backend", _("A model backend is an OpenAI-compatible endpoint: choose that backend above."))
            elif d.get("base_url"):
                self.add_error("base_url", _("Pick a registered backend or give a base URL, not both."))
        if d.get("judge_backend") and d.get("judge_base_url"):
            self.add_error("judge_base_url", _("Pick a registered judge backend or give a judge URL, not both."))
        return d

    def clean_seeds(self):
        raw = (self.cleaned_data.get("seeds") or "").strip()
        if not raw:
            return None
        try:
            return [int(s) for s in raw.replace(" ", "").split(",") if s]
        except ValueError:
            raise forms.ValidationError(_("Seeds are integers separated by commas.")) from None

    def spec_and_params(self) -> tuple[dict, dict]:
        d = self.cleaned_data
        spec = {"backend": d["backend"], "path": d.get("path") or (d["model_ref"].path if d.get("model_ref") else None),
                "base_url": d.get("base_url"), "model": d.get("remote_model"), "chat_backend": d.get("chat_backend")}
        params = {k: d.get(k) for k in ("seeds", "temperature", "max_new_tokens", "limit", "rouge_threshold",
                                         "cosine_threshold", "prefix_ratio", "embedding_model")}
        if d.get("judge_backend") or d.get("judge_base_url") or d.get("judge_model"):
            params["judge"] = {k: v for k, v in (("chat_backend", d.get("judge_backend")), ("base_url", d.get("judge_base_url")),
                                                 ("model", d.get("judge_model"))) if v}
        return spec, {k: v for k, v in params.items() if v not in (None, "")}


class HitReviewForm(forms.Form):
    status = forms.ChoiceField(choices=HitStatus.choices)


class RiskCheckForm(forms.Form):
    prompt = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}))
    threshold = forms.FloatField(required=False, min_value=0, max_value=1, help_text=_("Cosine threshold (default: the store's)."))


HARNESS_BACKEND_FIELDS = BACKEND_FIELDS  # the same targets as an evaluation run


class HarnessRunForm(_GenerationTarget):
    """An lm-eval run: curated tasks that have a local copy, and a target (a registered model, a
    local path or an endpoint). The backend decides which target fields appear (the page swaps only
    them); clean() checks before launch that the model loads or the endpoint is named, in plain words
    with the field or setting to change."""

    field_order = ["tasks"]

    tasks = forms.MultipleChoiceField(choices=(), widget=forms.CheckboxSelectMultiple, label=_("Tasks"),
                                      error_messages={"required": _("Tick at least one task.")})
    chat_backend = backend_choice_field(label=_("Model backend"), help_text=_("OpenAI-compatible endpoint registered by an admin."))
    base_url = EndpointField(required=False, label=_("Base URL"),
                             help_text=_("Endpoint base URL, e.g. http://gpu1:8000/v1 (key: MEDSTUDIO_CHAT_API_KEY)."))
    remote_model = forms.CharField(required=False, label=_("Endpoint model name"))
    model_name = forms.CharField(max_length=200, required=False, label=_("Leaderboard name"),
                                 help_text=_("Label on the leaderboard (default: the registered name, path or model)."))
    num_fewshot = forms.IntegerField(required=False, min_value=0, max_value=25, initial=0, label=_("Few-shot examples"))
    limit = forms.IntegerField(required=False, min_value=1, label=_("Limit"), help_text=_("Only the first N items per task."))

    def __init__(self, *args, tasks=(), **kwargs):
        super().__init__(*args, **kwargs)
        from training.models import ModelRef

        self.fields["tasks"].choices = [(t["name"], t["label"]) for t in tasks if t["available"]]
        src = self.data if self.is_bound else self.initial
        backend = src.get("backend") or "transformers"
        self.chosen_backend = backend if backend in HARNESS_BACKEND_FIELDS else "transformers"
        self.fields["model_ref"].queryset = ModelRef.objects.order_by("name")
        fill_backend_choices(self, "chat_backend")
        keep = set(HARNESS_BACKEND_FIELDS[self.chosen_backend])
        for name in {f for fs in HARNESS_BACKEND_FIELDS.values() for f in fs} - keep:
            del self.fields[name]

    def backend_fields(self):
        names = {f for fs in HARNESS_BACKEND_FIELDS.values() for f in fs}
        return [self[n] for n in self.fields if n in names]

    def common_fields(self):
        names = {f for fs in HARNESS_BACKEND_FIELDS.values() for f in fs} | {"tasks", "backend"}
        return [self[n] for n in self.fields if n not in names]

    def clean(self):
        from medstudio.backends.selectors import default_backend_name

        d = super().clean()
        if self.chosen_backend in ("transformers", "vllm"):
            path = (d.get("path") or "").strip() or (d["model_ref"].path if d.get("model_ref") else "")
            if not path and "path" not in self.errors:
                self.add_error("path", _("Choose a registered model or give a local model folder (Training → Models "
                                         "registers one)."))
            elif path:
                from django.utils.translation import gettext

                from training.pipeline.preflight import check_model

                problems = check_model(path, translate=gettext)  # the pipeline's problem text in the reader's language
                if problems:
                    self.add_error("path" if d.get("path") else "model_ref",
                                   _("The model %(path)s cannot be loaded: %(problems)s. Choose another registered model "
                                     "or fix the path.") % {"path": path, "problems": "; ".join(problems)})
            d["path"] = path
        else:
            named = d.get("chat_backend") or ((d.get("base_url") or "").strip() and (d.get("remote_model") or "").strip())
            if not named and not default_backend_name() and not self.errors.get("chat_backend"):
                self.add_error("base_url", _("No endpoint: choose a model backend (an admin registers them under "
                                             "Admin → Backends), or give both a base URL and the endpoint's model name."))
            if d.get("chat_backend") and (d.get("base_url") or "").strip():
                self.add_error("base_url", _("Pick a registered backend or give a base URL, not both."))
        return d

    def spec_and_params(self) -> tuple[dict, dict]:
        d = self.cleaned_data
        spec = {"backend": d["backend"], "path": d.get("path"), "base_url": d.get("base_url"),
                "model": d.get("remote_model"), "chat_backend": d.get("chat_backend")}
        return spec, {k: d.get(k) for k in ("num_fewshot", "limit") if d.get(k) not in (None, "")}

    def attach_error(self, message: str, field: str | None = None) -> None:
        """A refusal from the service, on the field it names when that field is shown."""
        if field == "path" and "path" not in self.fields:
            field = None
        self.add_error(field if field in self.fields else None, message)
