"""A failed job's cause in one plain line, derived from its error and log (pure: no Django import).

`plain_cause(text)` finds the exception a traceback ends with and maps the common ones to what to
change (a setting, a page); anything else reads as the exception's own message without its type.
The plain words are catalogue msgids (marked with gettext_noop, which makemessages reads); a page
passes `translate=gettext` to show them in the reader's language.

A handler's own failure carries a translatable message with params: `failure(MSGID, name=value)`
(or `raise PlainFailure(MSGID, ...)`) where MSGID was registered at import with
`known_failure(gettext_noop("... %(name)s ..."))`. The job keeps the English text in Job.error and
the log (the raw detail); at display time `plain_cause` matches that text against the registered
msgids, reads the params back and shows the msgid translated with them.
"""
from __future__ import annotations

import re
from typing import Callable

_EXC_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?([A-Z]\w*(?:Error|Exception|Exit|Interrupt|Failed|Warning))(?::\s*(.*))?$")


def gettext_noop(message: str) -> str:
    """Marks a message for the translation catalogue without importing Django."""
    return message


_KNOWN: dict[str, re.Pattern] = {}
_PARAM = re.compile(r"%\((\w+)\)s")


def known_failure(msgid: str) -> str:
    """Registers a failure message: a catalogue msgid whose %(name)s params are filled at raise time.
    Returns the msgid (wrap it in gettext_noop so makemessages reads it)."""
    if msgid not in _KNOWN:
        parts = _PARAM.split(msgid)  # literal, name, literal, name, ..., literal
        seen: set[str] = set()
        rx = ""
        for i, p in enumerate(parts):
            if i % 2 == 0:
                rx += re.escape(p)
            else:  # a name used twice must read the same both times
                rx += f"(?P={p})" if p in seen else f"(?P<{p}>.+?)"
                seen.add(p)
        _KNOWN[msgid] = re.compile(rx, re.S)
    return msgid


def failure(msgid: str, **params) -> str:
    """The English text of a registered failure with its params (for JobFailed / ValueError)."""
    known_failure(msgid)
    return msgid % params


class PlainFailure(Exception):
    """An exception whose message is a registered failure msgid with params."""

    def __init__(self, msgid: str, **params):
        self.msgid, self.params = known_failure(msgid), params
        super().__init__(msgid % params)


def _known_cause(candidate: str, translate: Callable[[str], str]) -> str:
    candidate = candidate.strip()
    for msgid, rx in _KNOWN.items():
        m = rx.fullmatch(candidate)
        if m:
            try:
                return translate(msgid) % m.groupdict()
            except (KeyError, ValueError, TypeError):  # a translation whose params do not match: the English
                return msgid % m.groupdict()
    return ""


# Failures the platform and the inference layer raise (their English text is matched back).
MODEL_NOT_AVAILABLE = known_failure(gettext_noop(
    "Model %(model)s is not available (%(detail)s). Set %(setting)s to a local model directory, a hub id already in the "
    "local Hugging Face cache, or a reachable server (no model is downloaded at run time)."))
MODEL_NOT_AVAILABLE_SHORT = known_failure(gettext_noop(
    "Model %(model)s is not available. Set %(setting)s to a local model directory, a hub id already in the "
    "local Hugging Face cache, or a reachable server (no model is downloaded at run time)."))
WRONG_KIND = known_failure(gettext_noop("Dataset %(name)s holds %(kind)s records, not %(wanted)s."))
# medstudio/datasets/services.py: an import that fits another kind, has bad lines or names no kind.
IMPORT_OTHER_KIND = known_failure(gettext_noop(
    "Nothing was imported. This looks like kind=%(hint)s, not kind=%(kind)s: %(n_bad)s of %(n_rows)s lines do not fit "
    "%(kind)s but fit %(hint)s. Import it as %(hint)s (into a %(hint)s dataset), or choose kind auto."))
IMPORT_BAD_LINES = known_failure(gettext_noop("Nothing was imported. %(n_bad)s bad line(s) of %(n_rows)s: %(lines)s"))
IMPORT_NEEDS_KIND = known_failure(gettext_noop("A new dataset needs a kind (document, qa, dialogue, mcq or pair), not auto."))

