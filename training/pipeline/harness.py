"""lm-evaluation-harness as an evaluation backend (docs/METHODS.md 5.4). Plain Python: no Django.

The harness's own task definitions (prompt, choices, target, metric) are used unchanged; only where
the data comes from is replaced. Each curated task reads a local copy saved with
`datasets.DatasetDict.save_to_disk` under `<datasets_dir>/<task name>/`, through the task config's
`custom_dataset` hook, so a worker never needs the Hugging Face hub. `lm_eval` is imported inside
the functions: importing this module is cheap.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence


@dataclass(frozen=True)
class CuratedTask:
    name: str  # the harness's task name
    label: str
    lang: str
    hub: str  # where the harness would download it from (what the local copy must mirror)


def _t(name: str, label: str, lang: str, hub: str) -> CuratedTask:
    return CuratedTask(name, label, lang, hub)


_MMLU = ("anatomy", "clinical_knowledge", "college_biology", "college_medicine", "medical_genetics",
         "nutrition", "professional_medicine", "virology")
_CMMLU = ("anatomy", "clinical_knowledge", "college_medical_statistics", "college_medicine", "genetics",
          "nutrition", "professional_medicine", "traditional_chinese_medicine", "virology")
_CEVAL = ("basic_medicine", "clinical_medicine", "physician", "veterinary_medicine")

CURATED: tuple[CuratedTask, ...] = (
    _t("medqa_4options", "MedQA (USMLE, 4 options)", "en", "GBaker/MedQA-USMLE-4-options-hf"),
    _t("medmcqa", "MedMCQA", "en", "openlifescienceai/medmcqa"),
    _t("pubmedqa", "PubMedQA (labelled)", "en", "bigbio/pubmed_qa"),
    _t("headqa_en", "HEAD-QA (en)", "en", "EleutherAI/headqa"),
    *(_t(f"mmlu_{s}", f"MMLU {s.replace('_', ' ')}", "en", "cais/mmlu") for s in _MMLU),
    *(_t(f"cmmlu_{s}", f"CMMLU {s.replace('_', ' ')}", "zh", "haonan-li/cmmlu") for s in _CMMLU),
    *(_t(f"ceval-valid_{s}", f"C-Eval {s.replace('_', ' ')}", "zh", "ceval/ceval-exam") for s in _CEVAL),
)
CURATED_BY_NAME = {t.name: t for t in CURATED}


class HarnessUnavailable(RuntimeError):
    """lm-eval is missing, a task is unknown or has no local copy: the message says what to do."""


def local_tasks(datasets_dir: str | os.PathLike | None) -> list[dict[str, Any]]:
    """Each curated task with whether a local copy exists (a save_to_disk directory)."""
    base = Path(datasets_dir) if datasets_dir else None
    out = []
    for t in CURATED:
        d = base / t.name if base else None
        ok = bool(d and d.is_dir() and ((d / "dataset_dict.json").exists() or (d / "dataset_info.json").exists()))
        out.append({"name": t.name, "label": t.label, "lang": t.lang, "hub": t.hub, "available": ok,
                    "path": str(d) if d else ""})
    return out


def _load_local(path: str, **_ignored: Any):
    """The `custom_dataset` hook: the harness passes the task metadata as keywords; only the path matters."""
    import datasets

    ds = datasets.load_from_disk(path)
    if isinstance(ds, datasets.Dataset):  # a single split saved alone serves as the test split
        ds = datasets.DatasetDict({"test": ds})
    return ds


@functools.lru_cache(maxsize=1)
def _task_manager():
    from lm_eval.tasks import TaskManager

    return TaskManager()


def task_config(name: str, datasets_dir: str | os.PathLike, *, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The harness's registered config for `name` (includes and !function resolved), reading a local copy."""
    from lm_eval.tasks._yaml_loader import load_yaml

    local = Path(datasets_dir) / name
    if not local.is_dir():
        raise HarnessUnavailable(f"task {name}: no local copy at {local} (save the dataset there with save_to_disk)")
    entry = _task_manager()._entry(name)
    if entry is None or not entry.yaml_path:
        raise HarnessUnavailable(f"task {name} is not a task of the installed lm-eval")
    cfg = dict(load_yaml(entry.yaml_path, resolve_func=True))
    for key in ("include", "tag", "group"):
        cfg.pop(key, None)
    cfg.update(task=name, dataset_path=str(local), dataset_name=None,
               custom_dataset=functools.partial(_load_local, str(local)), dataset_kwargs={})
    cfg.update(overrides or {})
    return cfg


