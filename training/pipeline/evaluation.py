"""Evaluation core (docs/METHODS.md section 5): MCQ prompts and accuracy over seeds, consultation items,
judge prompts and their parsing, per-turn tables, pairwise win/tie/loss, and generation backends.

Plain Python: no Django. torch / transformers / vllm are imported inside the generator classes only.
"""
from __future__ import annotations

import re
import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable, Protocol, Sequence

from training.pipeline.extraction import Extraction, extract_choice, is_correct
from training.pipeline.rouge import rouge_l, win_tie_loss

Message = dict[str, Any]

# ---------------------------------------------------------------------------------------------
# MCQ
# ---------------------------------------------------------------------------------------------

# docs/METHODS.md 5: 0-shot, mean of 3 runs.
DEFAULT_SEEDS = (0, 1, 2)

SUBJECT_ZH = {
    "anatomy": "解剖学", "clinical_knowledge": "临床知识", "college_medical_statistics": "大学医学统计",
    "college_medicine": "大学医学", "genetics": "遗传学", "nutrition": "营养学",
    "professional_medicine": "专业医学", "traditional_chinese_medicine": "中医中药", "virology": "病毒学",
}


def _is_zh(lang: str) -> bool:
    return (lang or "").lower().startswith("zh")


def mcq_messages(content: dict[str, Any], *, lang: str, subject: str = "") -> list[Message]:
    """A 0-shot prompt in the item's own language; multi-letter keys ask for every correct option."""
    options = content.get("options") or {}
    answer = str(content.get("answer") or "")
    multi = len(answer) > 1
    opts = "\n".join(f"{k}. {v}" for k, v in options.items())
    context = (content.get("meta") or {}).get("context") or content.get("context")
    if _is_zh(lang):
        subj = SUBJECT_ZH.get(subject, subject.replace("_", " ")) if subject else "医学"
        kind = "多项选择题（可能有多个正确选项）" if multi else "单项选择题"
        head = f"以下是关于{subj}的{kind}，请直接给出正确答案的选项字母。"
        body = (f"背景：{context}\n\n" if context else "") + f"{content.get('question', '')}\n{opts}\n答案："
    else:
        subj = subject.replace("_", " ") if subject else "medicine"
        kind = "multiple-choice question (there may be several correct options)" if multi else "multiple-choice question"
        head = f"The following is a {kind} about {subj}. Answer with the letter of the correct option."
        body = (f"Context: {context}\n\n" if context else "") + f"Question: {content.get('question', '')}\n{opts}\nAnswer:"
    return [{"role": "user", "content": f"{head}\n\n{body}"}]


@dataclass
class McqItem:
    key: Any  # record id
    subject: str
    options: dict[str, str]
    answer: str


@dataclass
class McqVerdict:
    key: Any
    subject: str
    extraction: Extraction
    correct: bool
    failed: bool  # the generation itself failed (no output at all)


def mcq_verdicts(items: Sequence[McqItem], outputs: Sequence[str | None]) -> list[McqVerdict]:
    """Extract and grade each output; a missing output (failed call) is recorded as failed and wrong."""
    if len(items) != len(outputs):
        raise ValueError(f"{len(items)} items but {len(outputs)} outputs")
    out = []
    for item, text in zip(items, outputs):
        # A single-answer item read as several letters is invalid (two readings), never half right.
        ext = extract_choice(text, item.options, multi=len(item.answer) > 1) if text is not None else Extraction(None, "failed")
        out.append(McqVerdict(item.key, item.subject, ext, is_correct(ext, item.answer), text is None))
    return out


def accuracy_table(verdicts: Iterable[McqVerdict]) -> dict[str, Any]:
    """Accuracy over all items and per subject. Invalid and failed answers count as wrong (never
    guessed), and their rates are reported beside the accuracy so they are not hidden."""
    tot = {"n": 0, "correct": 0, "invalid": 0, "failed": 0}
    per: dict[str, dict[str, int]] = defaultdict(lambda: {"n": 0, "correct": 0, "invalid": 0, "failed": 0})
    for v in verdicts:
        for bucket in (tot, per[v.subject or "-"]):
            bucket["n"] += 1
            bucket["correct"] += int(v.correct)
            bucket["invalid"] += int(not v.extraction.valid and not v.failed)
            bucket["failed"] += int(v.failed)

    def fin(b: dict[str, int]) -> dict[str, Any]:
        n = b["n"] or 1
        return {**b, "accuracy": b["correct"] / n, "invalid_rate": b["invalid"] / n}

    return {"overall": fin(tot), "per_subject": {k: fin(v) for k, v in sorted(per.items())}}


