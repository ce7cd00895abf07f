"""Training run specifications: documented dataclasses with the papers' defaults (no Django, no torch).

A spec is what an admin fills in on the "new run" form and what the worker writes to
``config.json`` for the training process; it is also copied into every checkpoint
(``medstudio_spec.json``) so a checkpoint always says how it was made.

Defaults come from docs/METHODS.md section 1.6 (CPT) and section 4 (SFT, DPO, merging):
- CPT stable: lr 8e-6, cosine, warmup 0.1, max length 4096, batch 4M tokens (CareBot).
- CPT boost:  lr 2e-6, other settings unchanged (CareBot).
- SFT: seq 2048, batch 128, lr 2e-6 cosine, weight decay 0.1, dropout 0.1, AdamW, bf16, ZeRO-3,
  10% held out, best of 2 epochs (CareBot / SF-Med).
- DPO: lr 1e-7, batch 96, beta 0.03, 2 epochs, warmup + cosine (CareBot).
- Online merging (SF-Med after Lu et al. 2024): keep probability p = 0.01, alpha = 1e-7.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Callable


def gettext_noop(message: str) -> str:
    """Marks a message for the translation catalogue without importing Django."""
    return message


STAGES = ("cpt-stable", "cpt-boost", "sft", "dpo")
# The chain the papers run; "next stage" buttons follow it.
NEXT_STAGE = {"cpt-stable": "cpt-boost", "cpt-boost": "sft", "sft": "dpo", "dpo": None}
# Which dataset kinds each stage can consume (document text for CPT; conversations for SFT; pairs for DPO).
# CPT-boost mixes open medical SFT data into the corpus (docs/METHODS.md 1.6), so it accepts conversations too.
STAGE_DATA_KINDS = {
    "cpt-stable": ("document",),
    "cpt-boost": ("document", "qa", "dialogue"),
    "sft": ("qa", "dialogue", "mcq"),
    "dpo": ("pair",),
}
LAUNCHERS = ("accelerate", "deepspeed")
DISTRIBUTED = ("none", "zero3", "fsdp")
MERGE_METHODS = ("ondare", "onties")

CPT_SEQ = 4096
CPT_BATCH_TOKENS = 4_000_000  # docs/METHODS.md 1.6: "batch 4M tokens"


class SpecError(ValueError):
    """Raised with every problem found, so the form can show them all at once."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


@dataclass
class Resources:
    """Where the run goes. nodes > 1 needs ``hosts`` (one per node) and writes a hostfile."""

    nodes: int = 1
    gpus_per_node: int = 0  # 0 = CPU (tests, CI)
    hosts: list[str] = field(default_factory=list)
    launcher: str = "accelerate"  # accelerate | deepspeed
    # none: plain DDP/single process. zero3: DeepSpeed ZeRO-3 (SFT/CPT on GPUs, docs/METHODS.md 4).
    # fsdp: FSDP with use_orig_params, the setup online merging needs (parameter names survive).
    distributed: str = "none"

    @property
    def world_size(self) -> int:
        return max(1, self.nodes * self.gpus_per_node)

    @property
    def on_cpu(self) -> bool:
        return self.gpus_per_node == 0


@dataclass
class MergingSpec:
    """Online merging optimizer settings (docs/METHODS.md 4; reference DPO script: p=0.01, alpha=1e-7).

    p is the *keep* probability of the Bernoulli mask (DARE survivors are divided by p).
    base_model is theta_base of the task vector tau = theta_SFT - theta_base; theta_SFT is the
    model the DPO run starts from.
    """

    enabled: bool = False
    method: str = "ondare"  # ondare | onties
    p: float = 0.01
    alpha: float = 1e-7
    clip: float = 1.0  # tau is clipped to [-clip, clip]
    rescale: bool = True  # rescale the sparsified update back to its L1 norm
    base_model: str = ""  # path of theta_base


