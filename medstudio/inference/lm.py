"""Causal-LM scoring: log-probabilities of given tokens (ConFilter, memorisation) and of a next token
restricted to a few candidates (Deita digits).

Two backends with one interface:
  - `TransformersLM`: transformers on CPU or GPU, batched by a token budget, right padding;
  - `VLLMLM`: vLLM prompt log-probs on a GPU worker (imported lazily; never needed on CPU).

    lm = load_causal_lm("Qwen/Qwen2.5-7B-Instruct", setting="MEDSTUDIO_CONFILTER_MODEL")
    lm.token_logprobs([ids], [[5, 6, 7]])    # log P(ids[j] | ids[:j]) for j in 5, 6, 7
    lm.next_token_logprobs([ids], [16, 17])  # log P(next = 16 | ids), log P(next = 17 | ids)
"""
from __future__ import annotations

import functools
from typing import Any, Protocol, Sequence

from medstudio.inference.errors import BackendUnavailable, ModelNotAvailable
from medstudio.inference.resolve import resolve_local_model


class CausalLM(Protocol):
    model_ref: str
    tokenizer: Any
    max_length: int

    def token_logprobs(self, sequences: Sequence[Sequence[int]], targets: Sequence[Sequence[int]]) -> list[Any]: ...

    def next_token_logprobs(self, sequences: Sequence[Sequence[int]], candidate_ids: Sequence[int]) -> Any: ...


