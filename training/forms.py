"""The "new run" form: every spec field, pre-filled with the stage's paper defaults."""
from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from medstudio.handoffs import sources
from training.models import ModelRef
from training.pipeline.specs import DISTRIBUTED, STAGE_DATA_KINDS, LAUNCHERS, MERGE_METHODS, STAGES, MergingSpec, Resources, TrainingSpec, stage_defaults

SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup")
# Spec error keys -> form field names.
ERROR_FIELDS = {
    "resources.nodes": "nodes", "resources.gpus_per_node": "gpus_per_node", "resources.hosts": "hosts",
    "resources.launcher": "launcher", "resources.distributed": "distributed",
    "merging.enabled": "merging_enabled", "merging.method": "merging_method", "merging.p": "merging_p",
    "merging.alpha": "merging_alpha", "merging.clip": "merging_clip", "merging.base_model": "merge_base",
    "data": "data", "base_model": "base_model",
}


# Fields only the DPO stage has: the other stages' forms leave them out (issue 18.4).
DPO_FIELDS = ("beta", "merging_enabled", "merging_method", "merging_p", "merging_alpha", "merging_clip",
              "merging_rescale", "merge_base")


def _choices(values):
    return [(v, v) for v in values]


class RunForm(forms.Form):
    name = forms.CharField(label=_("Name"), required=False, max_length=200)
    stage = forms.ChoiceField(label=_("Stage"), choices=_choices(STAGES))
    base_model = forms.ModelChoiceField(queryset=ModelRef.objects.order_by("-created_at"), label=_("Base model"),
                                        help_text=_("The model this run starts from."))
    # A CharField with a select: the list shows what fits the stage, and anything else posted still
    # reaches the pre-flight check, which says what to change instead of "not a valid choice".
    data = forms.CharField(label=_("Training data"), widget=forms.Select(),
                           help_text=_("What fits the stage: documents, document selections and mixtures for CPT; QA and "
                                       "dialogue datasets and selections for SFT; preference sets and pair datasets for DPO."))
    learning_rate = forms.FloatField(label=_("Learning rate"))
    lr_scheduler_type = forms.ChoiceField(label=_("Learning-rate schedule"), choices=_choices(SCHEDULERS))
    warmup_ratio = forms.FloatField(label=_("Warm-up ratio"))
    max_length = forms.IntegerField(label=_("Maximum length"))
    global_batch_size = forms.IntegerField(label=_("Global batch size"), help_text=_("Sequences per optimizer step over all devices."))
    per_device_batch_size = forms.IntegerField(label=_("Per-device batch size"))
    num_train_epochs = forms.FloatField(label=_("Epochs"))
    max_steps = forms.IntegerField(label=_("Maximum steps"), help_text=_("> 0 overrides epochs."))
    weight_decay = forms.FloatField(label=_("Weight decay"))
    dropout = forms.FloatField(label=_("Dropout"))
    val_fraction = forms.FloatField(label=_("Validation fraction"), help_text=_("Held out for eval loss; the best checkpoint is kept."))
    beta = forms.FloatField(label=_("beta (DPO)"), help_text=_("DPO: strength of the KL penalty (CareBot: 0.03)."))
    bf16 = forms.BooleanField(label=_("bf16 mixed precision"), required=False)
    seed = forms.IntegerField(label=_("Seed"))
    logging_steps = forms.IntegerField(label=_("Log every N steps"))
    save_steps = forms.IntegerField(label=_("Save every N steps"), help_text=_("0 = once per epoch."))
    nodes = forms.IntegerField(label=_("Nodes"))
    gpus_per_node = forms.IntegerField(label=_("GPUs per node"), help_text=_("0 = CPU."))
    hosts = forms.CharField(label=_("Hosts"), required=False, help_text=_("One host per node, comma-separated (hostfile)."))
    launcher = forms.ChoiceField(label=_("Launcher"), choices=_choices(LAUNCHERS))
    distributed = forms.ChoiceField(label=_("Distributed strategy"), choices=_choices(DISTRIBUTED))
    merging_enabled = forms.BooleanField(required=False, label=_("Online merging"))
    merging_method = forms.ChoiceField(label=_("Merging method"), choices=_choices(MERGE_METHODS))
    merging_p = forms.FloatField(label=_("Keep probability p"))
    merging_alpha = forms.FloatField(label=_("alpha (weight of tau)"))
    merging_clip = forms.FloatField(label=_("tau clip c"))
    merging_rescale = forms.BooleanField(required=False, label=_("Rescale update to its L1 norm"))
    merge_base = forms.ModelChoiceField(queryset=ModelRef.objects.order_by("-created_at"), required=False,
                                        label="theta_base", help_text=_("The model before SFT (task vector = SFT - base)."))

    SPEC_FIELDS = ("learning_rate", "lr_scheduler_type", "warmup_ratio", "max_length", "global_batch_size",
                   "per_device_batch_size", "num_train_epochs", "max_steps", "weight_decay", "dropout",
                   "val_fraction", "beta", "bf16", "seed", "logging_steps", "save_steps")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        stage = (self.data.get("stage") if self.is_bound else None) or self.initial.get("stage") or STAGES[0]
        self.chosen_stage = stage if stage in STAGES else STAGES[0]
        self.fields["data"].widget.choices = data_choices(self.chosen_stage)
        if self.chosen_stage != "dpo":
            for name in DPO_FIELDS:
                del self.fields[name]

    def clean_data(self) -> dict:
        value = self.cleaned_data["data"]
        type_, _sep, pk = value.partition(":")
        if type_ not in sources.types() or not pk.isdigit():
            raise forms.ValidationError(_("Choose the training data from the list."))
        return {"type": type_, "id": int(pk)}

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
            merging=(MergingSpec(enabled=d["merging_enabled"], method=d["merging_method"], p=d["merging_p"],
                                 alpha=d["merging_alpha"], clip=d["merging_clip"], rescale=d["merging_rescale"])
                     if "merging_enabled" in d else MergingSpec(enabled=False)),
            **{f: d[f] for f in self.SPEC_FIELDS if f in d},
        )

    def add_spec_errors(self, errors: dict[str, str]) -> None:
        for key, msg in errors.items():
            field = ERROR_FIELDS.get(key, key)
            self.add_error(field if field in self.fields else None, msg)


def data_choices(stage: str) -> list:
    """Grouped select choices of every data object that fits `stage`, by name."""
    groups: dict[str, list] = {}
    for c in sources.choices_for(STAGE_DATA_KINDS.get(stage, ())):
        groups.setdefault(c["label"] + "s", []).append((c["ref"], f"{c['name']} ({c['kind']}, {c['n_records']:,})"))
    return [("", _("— choose —"))] + list(groups.items())


class ModelRefForm(forms.Form):
    name = forms.CharField(max_length=200)
    path = forms.CharField(max_length=500, help_text=_("Local directory with config.json and weights, or a hub id."))
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
