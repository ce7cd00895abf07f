"""DPO export formats (plain Python): TRL conversational prompt/chosen/rejected and LLaMA-Factory.

`resolve` decides what a stored pair becomes in the export: a clinician verdict overrides the
judge (and the voting); voting flips or drops; ties and rejected pairs are left out.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

VERDICT_CHOSEN = "chosen"  # the clinician agrees with the stored order
VERDICT_REJECTED = "rejected"  # the clinician prefers the stored "rejected" answer
VERDICT_TIE = "tie"


def resolve(
    chosen: str, rejected: str, *, status: str = "ok", action: str = "", verdict: str = ""
) -> tuple[str, str] | None:
    """(chosen, rejected) as exported, or None when the pair is left out."""
    if verdict:
        if verdict == VERDICT_CHOSEN:
            return chosen, rejected
        if verdict == VERDICT_REJECTED:
            return rejected, chosen
        return None  # clinician tie
    if status != "ok" or action == "drop":
        return None
    if action == "flip":
        return rejected, chosen
    return chosen, rejected


def trl_row(prompt_turns: list[dict[str, str]], chosen: str, rejected: str) -> dict[str, Any]:
    """TRL's conversational preference format (DPOTrainer / RewardTrainer read it as is)."""
    return {
        "prompt": [{"role": t["role"], "content": t["content"]} for t in prompt_turns],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
    }


_LF_ROLE = {"user": "human", "assistant": "gpt"}


def llamafactory_row(prompt_turns: list[dict[str, str]], chosen: str, rejected: str) -> dict[str, Any]:
    """LLaMA-Factory's sharegpt ranking format: conversations ending on a human turn + chosen/rejected."""
    system = "\n".join(t["content"] for t in prompt_turns if t["role"] == "system")
    convo = [{"from": _LF_ROLE[t["role"]], "value": t["content"]} for t in prompt_turns if t["role"] in _LF_ROLE]
    if not convo or convo[-1]["from"] != "human":
        raise ValueError("LLaMA-Factory needs the prompt to end on a user turn")
    row: dict[str, Any] = {
        "conversations": convo,
        "chosen": {"from": "gpt", "value": chosen},
        "rejected": {"from": "gpt", "value": rejected},
    }
    if system:
        row["system"] = system
    return row


def llamafactory_dataset_info(name: str, file_name: str) -> dict[str, Any]:
    return {
        name: {
            "file_name": file_name,
            "formatting": "sharegpt",
            "ranking": True,
            "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected", "system": "system"},
        }
    }


def write_exports(pairs: Iterable[dict[str, Any]], out_dir: str | Path, name: str) -> dict[str, Any]:
    """Write <name>.trl.jsonl, <name>.llamafactory.json and dataset_info.json; return counts.

    Each pair dict: prompt_turns, chosen, rejected, origin, status, action, verdict.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    trl_path = out / f"{name}.trl.jsonl"
    lf_path = out / f"{name}.llamafactory.json"
    by_origin: Counter[str] = Counter()
    left_out: Counter[str] = Counter()
    lf_rows = []
    with open(trl_path, "w", encoding="utf-8") as f:
        for p in pairs:
            resolved = resolve(p["chosen"], p["rejected"], status=p.get("status", "ok"), action=p.get("action", ""), verdict=p.get("verdict", ""))
            if resolved is None:
                left_out["clinician tie" if p.get("verdict") else p.get("action") if p.get("action") == "drop" else p.get("status", "?")] += 1
                continue
            c, r = resolved
            try:
                lf_rows.append(llamafactory_row(p["prompt_turns"], c, r))
            except ValueError:
                left_out["prompt not ending on a user turn"] += 1
                continue
            f.write(json.dumps(trl_row(p["prompt_turns"], c, r), ensure_ascii=False) + "\n")
            by_origin[p.get("origin", "?")] += 1
    lf_path.write_text(json.dumps(lf_rows, ensure_ascii=False, indent=1), encoding="utf-8")
    (out / "dataset_info.json").write_text(json.dumps(llamafactory_dataset_info(name, lf_path.name), indent=1), encoding="utf-8")
    return {
        "n_pairs": sum(by_origin.values()),
        "by_origin": dict(by_origin),
        "left_out": dict(left_out),
        "files": {"trl": str(trl_path), "llamafactory": str(lf_path), "dataset_info": str(out / "dataset_info.json")},
    }
