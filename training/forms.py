"""The "new run" form: every spec field, pre-filled with the stage's paper defaults."""
from __future__ import annotations

from django import forms

from medstudio.datasets.models import Dataset
from training.models import ModelRef
from training.pipeline.specs import DISTRIBUTED, LAUNCHERS, MERGE_METHODS, STAGES, MergingSpec, Resources, TrainingSpec, stage_defaults

SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup")
# Spec error keys -> form field names.
ERROR_FIELDS = {
    "resources.nodes": "nodes", "resources.gpus_per_node": "gpus_per_node", "resources.hosts": "hosts",
    "resources.launcher": "launcher", "resources.distributed": "distributed",
    "merging.enabled": "merging_enabled", "merging.method": "merging_method", "merging.p": "merging_p",
    "merging.alpha": "merging_alpha", "merging.clip": "merging_clip", "merging.base_model": "merge_base",
    "data": "dataset", "base_model": "base_model",
}


def _choices(values):
    return [(v, v) for v in values]


class RunForm(forms.Form):
    name = forms.CharField(required=False, max_length=200)
    stage = forms.ChoiceField(choices=_choices(STAGES))
    base_model = forms.ModelChoiceField(queryset=ModelRef.objects.order_by("-created_at"), help_text="The model this run starts from.")
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.order_by("name"),
                                     help_text="Training data (a plain dataset; selections, mixtures and preference sets plug in through training/data.py).")
    learning_rate = forms.FloatField()
    lr_scheduler_type = forms.ChoiceField(choices=_choices(SCHEDULERS))
    warmup_ratio = forms.FloatField()
    max_length = forms.IntegerField()
    global_batch_size = forms.IntegerField(help_text="Sequences per optimizer step over all devices.")
    per_device_batch_size = forms.IntegerField()
    num_train_epochs = forms.FloatField()
    max_steps = forms.IntegerField(help_text="> 0 overrides epochs.")
    weight_decay = forms.FloatField()
    dropout = forms.FloatField()
    val_fraction = forms.FloatField(help_text="Held out for eval loss; the best checkpoint is kept.")
    beta = forms.FloatField(help_text="DPO only.")
    bf16 = forms.BooleanField(required=False)
    seed = forms.IntegerField()
    logging_steps = forms.IntegerField()
    save_steps = forms.IntegerField(help_text="0 = once per epoch.")
    nodes = forms.IntegerField()
    gpus_per_node = forms.IntegerField(help_text="0 = CPU.")
    hosts = forms.CharField(required=False, help_text="One host per node, comma-separated (hostfile).")
    launcher = forms.ChoiceField(choices=_choices(LAUNCHERS))
    distributed = forms.ChoiceField(choices=_choices(DISTRIBUTED))
    merging_enabled = forms.BooleanField(required=False, label="Online merging (DPO)")
    merging_method = forms.ChoiceField(choices=_choices(MERGE_METHODS))
    merging_p = forms.FloatField(label="Keep probability p")
    merging_alpha = forms.FloatField(label="alpha (weight of tau)")
    merging_clip = forms.FloatField(label="tau clip c")
    merging_rescale = forms.BooleanField(required=False, label="Rescale update to its L1 norm")
    merge_base = forms.ModelChoiceField(queryset=ModelRef.objects.order_by("-created_at"), required=False,
                                        label="theta_base", help_text="The model before SFT (task vector = SFT - base).")

    SPEC_FIELDS = ("learning_rate", "lr_scheduler_type", "warmup_ratio", "max_length", "global_batch_size",
                   "per_device_batch_size", "num_train_epochs", "max_steps", "weight_decay", "dropout",
                   "val_fraction", "beta", "bf16", "seed", "logging_steps", "save_steps")

    @classmethod
    def initial_for(cls, stage: str) -> dict:
        spec = TrainingSpec(stage=stage, base_model="-", **stage_defaults(stage))
        res, mer = Resources(), MergingSpec(enabled=stage == "dpo")
        initial = {f: getattr(spec, f) for f in cls.SPEC_FIELDS}
        initial.update(stage=stage, nodes=res.nodes, gpus_per_node=res.gpus_per_node, launcher=res.launcher,
                       distributed=res.distributed, merging_enabled=mer.enabled, merging_method=mer.method,
                       merging_p=mer.p, merging_alpha=mer.alpha, merging_clip=mer.clip, merging_rescale=mer.rescale)
        return initial

    def to_spec(self) -> TrainingSpec:
        d = self.cleaned_data
        hosts = [h.strip() for h in (d.get("hosts") or "").split(",") if h.strip()]
        return TrainingSpec(
            stage=d["stage"], base_model=d["base_model"].path,
            resources=Resources(nodes=d["nodes"], gpus_per_node=d["gpus_per_node"], hosts=hosts,
                                launcher=d["launcher"], distributed=d["distributed"]),
            merging=MergingSpec(enabled=d["merging_enabled"], method=d["merging_method"], p=d["merging_p"],
                                alpha=d["merging_alpha"], clip=d["merging_clip"], rescale=d["merging_rescale"]),
            **{f: d[f] for f in self.SPEC_FIELDS},
        )

    def add_spec_errors(self, errors: dict[str, str]) -> None:
        for key, msg in errors.items():
            field = ERROR_FIELDS.get(key, key)
            self.add_error(field if field in self.fields else None, msg)


class ModelRefForm(forms.Form):
    name = forms.CharField(max_length=200)
    path = forms.CharField(max_length=500, help_text="Local directory with config.json and weights, or a hub id.")
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
