"""GPU benchmark driver (issue 17): five measurements of MedStudio's GPU paths in one run.

    bash bench/gpu/run.sh [--dry-run] [--out DIR]       # normal entry point (sets up, then calls this)
    python bench/gpu/bench_gpu.py --out DIR [--dry-run] [--deadline EPOCH_S]

Parts (each in a worker subprocess with its own time budget; every part writes its result or its
error, so one failure never loses the others):
  a_confilter                ConFilter on 200 dialogues: vLLM prompt log-probs vs transformers
                             (CF equal within 1e-3? max abs diff, throughput ratio)
  b_vllm_serve_judge         `vllm serve` registered with `manage.py backends add`, then an
                             annotation judge job of 50 items through it (ok/failed, items/s)
  c_sft_zero3                SFT with ZeRO-3 through training/pipeline/launcher.py vs the same
                             train.py run bare (tokens/s, ratio, MFU)
  d_dpo_ondare_fsdp          DPO with OnDARE online merging under FSDP vs plain DPO under FSDP
                             (step time, peak CUDA memory)
  e_memorisation_generation  memorisation-audit generation: vLLM vs batched transformers
                             (tokens/s, ratio)

The model is built here from a config with random weights and a BPE tokenizer trained on the
shared data (Llama-shaped: hidden 1024, 24 layers, intermediate 2816, 16 heads, 32k vocab);
nothing is downloaded. --dry-run runs the same logic on CPU with the tiny test model and tiny
counts; stand-ins replace what a CPU cannot do (transformers for vLLM, the fake OpenAI server for
`vllm serve`, plain single-process training for ZeRO-3 / FSDP), and each part says so.

Output: DIR/gpu_bench.json and DIR/gpu_bench.md. Exit status 1 when any part ended in an error
(a part skipped for a stated reason is not an error).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SETTING = "MEDSTUDIO_SCORING_LM"  # the setting ConFilter's model comes from (curation/modelscorers/scorers.py)
SERVED_NAME = "medstudio-bench"
EQ_TOL = 1e-3

PARTS = {
    "a_confilter": "ConFilter: vLLM prompt log-probs vs transformers",
    "b_vllm_serve_judge": "vllm serve as a registered backend: annotation judge job",
    "c_sft_zero3": "SFT ZeRO-3 via MedStudio launcher vs bare train.py",
    "d_dpo_ondare_fsdp": "DPO + OnDARE under FSDP vs plain DPO under FSDP",
    "e_memorisation_generation": "Memorisation-audit generation: vLLM vs batched transformers",
}
# Worker groups, in run order. a and e share one offline vLLM engine (one start-up instead of two);
# they run first so the engine's memory is gone before the training runs and `vllm serve`.
GROUPS = [
    ("offline", ["a_confilter", "e_memorisation_generation"]),
    ("sft", ["c_sft_zero3"]),
    ("dpo", ["d_dpo_ondare_fsdp"]),
    ("serve", ["b_vllm_serve_judge"]),
]
# (default budget, least worth starting with) in seconds, per group.
BUDGETS = {
    "gpu": {"build": (90, 30), "offline": (170, 60), "sft": (130, 50), "dpo": (130, 50), "serve": (120, 50)},
    "dry": {"build": (90, 90), "offline": (120, 120), "sft": (150, 150), "dpo": (150, 150), "serve": (120, 120)},
}
SIZES = {
    "gpu": dict(n_dialogues=200, judge_items=50, judge_max_tokens=256, judge_concurrency=32,
                sft_steps=15, sft_batch=8, sft_len=1024, dpo_steps=8, dpo_batch=4, dpo_len=768,
                gen_probes=256, gen_tokens=128, gen_batch=64),
    "dry": dict(n_dialogues=8, judge_items=4, judge_max_tokens=16, judge_concurrency=2,
                sft_steps=3, sft_batch=2, sft_len=128, dpo_steps=3, dpo_batch=2, dpo_len=128,
                gen_probes=8, gen_tokens=8, gen_batch=4),
}
MODEL_SHAPE = dict(hidden_size=1024, num_hidden_layers=24, intermediate_size=2816, num_attention_heads=16,
                   num_key_value_heads=16, vocab_size=32000, max_position_embeddings=4096)
# Wider than Llama's 0.02: random weights then give peaked, token-dependent distributions, so the
# CF equality check compares numbers that actually depend on the backend's arithmetic.
INIT_RANGE = float(os.environ.get("BENCH_INIT_RANGE", "0.05"))

# Dense (no sparsity) bf16 tensor-core peak per GPU, FLOP/s, from NVIDIA's data sheets. First match
# of the substring in nvidia-smi's name wins, so the more specific names come first.
PEAK_BF16_DENSE = [
    ("GH200", 989e12), ("H200", 989e12), ("H100 NVL", 835e12), ("H100 PCIe", 756e12), ("H100", 989e12),
    ("H800", 989e12), ("H20", 148e12), ("B200", 2250e12), ("A100", 312e12), ("A800", 312e12),
    ("L40S", 362e12), ("L40", 181e12), ("A10G", 70e12), ("A10", 125e12), ("L4", 121e12),
]


# ------------------------------------------------------------------------------------------------
# small helpers
# ------------------------------------------------------------------------------------------------

def now() -> float:
    return time.time()


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_data_dir() -> Path | None:
    """The shared data: $MEDSTUDIO_SHARED_DATA, bench/gpu/data (staged for a device run), /work/shared/data."""
    cands = [os.environ.get("MEDSTUDIO_SHARED_DATA", ""), str(HERE / "data"), "/work/shared/data",
             str(ROOT.parent / "shared" / "data"), str(ROOT / "shared" / "data")]
    for c in cands:
        if c and (Path(c) / "cmtmedqa_multiturn.jsonl").is_file():
            return Path(c)
    return None


def read_jsonl(path: Path, n: int | None = None) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
            if n is not None and len(rows) >= n:
                break
    return rows


def peak_flops(gpu_name: str) -> tuple[float | None, str]:
    for key, flops in PEAK_BF16_DENSE:
        if key.lower() in (gpu_name or "").lower():
            return flops, f"{key} dense bf16 {flops / 1e12:.0f} TFLOP/s (data-sheet table, matched on {gpu_name!r})"
    return None, f"no peak bf16 figure for {gpu_name or 'this device'!r}"


def gpu_info() -> dict[str, Any]:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        line = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else ""
    except (OSError, subprocess.TimeoutExpired):
        line = ""
    if not line:
        return {"name": "", "present": False}
    name, mem, driver = [x.strip() for x in (line.split(",") + ["", ""])[:3]]
    return {"name": name, "memory": mem, "driver": driver, "present": True}


def versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {"python": sys.version.split()[0]}
    for pkg in ("torch", "vllm", "deepspeed", "transformers", "trl", "accelerate", "tokenizers", "datasets",
                "django", "openai", "medstudio"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def have(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def need(*modules: str) -> None:
    missing = [m for m in modules if not have(m)]
    if missing:
        raise Skip(f"not installed here: {', '.join(missing)}")


def wait_gpu_idle(timeout: float = 20.0) -> None:
    """After a group: give the driver a moment to release the memory of the processes just killed."""
    t0 = now()
    while now() - t0 < timeout:
        try:
            p = subprocess.run(["nvidia-smi", "--query-compute-apps=pid", "--format=csv,noheader"], capture_output=True,
                               text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return
        if p.returncode != 0 or not p.stdout.strip():
            return
        time.sleep(1.0)


def cuda_ok() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


def log_tail(path: Path, n: int = 30) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def rnd(x: Any, k: int = 4) -> Any:
    if isinstance(x, float):
        return float(f"{x:.{k}g}") if x == x else None
    return x


# ------------------------------------------------------------------------------------------------
# model
# ------------------------------------------------------------------------------------------------

def corpus_texts(data_dir: Path, max_chars: int) -> list[str]:
    """Every string of at least 8 characters in the shared JSONL files, round-robin over the files."""
    def strings(obj: Any):
        if isinstance(obj, str):
            if len(obj) >= 8:
                yield obj
        elif isinstance(obj, dict):
            for k, v in obj.items():
                if k not in ("id", "source", "lang", "subset"):
                    yield from strings(v)
        elif isinstance(obj, list):
            for v in obj:
                yield from strings(v)

    iters = []
    for p in sorted(data_dir.glob("*.jsonl")):
        iters.append((json.loads(line) for line in open(p, encoding="utf-8") if line.strip()))
    texts, total = [], 0
    while iters and total < max_chars:
        for it in list(iters):
            try:
                for s in strings(next(it)):
                    texts.append(s)
                    total += len(s)
            except StopIteration:
                iters.remove(it)
    return texts


def train_tokenizer(texts: list[str], vocab_size: int):
    """Byte-level BPE with the test model's special tokens and ChatML template (tests/fakes/tiny_models.py)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from tests.fakes.tiny_models import CHAT_TEMPLATE, SPECIAL_TOKENS

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=None, eos_token="<|im_end|>", pad_token="<pad>",
                                   unk_token=None, additional_special_tokens=["<|im_start|>", "<|endoftext|>"],
                                   model_max_length=MODEL_SHAPE["max_position_embeddings"], chat_template=CHAT_TEMPLATE)


