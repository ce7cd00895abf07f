"""A failed job's cause in one plain line, derived from its error and log (pure: no Django import).

`plain_cause(text)` finds the exception a traceback ends with and maps the common ones to what to
change (a setting, a page); anything else reads as the exception's own message without its type.
The plain words are catalogue msgids (marked with gettext_noop, which makemessages reads); a page
passes `translate=gettext` to show them in the reader's language.
"""
from __future__ import annotations

import re
from typing import Callable

_EXC_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?([A-Z]\w*(?:Error|Exception|Exit|Interrupt|Failed|Warning))(?::\s*(.*))?$")


def gettext_noop(message: str) -> str:
    """Marks a message for the translation catalogue without importing Django."""
    return message


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
