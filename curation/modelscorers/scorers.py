"""Factories that plug the model-based blocks into curation.scoring (domain, datarater, deita, confilter).

`scorer_run_start` calls a factory in the web process to validate params before it creates the run,
so factories only check cheap things (the trained version exists, the configured model resolves to a
local directory) and return a `LazyBlock`; torch/transformers load on the worker, at the first batch,
once per process (the backends cache loaded models).
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Callable

from django.conf import settings
from django.utils.translation import gettext_lazy as _

from curation.pipeline.base import RecordView, ScoreResult
from medstudio.inference.errors import BackendUnavailable, ModelNotAvailable
from medstudio.inference.resolve import resolve_local_model

log = logging.getLogger("medstudio.modelscorers")


class LazyBlock:
    """A scorer whose model loads on first use; a batch that crashes is retried record by record so
    that one bad record (or one failed model call) marks that record, not the job."""

    def __init__(self, name: str, version: str, build: Callable[[], Any]):
        self.name = name
        self.version = version
        self._build = build
        self._block = None

    def _ensure(self):
        if self._block is None:
            from medstudio.jobs.context import JobFailed

            try:
                self._block = self._build()
            except (ModelNotAvailable, BackendUnavailable) as exc:
                raise JobFailed(str(exc)) from exc
        return self._block

    def score_batch(self, records: list[RecordView]) -> list[ScoreResult]:
        block = self._ensure()
        try:
            return block.score_batch(records)
        except (ModelNotAvailable, BackendUnavailable):
            raise
        except Exception as exc:  # noqa: BLE001 — isolate the failing record(s)
            log.warning("%s: batch of %d failed (%s); retrying one by one", self.name, len(records), exc)
            if len(records) == 1:
                return [_failed(exc)]
            out = []
            for rec in records:
                try:
                    out.extend(block.score_batch([rec]))
                except Exception as one_exc:  # noqa: BLE001
                    out.append(_failed(one_exc))
            return out


def _failed(exc: BaseException) -> ScoreResult:
    return ScoreResult(value=None, reason=f"error: {type(exc).__name__}"[:100], detail={"error": str(exc)[:500]})


def _lm_ref(params: dict, key: str, setting: str) -> str:
    ref = str(params.get(key) or getattr(settings, setting))
    resolve_local_model(ref, setting)  # fails here, in the request, with the setting to change
    return ref


def _lm(ref: str, setting: str, params: dict):
    from medstudio.inference.lm import load_causal_lm

    return load_causal_lm(ref, setting=setting, backend=str(params.get("backend") or
                                                            getattr(settings, "MEDSTUDIO_LM_BACKEND", "auto")))


def confilter_factory(params: dict) -> LazyBlock:
    from curation.pipeline import confilter

    setting = "MEDSTUDIO_SCORING_LM"
    ref = _lm_ref(params, "model", setting)
    max_length = int(params.get("max_length") or confilter.DEFAULT_MAX_LENGTH)
    if max_length < 16:
        raise ValueError("max_length must be at least 16 tokens")
    params.setdefault("model", ref)  # the run records which model it used
    return LazyBlock("confilter", confilter.VERSION,
                     lambda: confilter.ConFilter(_lm(ref, setting, params), max_length=max_length))


def deita_factory(params: dict) -> LazyBlock:
    from curation.pipeline import deita

    mode = params.get("mode", "lm")
    if mode == "chat":
        from medstudio.backends.resolve import chat_client, chat_params, concurrency

        if "chat" not in params:
            # Resolved once, at launch: every shard (and a resumed job) uses the same endpoint even
            # if an admin edits the registry meanwhile. A registered backend, an explicit URL, or
            # the defaults (MEDSTUDIO_CHAT_URL); the key stays in the environment.
            params["chat"] = chat_params(backend=params.get("chat_backend"), base_url=params.get("base_url", ""),
                                         model=params.get("chat_model", ""))
        chat = params["chat"]
        params.setdefault("model", f"chat:{chat['model']}")
        overrides = {k: conv(params[k]) for k, conv in (("timeout", float), ("max_retries", int)) if k in params}
        backend = chat_client(chat, **overrides)
        return LazyBlock("deita", deita.VERSION + "-chat", lambda: deita.Deita(
            deita.ChatDigitScorer(backend, deita.JUDGE_COMPLEXITY, max_workers=concurrency(chat)),
            deita.ChatDigitScorer(backend, deita.JUDGE_QUALITY, max_workers=concurrency(chat))))
    if mode != "lm":
        raise ValueError("mode must be 'lm' (Deita scorer models) or 'chat' (a judge prompt)")
    c_set, q_set = "MEDSTUDIO_DEITA_COMPLEXITY_MODEL", "MEDSTUDIO_DEITA_QUALITY_MODEL"
    c_ref = _lm_ref(params, "complexity_model", c_set)
    q_ref = _lm_ref(params, "quality_model", q_set)
    max_length = int(params.get("max_length") or 2048)
    params.setdefault("model", f"{c_ref} + {q_ref}")
    return LazyBlock("deita", deita.VERSION, lambda: deita.Deita(
        deita.LMDigitScorer(_lm(c_ref, c_set, params), deita.COMPLEXITY_TEMPLATE, max_length=max_length),
        deita.LMDigitScorer(_lm(q_ref, q_set, params), deita.QUALITY_TEMPLATE, max_length=max_length)))


def rater_factory(kind: str) -> Callable[[dict], LazyBlock]:
    def factory(params: dict) -> LazyBlock:
        from curation.pipeline import rater

        from .selectors import ready_model

        model = ready_model(kind, params.get("model_version"))
        if model is None:
            which = params.get("model_version") or "a ready"
            raise ValueError(f"No {which} {kind} model version: train one on the Model scorers page (/modelscorers/).")
        # Pin the version now: "latest" must mean the same model for every shard of this run.
        params["model_version"] = model.version
        params["model"] = model.ref
        target = str(params.get("target_label") or "medical")
        if kind == "domain":
            if model.classes and target not in model.classes:
                raise ValueError(f"target_label {target!r} is not one of {model.ref}'s labels: {', '.join(model.classes)}")
            params["target_label"] = target
        path = model.path

        def build():
            return rater.RaterScorer(rater.RaterModel.load(path), name=kind, version=f"{rater.FORMAT_VERSION}.m{model.version}",
                                     target_label=target)

        return LazyBlock(kind, f"{rater.FORMAT_VERSION}.m{model.version}", build)

    return factory


def _versions(kind: str):
    def choices(dataset) -> list:
        from .selectors import trained_models

        ready = trained_models(kind).filter(status="ready").order_by("-version")
        return [("latest", _("latest ready version"))] + [(str(m.version), m.ref) for m in ready]

    return choices


def register_all() -> None:
    from django.utils.translation import gettext_lazy

    from curation.pipeline import confilter

    from medstudio.handoffs.scorers import Param, register_scorer

    lm_backend = Param("backend", "choice", "auto", choices=("auto", "transformers", "vllm"), label=gettext_lazy("Inference backend"),
                       help=gettext_lazy("auto: vLLM on a GPU worker when installed, else transformers."))

    register_scorer(
        "domain", rater_factory("domain"), queue="cpu", batch_size=512,
        description=gettext_lazy("Domain classifier (CareBot 1.1): value = P(target label), keep = predicted label is the target."),
        params_schema={"model_version": "int or 'latest'", "target_label": "str (default medical)"},
        params=(Param("model_version", "choice", "latest", choices=_versions("domain"), label=gettext_lazy("Model version")),
                Param("target_label", "str", "medical", label=gettext_lazy("Target label"),
                      help=gettext_lazy("The label that counts as in-domain.")),))
    register_scorer(
        "datarater", rater_factory("datarater"), queue="cpu", batch_size=512,
        description=gettext_lazy("DataRater (CareBot 1.3): predicted 0-5 quality."),
        params_schema={"model_version": "int or 'latest'"},
        params=(Param("model_version", "choice", "latest", choices=_versions("datarater"), label=gettext_lazy("Model version")),))
    register_scorer(
        "deita", deita_factory, queue="gpu", batch_size=32, kinds=("qa", "dialogue", "mcq"),
        description=gettext_lazy("Deita (CareBot 2.1): complexity x quality, expected digit 1-6; dialogues: mean over turns."),
        params_schema={"mode": "lm | chat", "complexity_model": "path/hub id", "quality_model": "path/hub id",
                       "max_length": "int (2048)", "backend": "auto | transformers | vllm",
                       "chat_backend": "chat mode: a registered model backend", "base_url": "chat mode",
                       "chat_model": "chat mode"},
        params=(Param("mode", "choice", "lm", choices=(("lm", gettext_lazy("Deita scorer models")), ("chat", gettext_lazy("a chat judge"))),
                      label=gettext_lazy("Mode")),
                Param("complexity_model", "str", "", modes=("lm",), setting="MEDSTUDIO_DEITA_COMPLEXITY_MODEL",
                      label=gettext_lazy("Complexity model"), help=gettext_lazy("A local directory or a cached hub id.")),
                Param("quality_model", "str", "", modes=("lm",), setting="MEDSTUDIO_DEITA_QUALITY_MODEL",
                      label=gettext_lazy("Quality model"), help=gettext_lazy("A local directory or a cached hub id.")),
                Param("max_length", "int", 2048, min=16, max=32768, step=1, modes=("lm",), label=gettext_lazy("Max length")),
                dataclasses.replace(lm_backend, modes=("lm",)),
                Param("chat_backend", "backend", "", modes=("chat",), label=gettext_lazy("Model backend")),
                Param("base_url", "str", "", modes=("chat",), setting="MEDSTUDIO_CHAT_URL", label=gettext_lazy("Base URL")),
                Param("chat_model", "str", "", modes=("chat",), setting="MEDSTUDIO_CHAT_MODEL", label=gettext_lazy("Judge model")),))
    register_scorer(
        "confilter", confilter_factory, queue="gpu", batch_size=16, kinds=("dialogue",),
        description=gettext_lazy("ConFilter (CareBot 2.2): mean CF = L(turn | history) / L(turn) over turns 2..n."),
        params_schema={"model": "path/hub id (MEDSTUDIO_SCORING_LM)", "max_length": "int (4096)",
                       "backend": "auto | transformers | vllm"},
        params=(Param("model", "str", "", setting="MEDSTUDIO_SCORING_LM", label=gettext_lazy("Scoring model"),
                      help=gettext_lazy("A local directory or a cached hub id.")),
                Param("max_length", "int", confilter.DEFAULT_MAX_LENGTH, min=16, max=131072, step=1, label=gettext_lazy("Max length"),
                      help=gettext_lazy("Tokens per turn with its history (capped by the model's context).")),
                lm_backend))