MODEL_HINT = gettext_noop("Register the model with a local folder on Training → Models → Register a model, "
                          "or put it under the folder named by MEDSTUDIO_MODEL_DIR.")

# (pattern over the exception line, plain words, whether MODEL_HINT follows; {0} is the first group)
_RULES: list[tuple[re.Pattern, str, bool]] = [
    (re.compile(r"(?:CUDA|HIP) out of memory|OutOfMemoryError", re.I),
     gettext_noop("The GPU ran out of memory: lower the per-device batch size or the maximum length, or turn on gradient checkpointing."), False),
    (re.compile(r"no CUDA GPUs are available|Torch not compiled with CUDA|CUDA driver|NVIDIA driver", re.I),
     gettext_noop("This worker has no usable GPU: run the job on a GPU worker (queue gpu or training), or choose a CPU setting."), False),
    (re.compile(r"['\"]?([^'\"\s]+)['\"]? is not a local folder and is not a valid model identifier", re.I),
     gettext_noop("The model {0} cannot be found."), True),
    (re.compile(r"does not appear to have a file named (config\.json|\S+)", re.I),
     gettext_noop("The model folder has no {0}: it is not a Hugging Face model folder."), True),
    (re.compile(r"Repo id must|HFValidationError|Incorrect path_or_model_id: ['\"]?([^'\"]+)", re.I),
     gettext_noop("The model path is not a folder or a Hugging Face name."), True),
    (re.compile(r"Can't load (?:the )?(?:tokenizer|config|model) for ['\"]?([^'\"]+)", re.I),
     gettext_noop("The model {0} cannot be loaded."), True),
    (re.compile(r"No module named ['\"]?([\w.]+)", re.I),
     gettext_noop("The Python package {0} is not installed where the worker runs: install it (make setup) and restart the worker."), False),
    (re.compile(r"Connection refused|Max retries exceeded|Failed to establish a new connection|ConnectError|Name or service not known", re.I),
     gettext_noop("The model server could not be reached: check the chat backend on Admin → Backends (or MEDSTUDIO_CHAT_URL) and that the server is running."), False),
    (re.compile(r"No space left on device", re.I),
     gettext_noop("The disk is full: free space under the folder named by MEDSTUDIO_VAR_DIR."), False),
    (re.compile(r"database is locked", re.I),
     gettext_noop("The database was busy: run the job again."), False),
    (re.compile(r"No such file or directory: ['\"]?([^'\"]+)", re.I),
     gettext_noop("A file is missing: {0}."), False),
    (re.compile(r"Permission denied: ['\"]?([^'\"]+)", re.I),
     gettext_noop("The worker may not read or write {0}: check the folder's permissions."), False),
]


def exception_line(text: str) -> str:
    """The last `SomeError: message` line of a traceback (or of any text), '' when there is none."""
    for line in reversed((text or "").splitlines()):
        line = line.strip()
        if _EXC_LINE.match(line):
            return line
    return ""


def plain_cause(*texts: str, first_line: bool = True, translate: Callable[[str], str] = str) -> str:
    """One line saying why a job failed. texts: its error, then its log tail (most specific first).

    first_line=False: '' rather than a text's first line when no exception or known cause is found
    (a process log whose first line is not a cause). translate: applied to the plain words (gettext)."""
    for text in texts:
        if not text or not text.strip():
            continue
        line = exception_line(text)
        m = _EXC_LINE.match(line) if line else None
        for candidate in ([(m.group(2) or "") if m else ""] + text.strip().splitlines()[:3]):
            known = _known_cause(candidate, translate) if candidate else ""
            if known:
                return known
        for candidate in ([line] if line else []) + [text]:
            for pattern, words, hint in _RULES:
                m = pattern.search(candidate)
                if m:
                    groups = [g for g in m.groups() if g] or [""]
                    text = translate(words).format(groups[0].rstrip(".,"))
                    return f"{text} {translate(MODEL_HINT)}" if hint else text
        if line:
            m = _EXC_LINE.match(line)
            msg = (m.group(2) or "").strip() if m else ""
            return msg or line
    if not first_line:
        return ""
    for text in texts:  # no exception anywhere: the error's first line is the handler's own words
        if text and text.strip():
            return text.strip().splitlines()[0]
    return ""
