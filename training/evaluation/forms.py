from django import forms

from medstudio.backends.forms import EndpointField, backend_choice_field, fill_backend_choices
from medstudio.datasets.models import Dataset

from .models import EvalKind, HitStatus


class EvalRunForm(forms.Form):
    kind = forms.ChoiceField(choices=EvalKind.choices)
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.order_by("name"),
                                     help_text="mcq for benchmarks; qa or dialogue for consultation; training data for memorisation.")
    model_ref = forms.ModelChoiceField(queryset=None, required=False, label="Registered model",
                                       help_text="From the training registry; fills the local path (or give a path / endpoint below).")
    model_name = forms.CharField(max_length=200, required=False, help_text="Label on the leaderboard (default: the path or model).")
    backend = forms.ChoiceField(choices=[("transformers", "transformers (local path)"), ("vllm", "vLLM (GPU worker, local path)"),
                                         ("openai", "OpenAI-compatible endpoint")])
    path = forms.CharField(required=False, help_text="Local model directory (transformers / vLLM).")
    chat_backend = backend_choice_field(
        help_text="OpenAI-compatible endpoint: a server an admin registered (endpoint model name below overrides its model).")
    base_url = EndpointField(required=False, help_text="Endpoint base URL, e.g. http://gpu1:8000/v1 (key: MEDSTUDIO_CHAT_API_KEY).")
    remote_model = forms.CharField(required=False, label="Endpoint model name")
    seeds = forms.CharField(required=False, help_text="Comma-separated; default 0,1,2 for MCQ (mean of 3 runs).")
    temperature = forms.FloatField(required=False, min_value=0, max_value=2)
    max_new_tokens = forms.IntegerField(required=False, min_value=1, max_value=8192)
    limit = forms.IntegerField(required=False, min_value=1, help_text="Only the first N records (a quick check).")
    judge_backend = backend_choice_field(
        label="Judge backend", help_text="Consultation judge: a registered server (judge model below overrides its model).")
    judge_base_url = EndpointField(required=False, help_text="Consultation judge endpoint (default MEDSTUDIO_CHAT_URL).")
    judge_model = forms.CharField(required=False)
    rouge_threshold = forms.FloatField(required=False, min_value=0, max_value=1, help_text="Memorisation: ROUGE-L above this flags (0.8).")
    cosine_threshold = forms.FloatField(required=False, min_value=0, max_value=1, help_text="High-risk store: cosine above this is high-risk (0.8).")
    prefix_ratio = forms.FloatField(required=False, min_value=0.05, max_value=0.95)
    embedding_model = forms.CharField(required=False, help_text="High-risk store encoder (default MEDSTUDIO_EMBEDDING_MODEL).")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from training.models import ModelRef

        self.fields["model_ref"].queryset = ModelRef.objects.order_by("name")
        fill_backend_choices(self, "chat_backend", "judge_backend")

    def clean(self):
        d = super().clean()
        if d.get("chat_backend"):
            if d.get("backend") != "openai":
                self.add_error("chat_backend", "A model backend is an OpenAI-compatible endpoint: choose that backend above.")
            elif d.get("base_url"):
                self.add_error("base_url", "Pick a registered backend or give a base URL, not both.")
        if d.get("judge_backend") and d.get("judge_base_url"):
            self.add_error("judge_base_url", "Pick a registered judge backend or give a judge URL, not both.")
        return d

    def clean_seeds(self):
        raw = (self.cleaned_data.get("seeds") or "").strip()
        if not raw:
            return None
        try:
            return [int(s) for s in raw.replace(" ", "").split(",") if s]
        except ValueError:
            raise forms.ValidationError("Seeds are integers separated by commas.") from None

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
    threshold = forms.FloatField(required=False, min_value=0, max_value=1, help_text="Cosine threshold (default: the store's).")


class HarnessRunForm(forms.Form):
    """An lm-eval run: curated tasks that have a local copy, and a target (local path or endpoint)."""

    tasks = forms.MultipleChoiceField(choices=(), widget=forms.CheckboxSelectMultiple)
    model_name = forms.CharField(max_length=200, required=False)
    backend = forms.ChoiceField(choices=[("transformers", "transformers (local path)"), ("vllm", "vLLM (GPU worker, local path)"),
                                         ("openai", "OpenAI-compatible endpoint")])
    path = forms.CharField(required=False)
    chat_backend = backend_choice_field(help_text="OpenAI-compatible endpoint registered by an admin.")
    base_url = EndpointField(required=False)
    remote_model = forms.CharField(required=False, label="Endpoint model name")
    num_fewshot = forms.IntegerField(required=False, min_value=0, max_value=25, initial=0)
    limit = forms.IntegerField(required=False, min_value=1, help_text="Only the first N items per task.")

    def __init__(self, *args, tasks=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["tasks"].choices = [(t["name"], t["label"]) for t in tasks if t["available"]]
        fill_backend_choices(self, "chat_backend")

    def spec_and_params(self) -> tuple[dict, dict]:
        d = self.cleaned_data
        spec = {"backend": d["backend"], "path": d.get("path"), "base_url": d.get("base_url"),
                "model": d.get("remote_model"), "chat_backend": d.get("chat_backend")}
        return spec, {k: d.get(k) for k in ("num_fewshot", "limit") if d.get(k) not in (None, "")}