def _batches_by_budget(lengths: Sequence[int], token_budget: int, max_batch: int) -> list[list[int]]:
    """Group indices, longest first, so that batch_size * longest <= token_budget (padding stays small)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    cur: list[int] = []
    longest = 0
    for i in order:
        longest_if = max(longest, lengths[i])
        if cur and (len(cur) + 1) * longest_if > token_budget or len(cur) >= max_batch:
            batches.append(cur)
            cur, longest_if = [], lengths[i]
        cur.append(i)
        longest = longest_if
    if cur:
        batches.append(cur)
    return batches


class TransformersLM:
    """A causal LM loaded with transformers; inference only."""

    def __init__(self, model_ref: str, *, setting: str, device: str | None = None, dtype: str | None = None,
                 max_length: int | None = None, token_budget: int = 16384, max_batch: int = 64):
        path = resolve_local_model(model_ref, setting)
        self.model_ref = model_ref
        self.token_budget = token_budget
        self.max_batch = max_batch
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            if device is None:
                device = "cuda" if torch.cuda.is_available() else "cpu"
            if dtype is None:
                dtype = "bfloat16" if device.startswith("cuda") else "float32"
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            self.model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype), local_files_only=True)
        except Exception as exc:
            raise ModelNotAvailable(model_ref, setting, f"failed to load: {type(exc).__name__}: {exc}") from None
        self.model.to(device).eval()
        self.device = device
        config = self.model.config
        self.max_length = int(max_length or getattr(config, "max_position_embeddings", 0) or 4096)
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.tokenizer.eos_token_id or 0
        # Going through the decoder and projecting only the positions we need avoids a
        # [batch, length, vocab] logits tensor (152k-vocab models would need GBs). Models that
        # post-process logits (soft-capping) take the plain path.
        self._split_head = (
            not getattr(config, "final_logit_softcapping", None)
            and hasattr(self.model, "get_decoder")
            and self.model.get_output_embeddings() is not None
        )

    def _hidden_or_logits(self, batch_ids: list[Sequence[int]]):
        import torch

        width = max(len(s) for s in batch_ids)
        ids = torch.full((len(batch_ids), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch_ids), width), dtype=torch.long)
        for r, seq in enumerate(batch_ids):
            ids[r, : len(seq)] = torch.as_tensor(list(seq), dtype=torch.long)
            mask[r, : len(seq)] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        # use_cache=False: scoring never generates, so building a KV cache is wasted work.
        if self._split_head:
            return self.model.get_decoder()(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state, True
        return self.model(input_ids=ids, attention_mask=mask, use_cache=False).logits, False

    def _project(self, states, is_hidden: bool):
        import torch

        logits = self.model.get_output_embeddings()(states) if is_hidden else states
        return torch.log_softmax(logits.float(), dim=-1)

    def token_logprobs(self, sequences: Sequence[Sequence[int]], targets: Sequence[Sequence[int]]) -> list[Any]:
        """For each sequence, log P(seq[j] | seq[:j]) at each requested position j (1 <= j < len)."""
        import numpy as np
        import torch

        out: list[Any] = [None] * len(sequences)
        for batch in _batches_by_budget([len(s) for s in sequences], self.token_budget, self.max_batch):
            with torch.inference_mode():
                states, is_hidden = self._hidden_or_logits([sequences[i] for i in batch])
                rows, cols, toks, owners = [], [], [], []
                for r, i in enumerate(batch):
                    seq = sequences[i]
                    for j in targets[i]:
                        if not 1 <= j < len(seq):
                            raise ValueError(f"target position {j} outside 1..{len(seq) - 1}")
                        rows.append(r)
                        cols.append(j - 1)  # the state before token j predicts it
                        toks.append(seq[j])
                        owners.append(i)
                if not rows:
                    for i in batch:
                        out[i] = np.zeros(0, dtype=np.float64)
                    continue
                rows_t = torch.as_tensor(rows, device=states.device)
                cols_t = torch.as_tensor(cols, device=states.device)
                toks_t = torch.as_tensor(toks, device=states.device)
                # Project in chunks: a few thousand positions x vocab at a time.
                values = []
                for s in range(0, len(rows), 4096):
                    logp = self._project(states[rows_t[s:s + 4096], cols_t[s:s + 4096]], is_hidden)
                    values.append(logp.gather(1, toks_t[s:s + 4096, None])[:, 0])
                flat = torch.cat(values).double().cpu().numpy()
            pos = 0
            for i in batch:
                n = len(targets[i])
                out[i] = flat[pos:pos + n]
                pos += n
        return out

    def next_token_logprobs(self, sequences: Sequence[Sequence[int]], candidate_ids: Sequence[int]) -> Any:
        """[n, len(candidates)] log-probs of each candidate as the next token (full-vocabulary softmax)."""
        import numpy as np
        import torch

        result = np.full((len(sequences), len(candidate_ids)), np.nan, dtype=np.float64)
        cand = torch.as_tensor(list(candidate_ids), dtype=torch.long)
        for batch in _batches_by_budget([len(s) for s in sequences], self.token_budget, self.max_batch):
            with torch.inference_mode():
                states, is_hidden = self._hidden_or_logits([sequences[i] for i in batch])
                rows = torch.arange(len(batch), device=states.device)
                last = torch.as_tensor([len(sequences[i]) - 1 for i in batch], device=states.device)
                logp = self._project(states[rows, last], is_hidden)
                result[batch] = logp[:, cand.to(logp.device)].double().cpu().numpy()
        return result


class VLLMLM:
    """vLLM engine on a GPU worker; prompt log-probs give the same numbers as `TransformersLM`."""

    def __init__(self, model_ref: str, *, setting: str, max_length: int | None = None, dtype: str = "auto",
                 gpu_memory_utilization: float = 0.85, top_logprobs: int = 20):
        try:
            import torch

            if not torch.cuda.is_available():
                raise BackendUnavailable("vLLM needs a CUDA GPU; this worker has none")
            import vllm  # noqa: F401  (GPU-only dependency)
        except ImportError:
            raise BackendUnavailable("vLLM is not installed on this worker (pip install medstudio[gpu])") from None
        path = resolve_local_model(model_ref, setting)
        from transformers import AutoTokenizer
        from vllm import LLM

        self.model_ref = model_ref
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        kwargs: dict[str, Any] = {"model": path, "dtype": dtype, "gpu_memory_utilization": gpu_memory_utilization,
                                  "max_logprobs": max(top_logprobs, 20)}
        if max_length:
            kwargs["max_model_len"] = max_length
        self.llm = LLM(**kwargs)
        self.max_length = int(self.llm.llm_engine.model_config.max_model_len)
        self.top_logprobs = top_logprobs

    def token_logprobs(self, sequences: Sequence[Sequence[int]], targets: Sequence[Sequence[int]]) -> list[Any]:
        import numpy as np
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0.0)
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=list(s)) for s in sequences], params, use_tqdm=False)
        result = []
        for seq, tgt, out in zip(sequences, targets, outs):
            plp = out.prompt_logprobs  # position j: {token_id: Logprob} including the actual token
            result.append(np.asarray([plp[j][seq[j]].logprob for j in tgt], dtype=np.float64))
        return result

    def next_token_logprobs(self, sequences: Sequence[Sequence[int]], candidate_ids: Sequence[int]) -> Any:
        """vLLM only returns the top-k; candidates outside it are NaN (callers treat them as missing)."""
        import numpy as np
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = SamplingParams(max_tokens=1, logprobs=self.top_logprobs, temperature=0.0)
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=list(s)) for s in sequences], params, use_tqdm=False)
        result = np.full((len(sequences), len(candidate_ids)), np.nan, dtype=np.float64)
        for r, out in enumerate(outs):
            top = out.outputs[0].logprobs[0] if out.outputs and out.outputs[0].logprobs else {}
            for c, tok in enumerate(candidate_ids):
                if tok in top:
                    result[r, c] = top[tok].logprob
        return result


def vllm_available() -> bool:
    try:
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            return False
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


# Three: Deita holds two scorer models and ConFilter one, on the same worker.
@functools.lru_cache(maxsize=3)
def load_causal_lm(model_ref: str, *, setting: str, backend: str = "auto", device: str | None = None,
                   dtype: str | None = None, max_length: int | None = None, token_budget: int = 16384) -> CausalLM:
    """The scoring LM for a configuration, cached per process. backend: auto | transformers | vllm."""
    if backend not in {"auto", "transformers", "vllm"}:
        raise ValueError(f"unknown LM backend {backend!r} (auto, transformers, vllm)")
    if backend == "vllm" or (backend == "auto" and vllm_available()):
        return VLLMLM(model_ref, setting=setting, max_length=max_length)
    return TransformersLM(model_ref, setting=setting, device=device, dtype=dtype, max_length=max_length,
                          token_budget=token_budget)