def model_for(spec: dict[str, Any], *, device: str = "cpu", batch_size: int = 1) -> tuple[str, dict[str, Any]]:
    """(harness model type, model_args) for a MedStudio model spec.

    transformers -> `hf`; vllm -> `vllm` (GPU); openai -> `local-completions` (log-likelihood needs the
    endpoint's /completions with echo+logprobs) or, with harness_model=local-chat-completions,
    the chat endpoint (generation tasks only). API keys come from the environment (OPENAI_API_KEY)."""
    backend = (spec.get("backend") or "").lower()
    if backend == "transformers":
        return "hf", {"pretrained": spec["path"], "device": device, "dtype": spec.get("dtype", "auto"),
                      "batch_size": batch_size}
    if backend == "vllm":
        return "vllm", {"pretrained": spec["path"], "tensor_parallel_size": int(spec.get("tensor_parallel_size", 1)),
                        "gpu_memory_utilization": float(spec.get("gpu_memory_utilization", 0.85)),
                        "dtype": spec.get("dtype", "auto"), "batch_size": "auto"}
    if backend == "openai":
        kind = spec.get("harness_model") or "local-completions"
        if kind not in ("local-completions", "local-chat-completions"):
            raise HarnessUnavailable("harness_model must be local-completions or local-chat-completions")
        base = spec["base_url"].rstrip("/")
        url = base + ("/chat/completions" if kind == "local-chat-completions" else "/completions")
        args = {"base_url": url, "model": spec["model"], "num_concurrent": int(spec.get("max_workers", 1)),
                "max_retries": int(spec.get("max_retries", 3)), "timeout": int(spec.get("timeout", 120)),
                "tokenizer_backend": None, "tokenized_requests": False}
        return kind, args
    raise HarnessUnavailable(f"backend {backend!r} cannot be evaluated through lm-eval")


def _sample_row(task: str, s: dict[str, Any]) -> dict[str, Any]:
    """One per-sample record, JSON-safe: the doc id, target, the harness's choice and its correctness."""
    resps = s.get("filtered_resps") or s.get("resps") or []
    row: dict[str, Any] = {"task": task, "doc_id": s.get("doc_id"), "target": s.get("target")}
    if resps and isinstance(resps[0], (list, tuple)) and len(resps[0]) == 2 and isinstance(resps[0][0], float):
        lls = [float(r[0]) for r in resps]  # multiple_choice: (loglikelihood, is_greedy) per choice
        row["loglikelihoods"] = lls
        row["choice"] = max(range(len(lls)), key=lls.__getitem__)
    else:
        raw = s.get("resps") or []
        row["output"] = str(raw[0][0] if raw and isinstance(raw[0], (list, tuple)) else (raw[0] if raw else ""))
        row["filtered"] = str(resps[0]) if resps else ""
    for metric in ("acc", "acc_norm", "exact_match"):
        if metric in s:
            row[metric] = float(s[metric])
    return row


def run(*, tasks: Sequence[str | dict[str, Any]], datasets_dir: str | os.PathLike, model: str | Any,
        model_args: dict[str, Any] | None = None, limit: int | None = None, num_fewshot: int | None = None,
        apply_chat_template: bool = False, gen_kwargs: dict[str, Any] | None = None, seed: int = 0,
        log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the harness offline on curated task names (or ready task configs) and return
    {"results": {task: {metric: value}}, "samples": [per-sample rows], "versions": ...}."""
    try:
        import lm_eval
    except ImportError:  # pragma: no cover - lm-eval is a dependency
        raise HarnessUnavailable("lm-eval is not installed on this worker (pip install lm-eval)") from None
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    configs = [t if isinstance(t, dict) else task_config(t, datasets_dir) for t in tasks]
    if model == "local-chat-completions":  # a chat endpoint takes messages: the harness must build them
        apply_chat_template = True
    if log:
        log(f"lm-eval {getattr(lm_eval, '__version__', '?')}: {', '.join(c['task'] for c in configs)}")
    out = lm_eval.simple_evaluate(
        model=model, model_args=model_args, tasks=configs, limit=limit, num_fewshot=num_fewshot,
        apply_chat_template=apply_chat_template, gen_kwargs=gen_kwargs, log_samples=True,
        random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed,
        bootstrap_iters=0, task_manager=_task_manager(),
    )
    if out is None:  # only on non-zero ranks of a distributed run
        return {"results": {}, "samples": []}
    results = {}
    for task, metrics in (out.get("results") or {}).items():
        results[task] = {k.split(",")[0]: float(v) for k, v in metrics.items()
                         if isinstance(v, (int, float)) and "stderr" not in k and k != "samples" and "," in k}
        results[task]["n"] = int(len((out.get("samples") or {}).get(task) or []))
    samples = [_sample_row(task, s) for task, rows in (out.get("samples") or {}).items() for s in rows]
    return {"results": results, "samples": samples, "versions": {k: str(v) for k, v in (out.get("versions") or {}).items()}}


def summary_from(results: dict[str, dict[str, Any]], metric: str = "acc") -> dict[str, Any]:
    """The same shape as MedStudio's MCQ summary (overall/per_subject mean, std, runs), one "subject"
    per harness task, so a harness run sits on the leaderboard beside MedStudio's own scorer."""
    per = {}
    for task, m in sorted(results.items()):
        v = m.get(metric, m.get("exact_match", m.get("acc")))
        if v is None:
            continue
        per[task] = {"mean": v, "std": 0.0, "min": v, "max": v, "runs": [v], "n": m.get("n")}
    n = sum((p.get("n") or 0) for p in per.values())
    overall = (sum(p["mean"] * (p.get("n") or 0) for p in per.values()) / n) if n else None
    return {"n_runs": 1, "metric": metric, "overall": {"mean": overall, "std": 0.0, "runs": [overall]},
            "per_subject": per, "harness": results}
