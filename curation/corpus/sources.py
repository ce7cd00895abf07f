"""The training data source `corpus_selection`: a frozen corpus selection (a hand-off registered by
the corpus studio's freeze job), exported for training shard by shard from the corpus's own files."""
from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

from medstudio.handoffs.models import CorpusSelection
from medstudio.handoffs.lineage import register_node
from medstudio.handoffs.sources import DataSourceError, RecordWriter, register_data_source


def _selection(ref: dict) -> CorpusSelection:
    sel = CorpusSelection.objects.filter(pk=ref.get("id")).first()
    if sel is None:
        raise DataSourceError(f"frozen corpus selection {ref.get('id')!r} does not exist")
    return sel


def _describe(ref: dict) -> dict:
    sel = _selection(ref)
    return {"name": sel.name, "kind": "document", "n_records": sel.n_records, "corpus": sel.corpus,
            "manifest_sha256": sel.manifest_sha256, "conditions": sel.conditions}


def _export(ref: dict, path: Path) -> dict:
    from curation.pipeline.corpus.selection import SelectionError, iter_selection
    from curation.pipeline.corpus.shards import join_uri, read_bytes

    sel = _selection(ref)
    manifest = join_uri(sel.path, "manifest.json")
    try:
        digest = hashlib.sha256(read_bytes(manifest)).hexdigest()
    except OSError as exc:
        raise DataSourceError(f"corpus selection {sel.name!r}: {manifest} cannot be read ({exc.strerror or exc})") from exc
    if digest != sel.manifest_sha256:
        raise DataSourceError(f"corpus selection {sel.name!r}: its manifest changed since it was frozen; freeze it again")
    w = RecordWriter(path)
    by_lang, by_source = Counter(), Counter()
    try:
        for _shard, docs in iter_selection(sel.path):
            for d in docs:
                w.write("document", {"text": d["text"]}, lang=d["lang"], source=d["source"], id=d["id"])
                by_lang[d["lang"]] += 1
                by_source[d["source"]] += 1
    except SelectionError as exc:
        w.fh.close()
        w.tmp.unlink(missing_ok=True)
        raise DataSourceError(f"corpus selection {sel.name!r}: {exc}") from exc
    info = w.close()
    if info["n_records"] != sel.n_records:
        raise DataSourceError(f"corpus selection {sel.name!r}: {info['n_records']} documents read, {sel.n_records} frozen")
    return {**_describe(ref), **info, "by_lang": dict(by_lang), "by_source": dict(by_source)}


def _options():
    for sel in CorpusSelection.objects.all():
        yield {"id": sel.pk, "name": sel.name, "kind": "document", "n_records": sel.n_records}


register_data_source("corpus_selection", label="Corpus selection", exporter=_export, describe=_describe, options=_options)


def _lineage_node(pk: int):
    """A frozen corpus selection in the lineage graph (upstream of the runs trained on it)."""
    from django.urls import reverse

    from curation.corpus.models import Corpus

    sel = CorpusSelection.objects.filter(pk=pk).first()
    if sel is None:
        return None
    corpus = Corpus.objects.filter(name=sel.corpus).first()
    url = reverse("curation:corpus_studio", args=[corpus.pk]) if corpus else ""
    return {"type": "corpus_selection", "name": f"{sel.name} ({sel.corpus})", "url": url,
            "n_records": sel.n_records, "manifest_sha256": sel.manifest_sha256}, []


register_node("corpus_selection", _lineage_node)