def reinit_copy(src: Path, dst: Path, seed: int) -> str:
    """Same config and tokenizer as `src`, fresh random weights (theta_base for online merging)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(src)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(dtype, torch.dtype):
        model.to(dtype)
    model.save_pretrained(dst)
    AutoTokenizer.from_pretrained(src).save_pretrained(dst)
    return str(dst)


def build_models(ctx: dict) -> dict:
    import torch

    work = Path(ctx["work"]) / "models"
    t0 = time.perf_counter()
    if ctx["dry_run"]:
        from tests.fakes.tiny_models import build_tiny_llama

        model = build_tiny_llama(work / "model", seed=0)
        kind = "tiny test Llama (tests/fakes/tiny_models.py build_tiny_llama)"
        tok_s = 0.0
    else:
        from transformers import LlamaConfig, LlamaForCausalLM

        data = Path(ctx["data_dir"])
        t = time.perf_counter()
        tok = train_tokenizer(corpus_texts(data, 4_000_000), MODEL_SHAPE["vocab_size"])
        tok_s = time.perf_counter() - t
        shape = dict(MODEL_SHAPE)
        shape["vocab_size"] = len(tok)
        config = LlamaConfig(**shape, initializer_range=INIT_RANGE, bos_token_id=None,
                             eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"), pad_token_id=tok.pad_token_id,
                             tie_word_embeddings=False)
        torch.manual_seed(0)
        m = LlamaForCausalLM(config).to(torch.bfloat16).eval()
        # The judge job sends no max_tokens: a served model's generation_config decides the reply
        # length (vLLM reads max_new_tokens from it). A random model never stops on its own.
        m.generation_config.max_new_tokens = int(ctx["sizes"]["judge_max_tokens"])
        model = str(work / "model")
        m.save_pretrained(model)
        tok.save_pretrained(model)
        del m
        kind = "Llama-shaped, random weights (init std %g), BPE tokenizer trained on the shared data" % INIT_RANGE
    base = reinit_copy(Path(model), work / "base", seed=1)
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        meta = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model))
    n_params = sum(p.numel() for p in meta.parameters())
    n_embed = sum(p.numel() for n, p in meta.named_parameters() if "embed_tokens" in n or "lm_head" in n)
    cfg = json.loads((Path(model) / "config.json").read_text())
    return {"model": model, "base_model": base, "kind": kind, "n_params": n_params, "n_params_non_embedding": n_params - n_embed,
            "config": {k: cfg.get(k) for k in ("hidden_size", "num_hidden_layers", "intermediate_size",
                                               "num_attention_heads", "num_key_value_heads", "vocab_size",
                                               "max_position_embeddings", "dtype", "torch_dtype") if k in cfg},
            "tokenizer_train_s": round(tok_s, 1), "build_s": round(time.perf_counter() - t0, 1)}


# ------------------------------------------------------------------------------------------------
# part results
# ------------------------------------------------------------------------------------------------

class Skip(Exception):
    """Raised by a part (or half of one) that cannot run here; the message is the reason."""


def result(figures: dict | None = None, *, mode: str, notes: list[str] | None = None, skipped: str = "",
           checks: dict | None = None, **extra: Any) -> dict:
    r = {"mode": mode, "figures": {k: rnd(v) for k, v in (figures or {}).items()}, "notes": notes or []}
    if checks:
        r["checks"] = checks
    if skipped:
        r["skipped"] = skipped if skipped.startswith("skipped:") else f"skipped: {skipped}"
    r.update(extra)
    return r


def write_part(ctx: dict, name: str, payload: dict) -> None:
    d = Path(ctx["work"]) / "parts"
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f".{name}.tmp"
    tmp.write_text(json.dumps(payload, indent=1, ensure_ascii=False, default=str))
    tmp.replace(d / f"{name}.json")


def run_part(ctx: dict, name: str, fn: Callable[[dict], dict]) -> None:
    t0 = time.perf_counter()
    log(f"part {name}: start")
    try:
        payload = fn(ctx)
        measured = any(v is not None for v in payload.get("figures", {}).values())
        if payload.get("error"):
            payload["status"] = "error"  # a half failed; the other half's figures are kept
        elif payload.get("skipped"):
            payload["status"] = "partial" if measured else "skipped"
        else:
            payload["status"] = "ok" if measured else "error"
            if not measured:
                payload["error"] = "the part returned no figure"
    except Skip as exc:
        payload = result(mode=ctx["mode"], skipped=str(exc))
        payload["status"] = "skipped"
    except BaseException as exc:  # noqa: BLE001 - every failure is reported, the next part still runs
        payload = {"status": "error", "error": f"{type(exc).__name__}: {exc}"[:2000],
                   "traceback": traceback.format_exc(limit=12)[-6000:], "mode": ctx["mode"], "figures": {}}
        if isinstance(exc, KeyboardInterrupt):
            write_part(ctx, name, {**payload, "title": PARTS[name], "wall_s": round(time.perf_counter() - t0, 1)})
            raise
    payload["title"] = PARTS[name]
    payload["wall_s"] = round(time.perf_counter() - t0, 1)
    write_part(ctx, name, payload)
    log(f"part {name}: {payload['status']} in {payload['wall_s']} s"
        + (f" ({payload.get('error') or payload.get('skipped')})" if payload["status"] in ("error", "skipped") else ""))


def deadline(ctx: dict) -> float:
    return float(ctx.get("group_deadline") or (now() + 3600))


# ------------------------------------------------------------------------------------------------
# a. ConFilter
# ------------------------------------------------------------------------------------------------

_SHARED: dict[str, Any] = {}  # objects parts of one worker share (the offline vLLM engine)


class CountingLM:
    """Delegates to a CausalLM and counts the tokens of the sequences it is asked to score."""

    def __init__(self, lm: Any):
        self._lm = lm
        self.tokens = 0
        self.sequences = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lm, name)

    def token_logprobs(self, sequences, targets):
        self.tokens += sum(len(s) for s in sequences)
        self.sequences += len(sequences)
        return self._lm.token_logprobs(sequences, targets)


def _dialogue_records(ctx: dict, n: int):
    from curation.pipeline.base import RecordView

    rows = read_jsonl(Path(ctx["data_dir"]) / "cmtmedqa_multiturn.jsonl", n)
    return [RecordView(id=i, kind="dialogue", lang=r.get("lang", "zh"), text="",
                       content={"turns": r["turns"], **({"system": r["system"]} if r.get("system") else {})})
            for i, r in enumerate(rows)]


def _score_all(lm: Any, records: list) -> tuple[list, float, int]:
    from curation.pipeline.confilter import ConFilter

    counting = CountingLM(lm)
    scorer = ConFilter(counting)
    scorer.score_batch(records[: min(4, len(records))])  # warm-up (kernels, allocator)
    counting.tokens = 0
    t = time.perf_counter()
    out = scorer.score_batch(records)
    return out, time.perf_counter() - t, counting.tokens


def _compare_cf(ra: list, rb: list) -> dict:
    cf_diffs, loss_diffs, mismatched, n_turns, value_diffs = [], [], 0, 0, []
    for x, y in zip(ra, rb):
        if (x.value is None) != (y.value is None):
            mismatched += 1
        elif x.value is not None:
            value_diffs.append(abs(x.value - y.value))
        for tx, ty in zip(x.detail.get("turns", []), y.detail.get("turns", [])):
            cx, cy = tx.get("cf"), ty.get("cf")
            if (cx is None) != (cy is None):
                mismatched += 1
            elif cx is not None and tx.get("status") == "ok":
                n_turns += 1
                cf_diffs.append(abs(cx - cy))
            for key in ("loss_cond", "loss_direct"):
                if tx.get(key) is not None and ty.get(key) is not None:
                    loss_diffs.append(abs(tx[key] - ty[key]))
    max_cf = max(cf_diffs, default=0.0)
    return {"turns_compared": n_turns, "cf_max_abs_diff": max_cf, "cf_mean_abs_diff": statistics.fmean(cf_diffs) if cf_diffs else 0.0,
            "value_max_abs_diff": max(value_diffs, default=0.0), "loss_max_abs_diff": max(loss_diffs, default=0.0),
            "scored_mismatches": mismatched, "equal_within_1e-3": bool(n_turns and max_cf <= EQ_TOL and not mismatched)}


def part_a(ctx: dict) -> dict:
    need("transformers", "numpy")
    from medstudio.inference import lm as lmmod

    sizes = ctx["sizes"]
    records = _dialogue_records(ctx, sizes["n_dialogues"])
    notes = [f"{len(records)} dialogues from cmtmedqa_multiturn.jsonl; ConFilter.score_batch (one pass per dialogue "
             "+ one batched pass over the turns alone); 4-dialogue warm-up per backend not timed"]
    notes.append(f"load_causal_lm(backend='auto') would pick: {'vllm' if lmmod.vllm_available() else 'transformers'}")
    skipped, error = "", ""
    # The vLLM side first: its engine sizes the KV cache from the memory free at start-up.
    if ctx["dry_run"]:
        other = lmmod.load_causal_lm(ctx["model"], setting=SETTING, backend="transformers", token_budget=512)
        other_label = "transformers (token_budget 512; dry-run stand-in for vLLM)"
    elif not have("vllm"):
        other, other_label, skipped = None, "vllm", "skipped: vllm is not installed: vLLM side not measured"
    elif not cuda_ok():
        other, other_label, skipped = None, "vllm", "skipped: no CUDA device: vLLM side not measured"
    else:
        other_label = "vllm (VLLMLM: prompt_logprobs=0)"
        try:
            other = lmmod.load_causal_lm(ctx["model"], setting=SETTING, backend="vllm")
            _SHARED["vllm_lm"] = other
        except Exception as exc:  # keep the transformers half
            other, error = None, f"vLLM side failed to load: {type(exc).__name__}: {exc}"[:2000]
            _SHARED["vllm_error"] = error
    tf = lmmod.load_causal_lm(ctx["model"], setting=SETTING, backend="transformers")
    notes.append(f"transformers side: TransformersLM on {tf.device}, {next(tf.model.parameters()).dtype}")
    res_t, dt_t, tok_t = _score_all(tf, records)
    figures: dict[str, Any] = {"transformers_dialogues_per_s": len(records) / dt_t, "transformers_tokens_per_s": tok_t / dt_t,
                               "transformers_s": dt_t}
    checks: dict[str, Any] = {}
    if other is not None:
        try:
            res_v, dt_v, tok_v = _score_all(other, records)
        except Exception as exc:  # keep the transformers half
            other, error = None, f"{other_label} failed while scoring: {type(exc).__name__}: {exc}"[:2000]
    if other is not None:
        figures.update({"vllm_dialogues_per_s": len(records) / dt_v, "vllm_tokens_per_s": tok_v / dt_v, "vllm_s": dt_v,
                        "throughput_ratio_vllm_over_transformers": dt_t / dt_v})
        cmp = _compare_cf(res_v, res_t)
        figures.update({k: cmp[k] for k in ("cf_max_abs_diff", "cf_mean_abs_diff", "value_max_abs_diff", "loss_max_abs_diff",
                                            "turns_compared", "scored_mismatches")})
        checks["cf_equal_within_1e-3"] = cmp["equal_within_1e-3"]
        if not cmp["turns_compared"]:
            notes.append("no turn had a CF on both sides: the equality check has nothing to compare")
    # The precision floor: the same transformers path in fp32. If the vLLM-vs-transformers difference
    # is of this size, it is bf16 rounding, not a disagreement between the code paths.
    ref = lmmod.load_causal_lm(ctx["model"], setting=SETTING, backend="transformers", dtype="float32",
                               token_budget=8192)
    res_32, dt_32, _ = _score_all(ref, records)
    floor = _compare_cf(res_t, res_32)
    figures["transformers_vs_fp32_cf_max_abs_diff"] = floor["cf_max_abs_diff"]
    figures["transformers_fp32_s"] = dt_32
    if other is not None:
        figures["compared_vs_fp32_cf_max_abs_diff"] = _compare_cf(res_v, res_32)["cf_max_abs_diff"]
    notes.append("precision floor: transformers in fp32 on the same dialogues (transformers_vs_fp32_cf_max_abs_diff; "
                 "compared_vs_fp32_cf_max_abs_diff for the compared side)")
    scored = sum(r.value is not None for r in res_t)
    notes.append(f"{scored}/{len(records)} dialogues got a CF (transformers side)")
    return result(figures, mode=ctx["mode"], notes=notes, skipped=skipped, checks=checks,
                  backends={"reference": "transformers", "compared": other_label}, **({"error": error} if error else {}))


# ------------------------------------------------------------------------------------------------
# e. memorisation-audit generation
# ------------------------------------------------------------------------------------------------

def part_e(ctx: dict) -> dict:
    need("transformers")
    from training.pipeline.evaluation import GenParams, TransformersGenerator, VLLMGenerator
    from training.pipeline.memorization import judge_memorised, make_probes, memorisation_rate

    sizes = ctx["sizes"]
    rows = read_jsonl(Path(ctx["data_dir"]) / "huatuo26m_test_qa.jsonl", sizes["gen_probes"] * 2)
    probes = make_probes([(i, r.get("answer") or "") for i, r in enumerate(rows)], max_prefix_units=64,
                         max_suffix_units=64)[: sizes["gen_probes"]]
    prompts = [p.prefix for p in probes]
    params = GenParams(max_new_tokens=sizes["gen_tokens"], temperature=0.0)
    device = "cuda" if (cuda_ok() and not ctx["dry_run"]) else "cpu"
    notes = [f"{len(prompts)} probes (huatuo26m answers, prefix <= 64 units), greedy, max_new_tokens {params.max_new_tokens}; "
             "tokens = generated tokens reported by each backend; 2-prompt warm-up not timed"]

    def timed(gen) -> tuple[list, float, int]:
        gen.generate(prompts[:2], GenParams(max_new_tokens=4))
        t = time.perf_counter()
        outs = gen.generate(prompts, params)
        dt = time.perf_counter() - t
        errors = [o.error for o in outs if o.text is None]
        if errors:
            raise RuntimeError(f"{len(errors)} generations failed: {errors[0][:300]}")
        return outs, dt, sum(int(o.n_output_tokens or 0) for o in outs)

    tf = TransformersGenerator(ctx["model"], device=device, batch_size=sizes["gen_batch"])
    outs_t, dt_t, tok_t = timed(tf)
    figures: dict[str, Any] = {"transformers_tokens_per_s": tok_t / dt_t, "transformers_s": dt_t,
                               "transformers_tokens": tok_t}
    skipped, label = "", "vllm (VLLMGenerator)"
    if ctx["dry_run"]:
        other = TransformersGenerator(ctx["model"], device=device, batch_size=1)
        label = "transformers batch 1 (dry-run stand-in for vLLM)"
    elif not have("vllm") or not cuda_ok():
        other, skipped = None, "skipped: vllm or CUDA missing: vLLM side not measured"
    elif _SHARED.get("vllm_error"):
        other, skipped = None, "skipped: vLLM side not retried (the engine failed to load in part a)"
    else:
        other = VLLMGenerator(ctx["model"], gpu_memory_utilization=0.5)
        if _SHARED.get("vllm_lm") is not None:
            # Reuse part a's engine (same model, same process): one vLLM start-up instead of two.
            other._llm = _SHARED["vllm_lm"].llm
            notes.append("vLLM engine shared with part a (VLLMLM's LLM, gpu_memory_utilization 0.85)")
    error = ""
    if other is not None:
        try:
            outs_v, dt_v, tok_v = timed(other)
        except Exception as exc:  # keep the transformers half
            other, error = None, f"vLLM side failed: {type(exc).__name__}: {exc}"[:2000]
    if other is not None:
        same = sum(a.text == b.text for a, b in zip(outs_t, outs_v))
        figures.update({"vllm_tokens_per_s": tok_v / dt_v, "vllm_s": dt_v, "vllm_tokens": tok_v,
                        "tokens_per_s_ratio_vllm_over_transformers": (tok_v / dt_v) / (tok_t / dt_t) if tok_t else None,
                        "identical_outputs": same})
        notes.append(f"identical greedy outputs {same}/{len(prompts)} (bf16 kernels and padding can flip near-ties)")
        rate = memorisation_rate(judge_memorised(probes, [o.text for o in outs_v]))
        figures["vllm_flagged"] = rate["flagged"]
    rate_t = memorisation_rate(judge_memorised(probes, [o.text for o in outs_t]))
    figures["transformers_flagged"] = rate_t["flagged"]
    return result(figures, mode=ctx["mode"], notes=notes, skipped=skipped, **({"error": error} if error else {}),
                  backends={"reference": f"transformers batched (batch {sizes['gen_batch']}, {device})", "compared": label})


# ------------------------------------------------------------------------------------------------
# c / d. training runs through training/pipeline/launcher.py
# ------------------------------------------------------------------------------------------------

def _write_records(path: Path, records: list[dict]) -> str:
    with open(path, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    return str(path)


def _dist_env() -> dict[str, str]:
    """A one-process 'distributed' world, for runs that start without a launcher setting it up."""
    return {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "RANK": "0", "LOCAL_RANK": "0",
            "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1"}


def _throughput(rows: list[dict]) -> dict[str, Any]:
    """Steady-state tokens/s and step time from metrics.jsonl log rows (first logged step = warm-up, left out)."""
    logs = [r for r in rows if r.get("event") == "log" and r.get("time") is not None]
    end = next((r for r in rows if r.get("event") == "end"), None)
    out: dict[str, Any] = {"steps": (end or {}).get("step") or (logs[-1]["step"] if logs else 0)}
    if len(logs) >= 3:
        a, b = logs[1], logs[-1]
        dt = b["time"] - a["time"]
        if dt > 0 and b["step"] > a["step"]:
            out["step_s"] = dt / (b["step"] - a["step"])
            if b.get("tokens") and a.get("tokens") is not None and b["tokens"] > a["tokens"]:
                out["tokens_per_s"] = (b["tokens"] - a["tokens"]) / dt
            out["basis"] = f"log rows of steps {a['step']}..{b['step']}"
    if "tokens_per_s" not in out and end and end.get("tokens") and end.get("train_runtime"):
        out["tokens_per_s"] = end["tokens"] / end["train_runtime"]
        out.setdefault("step_s", end["train_runtime"] / max(1, end.get("step") or 1))
        out["basis"] = "end row: tokens / train_runtime (start-up of the first step included)"
    if end:
        out["tokens_seen"] = end.get("tokens")
        out["train_runtime_s"] = end.get("train_runtime")
    return out


def _probe_memory(probe_dir: Path) -> dict[str, Any]:
    best: dict[str, Any] = {}
    for f in probe_dir.glob("*.json"):
        try:
            rec = json.loads(f.read_text())
        except ValueError:
            continue
        for k in ("cuda_max_memory_allocated", "cuda_max_memory_reserved", "max_rss_kib"):
            if rec.get(k) is not None and rec[k] > best.get(k, -1):
                best[k] = rec[k]
    return best


def _train_once(ctx: dict, spec, label: str, how: str, extra_env: dict[str, str] | None = None) -> dict:
    """One training run through the project's launcher module: build_command or bare_command,
    started with launcher.start and watched by launcher.supervise (as the training job does)."""
    from training.pipeline import launcher

    run_dir = Path(ctx["work"]) / "runs" / label
    run_dir.mkdir(parents=True, exist_ok=True)
    spec = launcher.prepare_run_dir(spec, run_dir)
    cmd = launcher.build_command(spec, run_dir) if how == "launched" else launcher.bare_command(run_dir)
    probe = run_dir / "probe"
    env = {"BENCH_PROBE_DIR": str(probe), "PYTHONPATH": os.pathsep.join([str(HERE / "probe"), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    env.update(extra_env or {})
    if ctx["dry_run"]:
        env.setdefault("OMP_NUM_THREADS", "2")
    rows: list[dict] = []
    limit = deadline(ctx) - 5
    t0 = time.perf_counter()
    proc = launcher.start(cmd, run_dir, env=env)
    outcome = launcher.supervise(proc, run_dir, on_rows=rows.extend, should_stop=lambda: now() > limit, poll=0.5)
    wall = time.perf_counter() - t0
    if outcome.status != "succeeded":
        raise RuntimeError(f"{label} run {outcome.status} (rc {outcome.returncode}) after {wall:.0f} s; command "
                           f"{' '.join(cmd[1:6])} ...; log tail:\n{outcome.log_tail[-3000:]}")
    r = _throughput(rows)
    r.update(_probe_memory(probe))
    r["wall_s"] = wall
    r["command"] = " ".join(Path(c).name if i == 0 else c for i, c in enumerate(cmd))
    return r


def _runs(ctx: dict, plans: list[tuple[str, Any, str, str, dict | None]]) -> tuple[dict[str, dict], str]:
    """Run each (side, spec, label, how, env); one failing run does not stop the next."""
    out: dict[str, dict] = {}
    errors = []
    for side, spec, label, how, env in plans:
        try:
            out[side] = _train_once(ctx, spec, label, how, env)
        except Exception as exc:  # noqa: BLE001
            out[side] = {"error": f"{type(exc).__name__}: {exc}"[:4000]}
            errors.append(f"{side}: {type(exc).__name__}: {str(exc)[:1500]}")
    if len(errors) == len(plans):
        raise RuntimeError(" | ".join(errors))
    return out, " | ".join(errors)


def part_c(ctx: dict) -> dict:
    from training.pipeline.specs import Resources, default_spec

    sizes, gpu = ctx["sizes"], not ctx["dry_run"]
    need("trl", "datasets", "accelerate", *(("deepspeed",) if gpu else ()))
    if gpu and not cuda_ok():
        raise Skip("no CUDA device")
    rows = read_jsonl(Path(ctx["data_dir"]) / "cmtmedqa_multiturn.jsonl", max(64, sizes["sft_steps"] * sizes["sft_batch"] * 2))
    data = _write_records(Path(ctx["work"]) / "sft.jsonl", [{"kind": "dialogue", "content": {"turns": r["turns"]}} for r in rows])
    res = Resources(gpus_per_node=1, launcher="deepspeed", distributed="zero3") if gpu else Resources()
    spec = default_spec("sft", ctx["model"], data_path=data, max_length=sizes["sft_len"], per_device_batch_size=sizes["sft_batch"],
                        global_batch_size=sizes["sft_batch"], max_steps=sizes["sft_steps"], learning_rate=1e-5,
                        logging_steps=1, save_steps=10**6, save_total_limit=1, val_fraction=0.0, bf16=gpu, resources=res)
    notes = [f"SFT on cmtmedqa dialogues, seq <= {sizes['sft_len']}, batch {sizes['sft_batch']}, {sizes['sft_steps']} steps, "
             "assistant-only loss; tokens/s = num_input_tokens_seen (padding included) over log-row time, first step left out"]
    if gpu:
        notes.append("launched: launcher.build_command (deepspeed launcher, ZeRO-3, bf16); bare: launcher.bare_command with "
                     "MASTER_ADDR/RANK/WORLD_SIZE set for a one-process DeepSpeed world")
    else:
        notes.append("dry run: CPU, no ZeRO-3 (specs.py refuses zero3 on CPU): accelerate launch --cpu vs bare")
    runs, error = _runs(ctx, [("launched", spec, "sft-launched", "launched", None),
                              ("bare", spec, "sft-bare", "bare", _dist_env() if gpu else None)])
    launched, bare = runs["launched"], runs["bare"]
    figures: dict[str, Any] = {"launched_tokens_per_s": launched.get("tokens_per_s"), "bare_tokens_per_s": bare.get("tokens_per_s"),
                               "launched_step_s": launched.get("step_s"), "bare_step_s": bare.get("step_s"),
                               "launched_wall_s": launched.get("wall_s"), "bare_wall_s": bare.get("wall_s")}
    if launched.get("tokens_per_s") and bare.get("tokens_per_s"):
        figures["ratio_launched_over_bare"] = launched["tokens_per_s"] / bare["tokens_per_s"]
    peak, peak_note = peak_flops(ctx["gpu"].get("name", "")) if gpu else (None, "no GPU peak on CPU")
    skipped = ""
    if peak:
        for side, r in (("launched", launched), ("bare", bare)):
            if r.get("tokens_per_s"):
                figures[f"{side}_mfu"] = 6 * ctx["n_params"] * r["tokens_per_s"] / peak
        notes.append(f"MFU = 6 x {ctx['n_params']:,} params x tokens/s / peak; peak: {peak_note}")
    else:
        skipped = f"skipped: MFU not computed ({peak_note})"
    return result(figures, mode=ctx["mode"], notes=notes, skipped=skipped, runs=runs, **({"error": error} if error else {}))


def part_d(ctx: dict) -> dict:
    from training.pipeline.specs import MergingSpec, Resources, default_spec

    sizes, gpu = ctx["sizes"], not ctx["dry_run"]
    need("trl", "datasets", "accelerate")
    if gpu and not cuda_ok():
        raise Skip("no CUDA device")
    rows = read_jsonl(Path(ctx["data_dir"]) / "hh_rlhf_harmless_pairs.jsonl", max(32, sizes["dpo_steps"] * sizes["dpo_batch"] * 2))
    data = _write_records(Path(ctx["work"]) / "pairs.jsonl", [{"kind": "pair", "content": {
        "prompt_turns": r["prompt_turns"], "chosen": r["chosen"], "rejected": r["rejected"]}} for r in rows])
    dist = os.environ.get("BENCH_DPO_DISTRIBUTED", "fsdp")  # "none" reruns d without FSDP if FSDP fails
    res = Resources(gpus_per_node=1, distributed=dist) if gpu else Resources()
    common = dict(data_path=data, max_length=sizes["dpo_len"], per_device_batch_size=sizes["dpo_batch"],
                  global_batch_size=sizes["dpo_batch"], max_steps=sizes["dpo_steps"], logging_steps=1, save_steps=10**6,
                  save_total_limit=1, bf16=gpu, resources=res)
    merge = MergingSpec(enabled=True, method="ondare", p=0.01, alpha=1e-7, base_model=ctx["base_model"])
    spec_m = default_spec("dpo", ctx["model"], merging=merge, **common)
    spec_p = default_spec("dpo", ctx["model"], **common)
    # accelerate launch with one process sets up no process group, which FSDP needs: give it a world of one.
    fsdp = gpu and dist == "fsdp"
    runs, error = _runs(ctx, [("ondare", spec_m, "dpo-ondare", "launched", _dist_env() if fsdp else None),
                              ("plain", spec_p, "dpo-plain", "launched", _dist_env() if fsdp else None)])
    merged, plain = runs["ondare"], runs["plain"]
    figures: dict[str, Any] = {"ondare_step_s": merged.get("step_s"), "plain_step_s": plain.get("step_s"),
                               "ondare_wall_s": merged.get("wall_s"), "plain_wall_s": plain.get("wall_s")}
    if merged.get("step_s") and plain.get("step_s"):
        figures["step_time_ratio_ondare_over_plain"] = merged["step_s"] / plain["step_s"]
    notes = [f"DPO on hh-rlhf harmless pairs, seq <= {sizes['dpo_len']}, batch {sizes['dpo_batch']}, {sizes['dpo_steps']} steps; "
             "OnDARE p=0.01 alpha=1e-7, theta_base = the same architecture with other random weights; "
             "step time = mean over the log rows after the first step"]
    skipped = ""
    if gpu:
        notes.append(f"both runs: launcher.build_command (accelerate launch, 1 process) with distributed={dist} "
                     + ("(train.py: FSDP2 'full_shard auto_wrap', named DTensor parameters = original parameters), bf16; "
                        "RANK/WORLD_SIZE/MASTER_ADDR set so the one process forms a process group" if fsdp else
                        "(BENCH_DPO_DISTRIBUTED: no FSDP), bf16"))
        for side, r in (("ondare", merged), ("plain", plain)):
            v = r.get("cuda_max_memory_allocated")
            figures[f"{side}_peak_mem_gib"] = v / 2**30 if v is not None else None
            if r.get("cuda_max_memory_reserved") is not None:
                figures[f"{side}_peak_reserved_gib"] = r["cuda_max_memory_reserved"] / 2**30
        if figures.get("ondare_peak_mem_gib") is None:
            notes.append("no CUDA memory figure came back from the training process (probe: bench/gpu/probe/sitecustomize.py)")
    else:
        notes.append("dry run: CPU, no FSDP (specs.py refuses fsdp on CPU); memory = peak RSS instead of CUDA memory")
        for side, r in (("ondare", merged), ("plain", plain)):
            figures[f"{side}_peak_rss_mib"] = r["max_rss_kib"] / 1024 if r.get("max_rss_kib") else None
        skipped = "skipped: torch.cuda.max_memory_allocated (no CUDA in a dry run; peak RSS reported instead)"
    return result(figures, mode=ctx["mode"], notes=notes, skipped=skipped, runs=runs, **({"error": error} if error else {}))


# ------------------------------------------------------------------------------------------------
# b. vllm serve + registered backend + annotation judge job
# ------------------------------------------------------------------------------------------------

def _manage(ctx: dict, env: dict, *args: str, timeout: float = 120) -> str:
    p = subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], cwd=str(ROOT), env=env, capture_output=True,
                       text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed (rc {p.returncode}): {(p.stderr or p.stdout)[-2000:]}")
    return p.stdout.strip()


def _wait_http(url: str, until: float, proc: subprocess.Popen | None = None, log_path: Path | None = None) -> float:
    import urllib.request

    t0 = time.perf_counter()
    while now() < until:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"vllm serve exited (rc {proc.returncode}) before answering; log tail:\n"
                               f"{log_tail(log_path) if log_path else ''}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return time.perf_counter() - t0
        except OSError:
            pass
        time.sleep(1.0)
    raise TimeoutError(f"{url} did not answer within the part's budget; log tail:\n{log_tail(log_path) if log_path else ''}")


def _fake_judge(request: dict) -> str:
    """Dry run: answer with the example object the judge prompt itself shows (always a valid label)."""
    system = next((m["content"] for m in request.get("messages", []) if m.get("role") == "system"), "")
    marker = "shaped like this example: "
    return system.split(marker, 1)[1].strip() if marker in system else json.dumps({"score": 3})


def _judge_job(ctx: dict, env: dict, backend_name: str, dialogues: list[dict]) -> dict:
    """In this process, on the bench's SQLite DB: import the dialogues, build a rating queue, and run
    the annotation judge job (medstudio/annotation: judge_start -> job -> judge_queue handler)."""
    os.environ.update(env)
    import django

    django.setup()
    from medstudio.annotation import services as annotation
    from medstudio.datasets.services import import_start
    from medstudio.jobs.models import Job
    from medstudio.jobs.services import job_execute

    src = Path(ctx["work"]) / "judge_dialogues.jsonl"
    _write_records(src, dialogues)
    job = import_start(user=None, path=src, fmt="jsonl", kind="dialogue", dataset="bench-dialogues", enqueue=False)
    job_execute(job_id=job.pk)
    job.refresh_from_db()
    if job.status != "succeeded":
        raise RuntimeError(f"dataset import failed: {job.error}")
    from medstudio.datasets.models import Dataset

    ds = Dataset.objects.get(name="bench-dialogues")
    q = annotation.question_create(user=None, name="quality", kind="rating")
    queue = annotation.queue_create(user=None, name="bench judge queue", dataset=ds, question=q, annotators_per_item=1)
    t = time.perf_counter()
    jobs = annotation.judge_start(queue=queue, user=None, backend=backend_name, passes=1, temperature=0.7)
    dt = time.perf_counter() - t
    j = Job.objects.get(pk=jobs[0].pk)
    res = j.result or {}
    return {"status": j.status, "error": j.error, "labelled": res.get("labelled"), "failed": res.get("failed"),
            "items": queue.n_items, "seconds": dt, "params": {k: v for k, v in j.params.items() if k != "api_key_env"}}


def part_b(ctx: dict) -> dict:
    sizes = ctx["sizes"]
    work = Path(ctx["work"])
    need("django", "openai")
    db = Path(ctx["db_path"])
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{db}", DJANGO_SETTINGS_MODULE="medstudio.settings",
               MEDSTUDIO_JOBS_EAGER="1", MEDSTUDIO_CHAT_API_KEY="EMPTY")
    env.pop("MEDSTUDIO_CACHE_URL", None)  # a fresh DB restarts ids: keep a shared (Redis) cache out of it
    rows = read_jsonl(Path(ctx["data_dir"]) / "cmtmedqa_multiturn.jsonl", sizes["judge_items"])
    dialogues = [{"id": r.get("id"), "lang": r.get("lang", "zh"), "turns": r["turns"]} for r in rows]
    notes = [f"{len(dialogues)} cmtmedqa dialogues imported as a dataset; rating question; 1 annotator per item; "
             "annotation judge job (judge_start, eager) through the registered backend; temperature 0.7"]
    figures: dict[str, Any] = {}
    server, log_path, fake = None, work / "vllm_serve.log", None
    started = time.perf_counter()
    try:
        if ctx["dry_run"]:
            from tests.fakes.openai_server import fake_openai_server

            fake = fake_openai_server(chat=_fake_judge)
            base_url, model_name = str(fake.__enter__()), SERVED_NAME
            notes.append("dry run: tests/fakes/openai_server.py answers instead of `vllm serve`")
        else:
            if not cuda_ok():
                raise Skip("no CUDA device")
            vllm_bin = Path(os.environ.get("BENCH_VLLM_BIN") or Path(sys.executable).with_name("vllm"))
            if not vllm_bin.exists():
                raise Skip("vllm is not installed (no `vllm` command beside this Python)")
            port = free_port()
            cmd = [str(vllm_bin), "serve", ctx["model"], "--served-model-name", SERVED_NAME, "--host", "127.0.0.1",
                   "--port", str(port), "--gpu-memory-utilization", "0.5", "--max-model-len", "4096"]
            if os.environ.get("BENCH_VLLM_SERVE_ARGS"):
                cmd += os.environ["BENCH_VLLM_SERVE_ARGS"].split()
            with open(log_path, "ab") as lf:
                server = subprocess.Popen(cmd, stdout=lf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          start_new_session=True, env=dict(os.environ, VLLM_NO_USAGE_STATS="1"))
            base_url, model_name = f"http://127.0.0.1:{port}/v1", SERVED_NAME
            notes.append(f"vllm serve {Path(ctx['model']).name} --gpu-memory-utilization 0.5 --max-model-len 4096; "
                         f"replies capped by the model's generation_config max_new_tokens={sizes['judge_max_tokens']} "
                         "(the judge job sends no max_tokens)")
        # Meanwhile (the server loads): the database.
        t = time.perf_counter()
        _manage(ctx, env, "migrate", "--noinput", "-v0", timeout=300)
        figures["migrate_s"] = time.perf_counter() - t
        if server is not None:
            _wait_http(base_url + "/models", deadline(ctx) - 30, server, log_path)
            figures["server_ready_s"] = time.perf_counter() - started
        out = _manage(ctx, env, "backends", "add", "bench-vllm", "--base-url", base_url, "--model", model_name,
                      "--concurrency", str(sizes["judge_concurrency"]), "--timeout", "120", "--max-retries", "1", "--default")
        notes.append(out.splitlines()[-1] if out else "backend added")
        try:
            check = _manage(ctx, env, "backends", "check", "bench-vllm")
            notes.append(check.splitlines()[-1] if check else "checked")
            figures["backend_check_ok"] = 1
        except RuntimeError as exc:
            figures["backend_check_ok"] = 0
            notes.append(f"backends check failed: {str(exc)[:300]}")
        job = _judge_job(ctx, env, "bench-vllm", dialogues)
        if job["status"] != "succeeded":
            raise RuntimeError(f"judge job {job['status']}: {job['error']}")
        ok, failed = job["labelled"] or 0, job["failed"] or 0
        figures.update({"items": job["items"], "items_ok": ok, "items_failed": failed,
                        "items_per_s": (ok + failed) / job["seconds"] if job["seconds"] else None, "judge_s": job["seconds"]})
        if failed and not ctx["dry_run"]:
            notes.append("failed items are expected with random weights: the replies are not JSON labels")
        return result(figures, mode=ctx["mode"], notes=notes, judge_job=job)
    finally:
        if fake is not None:
            fake.__exit__(None, None, None)
        if server is not None:
            _kill_group(server)


def _kill_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


PART_FUNCS = {"a_confilter": part_a, "b_vllm_serve_judge": part_b, "c_sft_zero3": part_c,
              "d_dpo_ondare_fsdp": part_d, "e_memorisation_generation": part_e}


# ------------------------------------------------------------------------------------------------
# worker and driver
# ------------------------------------------------------------------------------------------------

def worker(group: str, ctx_path: Path) -> int:
    ctx = json.loads(ctx_path.read_text())
    # SIGTERM from the driver's budget -> SystemExit, so launcher.supervise kills its training group.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if group == "build":
        try:
            info = build_models(ctx)
            write_part(ctx, "_build", {"status": "ok", **info})
        except BaseException as exc:  # noqa: BLE001
            write_part(ctx, "_build", {"status": "error", "error": f"{type(exc).__name__}: {exc}",
                                       "traceback": traceback.format_exc(limit=12)})
            return 1
        return 0
    for name in dict(GROUPS)[group]:
        run_part(ctx, name, PART_FUNCS[name])
    return 0


def start_group(ctx: dict, group: str, budget: float) -> tuple[subprocess.Popen, float]:
    work = Path(ctx["work"])
    (work / "logs").mkdir(parents=True, exist_ok=True)
    ctx = dict(ctx, group_deadline=now() + budget)
    ctx_path = work / f"ctx_{group}.json"
    ctx_path.write_text(json.dumps(ctx, indent=1))
    log_path = work / "logs" / f"{group}.log"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", group, "--ctx", str(ctx_path)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log_path, "ab") as lf:
        proc = subprocess.Popen(cmd, stdout=lf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=str(ROOT),
                                env=env, start_new_session=True)
    return proc, now() + budget


def finish_group(proc: subprocess.Popen, group: str, until: float) -> int | None:
    try:
        rc = proc.wait(timeout=max(1.0, until - now()))
    except subprocess.TimeoutExpired:
        log(f"group {group}: budget spent; stopping it")
        _kill_group(proc, grace=15.0)
        rc = None
    finally:
        # Whatever the worker left running (vLLM engine processes, training ranks) goes with its group.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return rc


def run_group(ctx: dict, group: str, budget: float) -> int | None:
    proc, until = start_group(ctx, group, budget)
    return finish_group(proc, group, until)


def group_budget(mode: str, group: str, later: list[str], hard_deadline: float | None) -> tuple[float, str]:
    default, least = BUDGETS[mode][group]
    if hard_deadline is None:
        return float(default), ""
    reserve = sum(BUDGETS[mode][g][1] for g in later) + 10
    budget = min(default, hard_deadline - now() - reserve)
    if budget < least:
        left = max(0.0, hard_deadline - now())
        return budget, f"skipped: out of time ({left:.0f} s left of the run's budget; this part needs >= {least} s)"
    return budget, ""


def collect(ctx: dict, names: list[str], rc: int | None, group: str, budget: float) -> dict[str, dict]:
    out = {}
    work = Path(ctx["work"])
    for name in names:
        f = work / "parts" / f"{name}.json"
        if f.exists():
            out[name] = json.loads(f.read_text())
        else:
            why = f"timed out after its {budget:.0f} s budget" if rc is None else f"worker exited with rc {rc}"
            out[name] = {"title": PARTS[name], "status": "error", "mode": ctx["mode"], "figures": {},
                         "error": f"no result: the {group} worker {why} before this part finished",
                         "log_tail": log_tail(work / "logs" / f"{group}.log")}
    return out


def fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v == 0:
            return "0"
        return f"{v:.3e}" if abs(v) < 1e-2 or abs(v) >= 1e6 else f"{v:,.3f}".rstrip("0").rstrip(".")
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def write_markdown(report: dict, path: Path) -> None:
    dev = report["device"]
    lines = [f"# MedStudio GPU bench ({'DRY RUN on CPU: no GPU figures' if report['dry_run'] else 'GPU run'})", "",
             f"- device: **{dev.get('name') or 'no GPU'}**" + (f" ({dev.get('memory')}, driver {dev.get('driver')})" if dev.get("present") else ""),
             f"- peak bf16 for MFU: {report.get('peak_bf16_note', '–')}",
             f"- model: {report['model'].get('kind', '–')}; {fmt(report['model'].get('n_params'))} parameters "
             f"({fmt(report['model'].get('n_params_non_embedding'))} non-embedding)",
             "- versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items() if v),
             f"- started {report['started']}, wall {fmt(report['wall_s'])} s", ""]
    eq = report["parts"].get("a_confilter", {}).get("checks", {}).get("cf_equal_within_1e-3")
    lines += [f"**ConFilter CF equality within 1e-3: {'PASS' if eq else ('FAIL' if eq is False else 'not checked')}**", ""]
    lines += ["| part | status | figure | value |", "| --- | --- | --- | --- |"]
    for name, p in report["parts"].items():
        figs = [(k, v) for k, v in p.get("figures", {}).items()] + [(k, v) for k, v in p.get("checks", {}).items()]
        status = p.get("status", "?")
        if not figs:
            reason = p.get("skipped") or p.get("error") or ""
            lines.append(f"| {name} | {status} | – | {reason.splitlines()[0][:200] if reason else '–'} |")
            continue
        for i, (k, v) in enumerate(figs):
            lines.append(f"| {name if i == 0 else ''} | {status if i == 0 else ''} | {k} | {fmt(v)} |")
        if p.get("skipped"):
            lines.append(f"| | | note | {p['skipped'][:200]} |")
        if p.get("error"):
            lines.append(f"| | | error | {p['error'].splitlines()[0][:200]} |")
    lines += ["", "## Notes", ""]
    for name, p in report["parts"].items():
        for n in p.get("notes", []):
            lines.append(f"- {name}: {n}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def bundle_logs(work: Path, dest: Path, per_file: int = 400_000) -> None:
    """One file with the end of every log (worker groups, training runs, vllm serve): a device run
    brings back only a few files."""
    files = sorted((work / "logs").glob("*.log")) + sorted((work / "runs").glob("*/train.log")) + \
        sorted(work.glob("*.log"))
    with open(dest, "w", encoding="utf-8") as out:
        for f in files:
            try:
                data = f.read_bytes()[-per_file:].decode("utf-8", errors="replace")
            except OSError:
                continue
            out.write(f"===== {f.relative_to(work)} (last {per_file // 1000} kB) =====\n{data}\n")


def driver(args: argparse.Namespace) -> int:
    t_start = time.perf_counter()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    mode = "dry" if args.dry_run else "gpu"
    work = Path(args.work).resolve() if args.work else out / "work"
    (work / "parts").mkdir(parents=True, exist_ok=True)
    for f in (work / "parts").glob("*.json"):
        f.unlink()
    data_dir = find_data_dir()
    gpu = gpu_info()
    peak, peak_note = peak_flops(gpu.get("name", ""))
    ctx: dict[str, Any] = {"dry_run": args.dry_run, "mode": "dry-run (CPU, tiny model, stand-ins)" if args.dry_run else "gpu",
                           "work": str(work), "data_dir": str(data_dir) if data_dir else "", "sizes": SIZES[mode],
                           "gpu": gpu, "db_path": str(Path(os.environ.get("TMPDIR", "/tmp")) / f"medstudio_gpu_bench_{os.getpid()}.sqlite3")}
    report: dict[str, Any] = {"dry_run": args.dry_run, "started": time.strftime("%Y-%m-%d %H:%M:%S"), "device": gpu,
                              "peak_bf16_flops": peak, "peak_bf16_note": peak_note, "versions": versions(),
                              "data_dir": ctx["data_dir"], "sizes": SIZES[mode], "model": {}, "parts": {}}
    log(f"mode {ctx['mode']}; device {gpu.get('name') or 'none'}; data {data_dir or 'NOT FOUND'}; out {out}")
    hard = args.deadline if args.deadline else None
    parts: dict[str, dict] = {}
    build_err = ""
    if data_dir is None:
        build_err = ("shared data not found: set MEDSTUDIO_SHARED_DATA, or stage it with bench/gpu/stage_data.sh "
                     "(copies it to bench/gpu/data)")
    else:
        budget, skip = group_budget(mode, "build", [g for g, _ in GROUPS], hard)
        if skip:
            build_err = skip
        else:
            log(f"building the model (budget {budget:.0f} s)")
            rc = run_group(ctx, "build", budget)
            bf = work / "parts" / "_build.json"
            info = json.loads(bf.read_text()) if bf.exists() else {"status": "error", "error": f"build worker rc {rc}",
                                                                   "log_tail": log_tail(work / "logs" / "build.log")}
            if info.get("status") != "ok":
                build_err = f"model build failed: {info.get('error')}"
                report["model"] = info
            else:
                report["model"] = {k: v for k, v in info.items() if k != "status"}
                ctx.update(model=info["model"], base_model=info["base_model"], n_params=info["n_params"])
                log(f"model: {info['n_params']:,} parameters in {info['build_s']} s ({info['model']})")
    # GPU: one group after the other (each measures the whole device). Dry run: all groups at once,
    # so the CPU-bound stand-ins share the cores instead of queueing (their timings mean nothing).
    pending: list[tuple[str, list[str], subprocess.Popen, float, float]] = []

    def finish(group: str, names: list[str], proc: subprocess.Popen, until: float, budget: float) -> None:
        rc = finish_group(proc, group, until)
        if gpu.get("present"):
            wait_gpu_idle()
        parts.update(collect(ctx, names, rc, group, budget))
        for n in names:
            p = parts[n]
            shown = {k: v for k, v in list(p.get("figures", {}).items())[:6]}
            log(f"  {n}: {p['status']} {json.dumps(shown, default=str)}"
                + (f" | {(p.get('error') or p.get('skipped') or '').splitlines()[0][:300]}" if p["status"] != "ok" else ""))

    for gi, (group, names) in enumerate(GROUPS):
        if build_err:
            for n in names:
                parts[n] = {"title": PARTS[n], "status": "error", "mode": ctx["mode"], "figures": {}, "error": build_err}
            continue
        budget, skip = group_budget(mode, group, [g for g, _ in GROUPS[gi + 1:]], hard)
        if skip:
            for n in names:
                parts[n] = {"title": PARTS[n], "status": "skipped", "mode": ctx["mode"], "figures": {}, "skipped": skip}
            log(f"group {group}: {skip}")
            continue
        log(f"group {group} ({', '.join(names)}): budget {budget:.0f} s")
        proc, until = start_group(ctx, group, budget)
        if args.dry_run:
            pending.append((group, names, proc, until, budget))
        else:
            finish(group, names, proc, until, budget)
    for group, names, proc, until, budget in pending:
        finish(group, names, proc, until, budget)
    report["parts"] = {n: parts[n] for n in PARTS}
    report["wall_s"] = round(time.perf_counter() - t_start, 1)
    errors = [n for n, p in report["parts"].items() if p.get("status") == "error"]
    report["errors"] = errors
    (out / "gpu_bench.json").write_text(json.dumps(report, indent=1, ensure_ascii=False, default=str), encoding="utf-8")
    write_markdown(report, out / "gpu_bench.md")
    bundle_logs(work, out / "bench_logs.txt")
    try:
        Path(ctx["db_path"]).unlink()
    except OSError:
        pass
    log(f"wrote {out / 'gpu_bench.json'} and {out / 'gpu_bench.md'} in {report['wall_s']} s; "
        f"{len(errors)} part(s) in error{': ' + ', '.join(errors) if errors else ''}")
    return 1 if errors else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(HERE / "out"))
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--deadline", type=float, default=0.0, help="epoch seconds by which the whole run must end (GPU mode)")
    ap.add_argument("--work", default=os.environ.get("BENCH_WORK", ""),
                    help="scratch folder for models, runs and logs (default OUT/work; BENCH_WORK)")
    ap.add_argument("--worker", default="")
    ap.add_argument("--ctx", default="")
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args.worker, Path(args.ctx))
    return driver(args)


if __name__ == "__main__":
    sys.exit(main())