def _mean_spread(values: list[float]) -> dict[str, Any]:
    return {
        "mean": statistics.fmean(values) if values else None,
        # sample standard deviation across seeds (0 for a single run)
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values) if values else None,
        "max": max(values) if values else None,
        "runs": values,
    }


def aggregate_seeds(tables: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean and spread of accuracy over runs with different seeds, overall and per subject."""
    subjects = sorted({s for t in tables for s in t["per_subject"]})
    return {
        "n_runs": len(tables),
        "overall": _mean_spread([t["overall"]["accuracy"] for t in tables]),
        "invalid_rate": _mean_spread([t["overall"]["invalid_rate"] for t in tables]),
        "per_subject": {
            s: _mean_spread([t["per_subject"][s]["accuracy"] for t in tables if s in t["per_subject"]])
            for s in subjects
        },
    }


# ---------------------------------------------------------------------------------------------
# Consultation (single-turn QA and multi-turn dialogues)
# ---------------------------------------------------------------------------------------------

ASPECTS = ("fluency", "relevance", "completeness", "proficiency")
ASPECT_ZH = {"fluency": "流畅性", "relevance": "相关性", "completeness": "完整性", "proficiency": "专业性"}


@dataclass
class ConsultItem:
    """One reply to generate: the true history up to a user message, and the reference reply."""

    record_key: Any
    turn: int  # 1-based index of the assistant reply within the dialogue
    messages: list[Message]
    reference: str
    lang: str = "zh"


def consultation_items(record_key: Any, kind: str, content: dict[str, Any], *, lang: str = "zh") -> list[ConsultItem]:
    """QA -> one item; dialogue -> one item per assistant turn, each given the *true* history
    (the reference replies, not the model's own earlier ones), as CMtMedQA evaluation does."""
    system = content.get("system")
    base: list[Message] = [{"role": "system", "content": system}] if system else []
    if kind == "qa":
        q, a = content.get("question"), content.get("answer")
        if not q or not a:
            return []
        return [ConsultItem(record_key, 1, base + [{"role": "user", "content": q}], a, lang)]
    if kind == "dialogue":
        items, history, turn = [], list(base), 0
        for msg in content.get("turns") or []:
            role, text = msg.get("role"), msg.get("content") or ""
            if role == "assistant" and history and history[-1]["role"] == "user":
                turn += 1
                items.append(ConsultItem(record_key, turn, list(history), text, lang))
            history.append({"role": role, "content": text})
        return items
    raise ValueError(f"consultation needs qa or dialogue records, not {kind!r}")


JUDGE_SYSTEM_ZH = (
    "你是一名资深医学专家和严格的评审员。请参照参考答案，对“待评回复”分别在四个方面打1到5分（整数）："
    "流畅性(fluency)：语言是否通顺自然；相关性(relevance)：是否切题、回应了患者的问题；"
    "完整性(completeness)：是否覆盖了参考答案中的要点；专业性(proficiency)：医学内容是否准确、专业、安全。"
    "只输出一个JSON对象，例如 {\"fluency\": 4, \"relevance\": 5, \"completeness\": 3, \"proficiency\": 4}。"
)
JUDGE_SYSTEM_EN = (
    "You are a senior physician and a strict reviewer. Against the reference answer, rate the candidate "
    "reply from 1 to 5 (integers) on four aspects: fluency (is the language natural and clear), relevance "
    "(does it address the patient's question), completeness (does it cover the reference's key points), "
    "proficiency (is the medicine accurate, professional and safe). Output only a JSON object such as "
    "{\"fluency\": 4, \"relevance\": 5, \"completeness\": 3, \"proficiency\": 4}."
)


def judge_messages(item: ConsultItem, reply: str) -> list[Message]:
    """One reply per judge prompt: pairwise verdicts are derived later from individual scores, because
    a prompt holding both answers favours the first position (docs/METHODS.md 5)."""
    zh = _is_zh(item.lang)
    dialogue = "\n".join(
        f"{('患者' if zh else 'Patient') if m['role'] == 'user' else ('医生' if zh else 'Doctor') if m['role'] == 'assistant' else ('系统' if zh else 'System')}: {m['content']}"
        for m in item.messages
    )
    if zh:
        user = f"【对话】\n{dialogue}\n\n【参考答案】\n{item.reference}\n\n【待评回复】\n{reply}\n\n请输出JSON评分。"
    else:
        user = f"[Conversation]\n{dialogue}\n\n[Reference answer]\n{item.reference}\n\n[Candidate reply]\n{reply}\n\nOutput the JSON scores."
    return [{"role": "system", "content": JUDGE_SYSTEM_ZH if zh else JUDGE_SYSTEM_EN}, {"role": "user", "content": user}]


class JudgeParseError(ValueError):
    pass


def parse_judge_scores(text: str) -> dict[str, int]:
    """The four 1-5 scores from a judge reply: a JSON object (possibly fenced or with prose), else
    labelled lines ("流畅性：4", "Fluency: 4/5"). Missing or out-of-range scores raise, never default."""
    from medstudio.inference.chat import ChatError, parse_json_object

    scores: dict[str, Any] = {}
    try:
        obj = parse_json_object(text)
        lowered = {str(k).strip().lower(): v for k, v in obj.items()}
        for a in ASPECTS:
            v = lowered.get(a, lowered.get(ASPECT_ZH[a]))
            if isinstance(v, dict):  # {"fluency": {"score": 4, "reason": ...}}
                v = v.get("score")
            if v is not None:
                scores[a] = v
    except ChatError:
        pass
    for a in ASPECTS:
        if a not in scores:
            m = re.search(rf"(?:{a}|{ASPECT_ZH[a]})\s*(?:\([^)]*\))?\s*[:：=]?\s*(\d+(?:\.\d+)?)", text or "", re.IGNORECASE)
            if m:
                scores[a] = m.group(1)
    out: dict[str, int] = {}
    for a in ASPECTS:
        if a not in scores:
            raise JudgeParseError(f"judge gave no {a} score: {str(text)[:120]!r}")
        try:
            v = float(scores[a])
        except (TypeError, ValueError):
            raise JudgeParseError(f"judge's {a} score is not a number: {scores[a]!r}") from None
        if not (1 <= v <= 5) or v != int(v):
            raise JudgeParseError(f"judge's {a} score {scores[a]!r} is not an integer from 1 to 5")
        out[a] = int(v)
    return out


def mean_score(scores: dict[str, int] | None) -> float | None:
    return None if not scores else statistics.fmean(scores[a] for a in ASPECTS)


def per_turn_table(rows: Iterable[tuple[int, dict[str, int] | None]]) -> list[dict[str, Any]]:
    """Mean judge score per aspect for each assistant turn (the paper's per-turn table), plus 'all'."""
    by_turn: dict[Any, list[dict[str, int]]] = defaultdict(list)
    for turn, scores in rows:
        if scores:
            by_turn[turn].append(scores)
            by_turn["all"].append(scores)
    table = []
    for turn in sorted((t for t in by_turn if t != "all")) + (["all"] if by_turn else []):
        group = by_turn[turn]
        row = {"turn": turn, "n": len(group)}
        for a in ASPECTS:
            row[a] = statistics.fmean(s[a] for s in group)
        row["mean"] = statistics.fmean(row[a] for a in ASPECTS)
        table.append(row)
    return table


def pairwise_from_scores(
    a: dict[Any, dict[str, int] | None], b: dict[Any, dict[str, int] | None], *, margin: float = 0.0
) -> dict[str, dict[str, Any]]:
    """Win/tie/loss of model A over B from each model's *individual* judge scores, on the items both
    have, per aspect and on the mean of the four."""
    keys = [k for k in a if k in b]
    out = {}
    for aspect in (*ASPECTS, "mean"):
        def pick(s):
            if not s:
                return None
            return mean_score(s) if aspect == "mean" else s[aspect]
        out[aspect] = win_tie_loss([pick(a[k]) for k in keys], [pick(b[k]) for k in keys], margin=margin).as_dict()
    return out


def rouge_pairwise(
    a: dict[Any, str | None], b: dict[Any, str | None], references: dict[Any, str], *, margin: float = 0.0
) -> dict[str, Any]:
    """ROUGE-L (character-tokenised for Chinese) of each model against the reference, then win/tie/loss."""
    keys = [k for k in references if k in a and k in b]
    sa = [None if a[k] is None else rouge_l(a[k], references[k]).fmeasure for k in keys]
    sb = [None if b[k] is None else rouge_l(b[k], references[k]).fmeasure for k in keys]
    res = win_tie_loss(sa, sb, margin=margin).as_dict()
    res["mean_rouge_a"] = statistics.fmean(x for x in sa if x is not None) if any(x is not None for x in sa) else None
    res["mean_rouge_b"] = statistics.fmean(x for x in sb if x is not None) if any(x is not None for x in sb) else None
    return res


# ---------------------------------------------------------------------------------------------
# Generation backends
# ---------------------------------------------------------------------------------------------

Prompt = list[Message] | str  # chat messages, or raw text for plain continuation (memorisation)


@dataclass
class Generation:
    text: str | None
    error: str = ""
    prompt_text: str = ""  # exactly what the model saw, when the backend renders it (chat template)
    n_prompt_tokens: int | None = None
    n_output_tokens: int | None = None


@dataclass
class GenParams:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    seed: int = 0


class Generator(Protocol):
    name: str

    def generate(self, prompts: Sequence[Prompt], params: GenParams) -> list[Generation]: ...


class GeneratorUnavailable(RuntimeError):
    """The configured model cannot be loaded; the message says which setting to change."""


class TransformersGenerator:
    """A local causal LM (a directory saved with save_pretrained) through transformers.generate."""

    def __init__(self, path: str, *, device: str = "cpu", batch_size: int = 8, dtype: str = "auto"):
        self.path = path
        self.name = f"transformers:{path}"
        self.device = device
        self.batch_size = batch_size
        self.dtype = dtype
        self._model = None
        self._tok = None

    def _load(self):
        if self._model is not None:
            return
        import os

        if not os.path.isdir(self.path):
            raise GeneratorUnavailable(
                f"model directory {self.path!r} does not exist: set the evaluation model's path to a local "
                "directory saved with save_pretrained (no hub download at run time)"
            )
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self._tok = AutoTokenizer.from_pretrained(self.path)
        self._tok.padding_side = "left"  # decoder-only batch generation needs left padding
        if self._tok.pad_token is None:
            self._tok.pad_token = self._tok.eos_token
        self._model = AutoModelForCausalLM.from_pretrained(self.path, dtype=self.dtype).to(self.device)
        self._model.eval()

    def render(self, prompt: Prompt) -> str:
        self._load()
        if isinstance(prompt, str):
            return prompt
        return self._tok.apply_chat_template(list(prompt), tokenize=False, add_generation_prompt=True)

    def generate(self, prompts: Sequence[Prompt], params: GenParams) -> list[Generation]:
        import torch

        self._load()
        out: list[Generation] = []
        for start in range(0, len(prompts), self.batch_size):
            texts = [self.render(p) for p in prompts[start:start + self.batch_size]]
            # Seed per batch from (seed, batch start): a resumed job regenerates the same samples.
            torch.manual_seed(params.seed * 1_000_003 + start)
            enc = self._tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
            kwargs: dict[str, Any] = {"max_new_tokens": params.max_new_tokens, "pad_token_id": self._tok.pad_token_id}
            if params.temperature > 0:
                kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
            else:
                kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            try:
                with torch.no_grad():
                    gen = self._model.generate(**enc, **kwargs)
            except Exception as exc:  # one bad batch marks its items, not the job
                out.extend(Generation(None, f"generation failed: {exc}", t) for t in texts)
                continue
            width = enc["input_ids"].shape[1]
            for i, t in enumerate(texts):
                new = gen[i, width:]
                out.append(Generation(
                    self._tok.decode(new, skip_special_tokens=True), "", t,
                    int(enc["attention_mask"][i].sum()), int((new != self._tok.pad_token_id).sum()),
                ))
        return out


class EndpointGenerator:
    """A model behind an OpenAI-compatible chat endpoint (medstudio.inference.chat.ChatBackend).

    A raw-text prompt (memorisation probe) is sent as a single user message: chat endpoints have
    no plain-continuation mode, so with an endpoint the audit probes the model as it is served."""

    def __init__(self, backend, *, max_workers: int = 4):
        self.backend = backend
        self.name = f"openai:{backend.model}@{backend.base_url}"
        self.max_workers = max_workers

    def generate(self, prompts: Sequence[Prompt], params: GenParams) -> list[Generation]:
        convs = [[{"role": "user", "content": p}] if isinstance(p, str) else list(p) for p in prompts]
        kw: dict[str, Any] = {"max_tokens": params.max_new_tokens, "temperature": params.temperature, "seed": params.seed}
        if params.temperature > 0:
            kw["top_p"] = params.top_p
        replies = self.backend.complete_many(convs, max_workers=self.max_workers, **kw)
        out = []
        for r in replies:
            if hasattr(r, "text"):
                out.append(Generation(r.text, "", "", r.usage_prompt_tokens, r.usage_completion_tokens))
            else:
                out.append(Generation(None, getattr(r, "reason", str(r))))
        return out


class VLLMGenerator:
    """Offline vLLM on a GPU worker. Imported lazily: vLLM is GPU-only and never needed on CPU."""

    def __init__(self, path: str, **engine_kwargs: Any):
        self.path = path
        self.name = f"vllm:{path}"
        self.engine_kwargs = engine_kwargs
        self._llm = None

    def _load(self):
        if self._llm is None:
            try:
                from vllm import LLM
            except ImportError:
                raise GeneratorUnavailable(
                    "vLLM is not installed on this worker: run evaluations with backend 'vllm' on a GPU worker "
                    "(pip install medstudio[gpu]) or choose backend 'transformers'"
                ) from None
            self._llm = LLM(model=self.path, **self.engine_kwargs)

    def generate(self, prompts: Sequence[Prompt], params: GenParams) -> list[Generation]:
        self._load()  # first: it turns a missing vLLM into GeneratorUnavailable
        from vllm import SamplingParams

        sp = SamplingParams(
            max_tokens=params.max_new_tokens, temperature=params.temperature,
            top_p=params.top_p if params.temperature > 0 else 1.0, seed=params.seed,
        )
        out: list[Generation | None] = [None] * len(prompts)
        chat_idx = [i for i, p in enumerate(prompts) if not isinstance(p, str)]
        text_idx = [i for i, p in enumerate(prompts) if isinstance(p, str)]
        if chat_idx:
            res = self._llm.chat([list(prompts[i]) for i in chat_idx], sp, use_tqdm=False)
            for i, r in zip(chat_idx, res):
                out[i] = Generation(r.outputs[0].text, "", r.prompt or "", len(r.prompt_token_ids or []), len(r.outputs[0].token_ids))
        if text_idx:
            res = self._llm.generate([prompts[i] for i in text_idx], sp, use_tqdm=False)
            for i, r in zip(text_idx, res):
                out[i] = Generation(r.outputs[0].text, "", prompts[i], len(r.prompt_token_ids or []), len(r.outputs[0].token_ids))
        return [g for g in out if g is not None]


def make_generator(spec: dict[str, Any]) -> Generator:
    """Build a generator from a model spec: {"backend": "transformers"|"vllm", "path": ...} or
    {"backend": "openai", "base_url": ..., "model": ..., "api_key"?: ...}. This is the hook where a
    training.models.ModelRef is turned into a spec once the model registry exists."""
    backend = (spec.get("backend") or "transformers").lower()
    if backend == "transformers":
        if not spec.get("path"):
            raise GeneratorUnavailable("backend 'transformers' needs 'path': a local model directory")
        return TransformersGenerator(spec["path"], device=spec.get("device", "cpu"), batch_size=int(spec.get("batch_size", 8)))
    if backend == "vllm":
        if not spec.get("path"):
            raise GeneratorUnavailable("backend 'vllm' needs 'path': a local model directory on the GPU worker")
        return VLLMGenerator(spec["path"])
    if backend == "openai":
        if not spec.get("base_url") or not spec.get("model"):
            raise GeneratorUnavailable("backend 'openai' needs 'base_url' and 'model' (an OpenAI-compatible endpoint)")
        from medstudio.inference.chat import ChatBackend

        return EndpointGenerator(
            ChatBackend(spec["base_url"], spec["model"], api_key=spec.get("api_key") or "EMPTY",
                        timeout=float(spec.get("timeout", 60)), max_retries=int(spec.get("max_retries", 3))),
            max_workers=int(spec.get("max_workers", 4)),
        )
    raise GeneratorUnavailable(f"unknown generation backend {backend!r}: use transformers, vllm or openai")