@dataclass
class TrainingSpec:
    """One training run: stage, model, data and hyper-parameters (saved with every checkpoint)."""

    stage: str
    base_model: str  # local path (or hub id in production) of the starting weights
    data_path: str = ""  # JSONL of normalised records {"kind", "content"} written by the worker
    output_dir: str = ""
    learning_rate: float = 2e-6
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = 0.1
    max_length: int = 2048
    global_batch_size: int = 128  # sequences per optimizer step, over all devices
    per_device_batch_size: int = 1
    num_train_epochs: float = 2.0
    max_steps: int = -1  # > 0 overrides epochs (CI, smoke runs)
    weight_decay: float = 0.0
    dropout: float = 0.0
    val_fraction: float = 0.0
    beta: float = 0.03  # DPO only
    bf16: bool = False
    seed: int = 42
    logging_steps: int = 1
    save_steps: int = 0  # 0 = once per epoch
    save_total_limit: int = 3
    resources: Resources = field(default_factory=Resources)
    merging: MergingSpec = field(default_factory=MergingSpec)

    # -- derived -------------------------------------------------------------------------------
    @property
    def gradient_accumulation_steps(self) -> int:
        per_step = self.per_device_batch_size * self.resources.world_size
        return max(1, self.global_batch_size // per_step)

    # -- (de)serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainingSpec":
        data = dict(data)
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise SpecError({k: "unknown setting" for k in sorted(unknown)})
        res = data.pop("resources", None) or {}
        mer = data.pop("merging", None) or {}
        try:
            return cls(resources=Resources(**res), merging=MergingSpec(**mer), **data)
        except TypeError as exc:  # unknown nested key or missing stage/base_model
            raise SpecError({"spec": str(exc)}) from exc

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False, indent=1)

    def content_hash(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    # -- validation ----------------------------------------------------------------------------
    def errors(self, translate: Callable[[str], str] = str) -> dict[str, str]:
        """{field: what is wrong}, in English; translate (gettext, from the Django layer) gives the
        reader's language: each message is a catalogue msgid (gettext_noop) with %(name)s params."""
        e: dict[str, str] = {}

        def t(msgid: str, **params) -> str:
            try:
                return translate(msgid) % params
            except (KeyError, ValueError, TypeError):  # a translation whose params do not match: the English
                return msgid % params

        if self.stage not in STAGES:
            e["stage"] = t(gettext_noop("must be one of %(items)s"), items=", ".join(STAGES))
        if not self.base_model:
            e["base_model"] = t(gettext_noop("a base model is required"))
        if not (0 < self.learning_rate < 1):
            e["learning_rate"] = t(gettext_noop("must be in (0, 1)"))
        if self.lr_scheduler_type not in ("cosine", "linear", "constant", "constant_with_warmup"):
            e["lr_scheduler_type"] = t(gettext_noop("must be cosine, linear, constant or constant_with_warmup"))
        if not (0 <= self.warmup_ratio < 1):
            e["warmup_ratio"] = t(gettext_noop("must be in [0, 1)"))
        if not (8 <= self.max_length <= 131072):
            e["max_length"] = t(gettext_noop("must be between 8 and 131072"))
        if self.per_device_batch_size < 1:
            e["per_device_batch_size"] = t(gettext_noop("must be >= 1"))
        per_step = self.per_device_batch_size * self.resources.world_size
        if self.global_batch_size < 1:
            e["global_batch_size"] = t(gettext_noop("must be >= 1"))
        elif self.global_batch_size % per_step:
            e["global_batch_size"] = t(gettext_noop("must be a multiple of per-device batch x devices = %(n)s"), n=per_step)
        if self.max_steps <= 0 and self.num_train_epochs <= 0:
            e["num_train_epochs"] = t(gettext_noop("must be > 0 (or set max_steps)"))
        if not (0 <= self.weight_decay < 1):
            e["weight_decay"] = t(gettext_noop("must be in [0, 1)"))
        if not (0 <= self.dropout < 1):
            e["dropout"] = t(gettext_noop("must be in [0, 1)"))
        if not (0 <= self.val_fraction < 0.5):
            e["val_fraction"] = t(gettext_noop("must be in [0, 0.5)"))
        if self.stage == "dpo" and not (0 < self.beta <= 10):
            e["beta"] = t(gettext_noop("must be in (0, 10]"))
        if self.logging_steps < 1:
            e["logging_steps"] = t(gettext_noop("must be >= 1"))
        if self.save_steps < 0:
            e["save_steps"] = t(gettext_noop("must be >= 0"))
        r = self.resources
        if r.nodes < 1:
            e["resources.nodes"] = t(gettext_noop("must be >= 1"))
        if r.gpus_per_node < 0:
            e["resources.gpus_per_node"] = t(gettext_noop("must be >= 0"))
        if r.launcher not in LAUNCHERS:
            e["resources.launcher"] = t(gettext_noop("must be one of %(items)s"), items=", ".join(LAUNCHERS))
        if r.distributed not in DISTRIBUTED:
            e["resources.distributed"] = t(gettext_noop("must be one of %(items)s"), items=", ".join(DISTRIBUTED))
        if r.nodes > 1 and len(r.hosts) != r.nodes:
            e["resources.hosts"] = t(gettext_noop("%(n)s nodes need %(n)s host names"), n=r.nodes)
        if r.on_cpu and (r.nodes > 1 or r.distributed != "none"):
            e["resources.distributed"] = t(gettext_noop("CPU runs are single-node without ZeRO/FSDP"))
        if r.on_cpu and self.bf16:
            e["bf16"] = t(gettext_noop("bf16 needs a GPU; turn it off for CPU runs"))
        if r.launcher == "deepspeed" and r.distributed != "zero3":
            e["resources.launcher"] = t(gettext_noop("the DeepSpeed launcher is used with ZeRO-3"))
        m = self.merging
        if m.enabled:
            if self.stage != "dpo":
                e["merging.enabled"] = t(gettext_noop("online merging applies to DPO runs"))
            if m.method not in MERGE_METHODS:
                e["merging.method"] = t(gettext_noop("must be one of %(items)s"), items=", ".join(MERGE_METHODS))
            if not (0 < m.p <= 1):
                e["merging.p"] = t(gettext_noop("keep probability must be in (0, 1]"))
            if not (0 <= m.alpha <= 1):
                e["merging.alpha"] = t(gettext_noop("must be in [0, 1]"))
            if m.clip <= 0:
                e["merging.clip"] = t(gettext_noop("must be > 0"))
            if not m.base_model:
                e["merging.base_model"] = t(gettext_noop("the task vector needs theta_base (the model before SFT)"))
            # ZeRO partitions parameters and hides their names; the merge needs them (docs/METHODS.md 4).
            if r.distributed == "zero3":
                e["resources.distributed"] = t(gettext_noop("online merging needs parameter names: use fsdp (or none), not zero3"))
        return e

    def validate(self) -> "TrainingSpec":
        errs = self.errors()
        if errs:
            raise SpecError(errs)
        return self


def stage_defaults(stage: str) -> dict[str, Any]:
    """The papers' hyper-parameters for a stage (docs/METHODS.md 1.6 and 4), as form initial values."""
    if stage == "cpt-stable":
        return dict(
            learning_rate=8e-6, lr_scheduler_type="cosine", warmup_ratio=0.1, max_length=CPT_SEQ,
            global_batch_size=CPT_BATCH_TOKENS // CPT_SEQ, num_train_epochs=1.0, weight_decay=0.0,
            val_fraction=0.0,
        )
    if stage == "cpt-boost":
        d = stage_defaults("cpt-stable")
        d["learning_rate"] = 2e-6  # "lr 2e-6, other settings unchanged"
        return d
    if stage == "sft":
        return dict(
            learning_rate=2e-6, lr_scheduler_type="cosine", warmup_ratio=0.1, max_length=2048,
            global_batch_size=128, num_train_epochs=2.0, weight_decay=0.1, dropout=0.1,
            val_fraction=0.1,
        )
    if stage == "dpo":
        return dict(
            learning_rate=1e-7, lr_scheduler_type="cosine", warmup_ratio=0.1, max_length=2048,
            global_batch_size=96, num_train_epochs=2.0, beta=0.03, weight_decay=0.0,
            val_fraction=0.0,
        )
    raise SpecError({"stage": f"must be one of {', '.join(STAGES)}"})


def default_spec(stage: str, base_model: str, **overrides: Any) -> TrainingSpec:
    """A spec pre-filled with the stage's paper defaults; ``overrides`` win."""
    values = stage_defaults(stage)
    res = overrides.pop("resources", None)
    mer = overrides.pop("merging", None)
    values.update(overrides)
    spec = TrainingSpec(stage=stage, base_model=base_model, **values)
    if res is not None:
        spec = replace(spec, resources=res if isinstance(res, Resources) else Resources(**res))
    if mer is not None:
        spec = replace(spec, merging=mer if isinstance(mer, MergingSpec) else MergingSpec(**mer))
    elif stage == "dpo":
        spec = replace(spec, merging=MergingSpec(enabled=False))
    return spec
