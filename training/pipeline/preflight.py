"""Pre-flight checks of a model directory before a run is stored (plain Python, no Django, no torch).

A run that would die in its first seconds (no config, no tokenizer, no chat template for a chat
stage) is refused at launch with what to change, instead of failing in the worker with a
traceback. The checks read the files transformers would read, without importing transformers,
so the web process stays light: config.json must parse and name a model_type; the tokenizer
must be there (tokenizer.json loads with `tokenizers`, or a sentencepiece/vocab file exists);
chat stages need a chat template (chat_template.jinja, or "chat_template" in tokenizer_config.json).

The problems are catalogue msgids with %(name)s params (marked with a local gettext_noop, which
makemessages reads): the Django layer passes `translate=gettext` to get them in the reader's
language; the default gives the English text (the CLI, the logs).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

CHAT_STAGES = ("sft", "dpo")


def gettext_noop(message: str) -> str:
    """Marks a message for the translation catalogue without importing Django."""
    return message


NOT_LOCAL = gettext_noop("%(path)s is not a local model directory (nor a hub id in the local cache); "
                         "register the directory that holds config.json and the weights")
NO_MODEL_TYPE = gettext_noop("%(root)s/config.json names no model_type")
NO_CONFIG = gettext_noop("%(root)s has no config.json")
CONFIG_BAD = gettext_noop("%(root)s/config.json does not parse (%(exc)s)")
NO_TOKENIZER = gettext_noop("%(root)s has no tokenizer (tokenizer.json, tokenizer.model or vocab file); "
                            "save the tokenizer beside the model")
TOKENIZER_BAD = gettext_noop("%(root)s/tokenizer.json does not load (%(exc)s)")
NO_CHAT_TEMPLATE = gettext_noop("the tokenizer in %(root)s has no chat template, which SFT and DPO need to format "
                                "turns; use an instruct model's tokenizer or add chat_template.jinja")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model")


def _local_dir(path: str) -> Path | None:
    p = Path(path).expanduser()
    if p.is_dir():
        return p
    # A hub id already in the local cache (production workers pre-fetch; nothing downloads here).
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(path, "config.json")
    except Exception:  # noqa: BLE001 - not a valid repo id: treated as a missing path below
        hit = None
    return Path(hit).parent if isinstance(hit, str) else None


def check_model(path: str, *, chat: bool = False, translate: Callable[[str], str] = str) -> list[str]:
    """Problems that would stop a run from loading `path`; empty when it looks loadable.
    translate: applied to each msgid before its params are filled (gettext for a page)."""
    def problem(msgid: str, **params) -> str:
        try:
            return translate(msgid) % params
        except (KeyError, ValueError, TypeError):  # a translation whose params do not match: the English
            return msgid % params

    root = _local_dir(path)
    if root is None:
        return [problem(NOT_LOCAL, path=repr(path))]
    problems = []
    try:
        config = json.loads((root / "config.json").read_text(encoding="utf-8"))
        if not config.get("model_type"):
            problems.append(problem(NO_MODEL_TYPE, root=root))
    except FileNotFoundError:
        problems.append(problem(NO_CONFIG, root=root))
    except (OSError, ValueError) as exc:
        problems.append(problem(CONFIG_BAD, root=root, exc=exc))
    tok_files = [f for f in _TOKENIZER_FILES if (root / f).exists()]
    if not tok_files:
        problems.append(problem(NO_TOKENIZER, root=root))
    elif "tokenizer.json" in tok_files:
        try:
            from tokenizers import Tokenizer

            Tokenizer.from_file(str(root / "tokenizer.json"))
        except Exception as exc:  # noqa: BLE001 - any load error is reported as such
            problems.append(problem(TOKENIZER_BAD, root=root, exc=exc))
    if chat and not problems and not has_chat_template(root):
        problems.append(problem(NO_CHAT_TEMPLATE, root=root))
    return problems


def has_chat_template(root: Path) -> bool:
    if (root / "chat_template.jinja").exists() or (root / "chat_template.json").exists():
        return True
    try:
        cfg = json.loads((root / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(cfg.get("chat_template"))
