"""Domain classifier and DataRater (CareBot; docs/METHODS.md 1.1 and 1.3), plain Python.

Both are a text encoder + a trained head:
  - encoder "embedding": a sentence-transformers model (production: BAAI/bge-m3) or an embeddings
    server, frozen; the head is a scikit-learn linear model on the normalised embeddings. This is
    the paper's classifier-on-bge-m3 without fine-tuning the encoder itself.
  - encoder "hashed": hashed character 1-3-grams (scikit-learn HashingVectorizer, stateless, so
    nothing to fit and nothing to download; characters rather than words because Chinese has no
    spaces) + a linear model; fast on CPU for large corpora.
Heads: LogisticRegression for the domain classifier, Ridge for the 0-5 DataRater. The regularisation
strength is picked on the validation split: lowest MSE for the rater (CareBot: "chosen by lowest
MSE"), highest accuracy (then lowest log-loss) for the classifier.

Labels arrive already agreed: the consensus rule (two ratings differing by 2 or more, or two
different labels -> dropped) lives in medstudio/annotation/agreement.py and the Django side applies
it before calling `train_rater`.
"""
from __future__ import annotations

import json
import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from curation.pipeline.base import RecordView, ScoreResult

CLASSIFY = "classify"  # domain
REGRESS = "regress"  # DataRater 0-5
SCORE_RANGE = (0.0, 5.0)  # docs/METHODS.md 1.3
ENCODERS = ("hashed", "embedding")
FORMAT_VERSION = 1


@dataclass
class EncoderSpec:
    kind: str = "hashed"  # hashed | embedding
    model_ref: str = ""  # embedding: local path / hub id / served model name
    base_url: str = ""  # embedding: OpenAI-compatible server, optional
    n_features: int = 2**18  # hashed
    ngram_max: int = 3  # hashed
    max_chars: int = 4000  # hashed: long documents are cut (the head sees the opening)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def record_text(record: RecordView) -> str:
    """The text a rater reads: the title and text of a document, or the record's flattened text."""
    c = record.content or {}
    if record.kind == "document" and c.get("text"):
        return f"{c.get('title') or ''}\n{c['text']}".strip()
    return record.text or ""


class Featurizer:
    """Turns texts into the feature matrix the head was trained on."""

    def __init__(self, spec: EncoderSpec, embedder: Any = None):
        if spec.kind not in ENCODERS:
            raise ValueError(f"unknown encoder {spec.kind!r}; choose one of {', '.join(ENCODERS)}")
        self.spec = spec
        self._embedder = embedder
        self._hasher = None

    def transform(self, texts: Sequence[str]):
        if self.spec.kind == "hashed":
            if self._hasher is None:
                from sklearn.feature_extraction.text import HashingVectorizer

                self._hasher = HashingVectorizer(analyzer="char", ngram_range=(1, self.spec.ngram_max),
                                                 n_features=self.spec.n_features, alternate_sign=False,
                                                 norm="l2", lowercase=True, dtype=_float32())
            return self._hasher.transform([t[: self.spec.max_chars] for t in texts])
        if self._embedder is None:
            from medstudio.inference.embeddings import load_embedder

            self._embedder = load_embedder(self.spec.model_ref, base_url=self.spec.base_url or None)
        return self._embedder.encode(list(texts))


def _float32():
    import numpy as np

    return np.float32


@dataclass
class TrainResult:
    metrics: dict[str, Any]
    n_train: int
    n_val: int
    chosen_param: float
    classes: list[str] = field(default_factory=list)


class RaterModel:
    """A trained domain classifier or DataRater: encoder spec + fitted head."""

    def __init__(self, task: str, encoder: EncoderSpec, head: Any, classes: list[str] | None = None,
                 metrics: dict[str, Any] | None = None, embedder: Any = None):
        if task not in (CLASSIFY, REGRESS):
            raise ValueError(f"task must be {CLASSIFY!r} or {REGRESS!r}")
        self.task = task
        self.encoder = encoder
        self.head = head
        self.classes = classes or []
        self.metrics = metrics or {}
        self.featurizer = Featurizer(encoder, embedder)

    def predict(self, texts: Sequence[str]) -> list[Any]:
        """Scores clipped to 0-5 (rater), or (label, {label: probability}) pairs (classifier)."""
        import numpy as np

        if not texts:
            return []
        X = self.featurizer.transform(texts)
        if self.task == REGRESS:
            lo, hi = SCORE_RANGE
            return [float(v) for v in np.clip(self.head.predict(X), lo, hi)]
        proba = self.head.predict_proba(X)
        labels = [str(c) for c in self.head.classes_]
        out = []
        for row in proba:
            best = int(np.argmax(row))
            out.append((labels[best], {lab: float(p) for lab, p in zip(labels, row)}))
        return out

    def save(self, directory: str | os.PathLike) -> str:
        import joblib

        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        joblib.dump(self.head, path / "head.joblib")
        meta = {"format": FORMAT_VERSION, "task": self.task, "encoder": self.encoder.to_dict(),
                "classes": self.classes, "metrics": self.metrics}
        (path / "rater.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
        return str(path)

    @classmethod
    def load(cls, directory: str | os.PathLike, *, embedder: Any = None) -> "RaterModel":
        import joblib

        path = Path(directory)
        meta_file = path / "rater.json"
        if not meta_file.exists():
            raise FileNotFoundError(f"no trained rater in {path} (rater.json missing)")
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        # Only files this app wrote are loaded (joblib unpickles): the directory comes from a
        # TrainedModel row, never from user input.
        head = joblib.load(path / "head.joblib")
        return cls(meta["task"], EncoderSpec(**meta["encoder"]), head, meta.get("classes"), meta.get("metrics"),
                   embedder=embedder)


def split_train_val(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    idx = list(range(n))
    random.Random(seed).shuffle(idx)
    n_val = max(1, int(round(n * val_fraction))) if n >= 5 else 0
    return idx[n_val:], idx[:n_val]


def classification_metrics(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, confusion_matrix

    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "labels": list(labels),
        # rows = true label, columns = predicted label, in `labels` order
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=list(labels)).tolist(),
        "n": len(y_true),
    }


def regression_metrics(y_true: Sequence[float], y_pred: Sequence[float]) -> dict[str, Any]:
    from scipy.stats import spearmanr
    from sklearn.metrics import mean_absolute_error, mean_squared_error

    rho = spearmanr(y_true, y_pred).statistic if len(set(y_true)) > 1 and len(set(y_pred)) > 1 else float("nan")
    return {
        "mse": float(mean_squared_error(y_true, y_pred)),
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "spearman": None if rho is None or math.isnan(rho) else float(rho),
        "n": len(y_true),
    }


def train_rater(texts: Sequence[str], labels: Sequence[Any], *, task: str, encoder: EncoderSpec | None = None,
                embedder: Any = None, val_fraction: float = 0.1, seed: int = 0,
                grid: Sequence[float] | None = None) -> tuple[RaterModel, TrainResult]:
    """Fit the head on agreed labels; report validation metrics; refit on all data with the chosen strength."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression, Ridge

    encoder = encoder or EncoderSpec()
    if len(texts) != len(labels):
        raise ValueError("texts and labels differ in length")
    if len(texts) < 4:
        raise ValueError(f"need at least 4 labelled records to train, got {len(texts)}")
    if task == REGRESS:
        y = np.asarray([float(v) for v in labels], dtype=np.float64)
        lo, hi = SCORE_RANGE
        if np.any((y < lo) | (y > hi)):
            raise ValueError(f"DataRater labels must lie in {lo:g}-{hi:g}")
    elif task == CLASSIFY:
        y = np.asarray([str(v) for v in labels])
        if len(set(y.tolist())) < 2:
            raise ValueError("a domain classifier needs at least two different labels")
    else:
        raise ValueError(f"task must be {CLASSIFY!r} or {REGRESS!r}")
    featurizer = Featurizer(encoder, embedder)
    X = featurizer.transform(list(texts))
    tr, va = split_train_val(len(texts), val_fraction, seed)
    if task == CLASSIFY and va:
        # A validation split without every class in training would make a useless model: stratify.
        from sklearn.model_selection import train_test_split

        try:
            tr, va = train_test_split(list(range(len(texts))), test_size=len(va), random_state=seed, stratify=y)
        except ValueError:
            pass  # a class with a single example: plain split
    grid = list(grid or ([0.1, 1.0, 10.0] if task == REGRESS else [1.0, 10.0, 100.0]))

    def make(param: float):
        if task == REGRESS:
            return Ridge(alpha=param)
        return LogisticRegression(C=param, max_iter=2000)

    def fit_eval(param: float):
        head = make(param).fit(X[tr], y[tr])
        pred = head.predict(X[va])
        if task == REGRESS:
            pred = np.clip(pred, *SCORE_RANGE)
            return regression_metrics(y[va].tolist(), pred.tolist())
        from sklearn.metrics import log_loss

        m = classification_metrics(y[va].tolist(), pred.tolist(), sorted(set(y.tolist())))
        m["log_loss"] = float(log_loss(y[va], head.predict_proba(X[va]), labels=head.classes_))
        return m

    if va:
        scored = [(p, fit_eval(p)) for p in grid]
        if task == REGRESS:
            chosen, metrics = min(scored, key=lambda pm: pm[1]["mse"])
        else:
            # Accuracy first; ties (frequent on small validation sets) go to the better-calibrated head.
            chosen, metrics = max(scored, key=lambda pm: (pm[1]["accuracy"], -pm[1]["log_loss"]))
        metrics = dict(metrics, grid={str(p): (m["mse"] if task == REGRESS else m["accuracy"]) for p, m in scored})
    else:
        chosen, metrics = grid[len(grid) // 2], {"note": "too few records for a validation split"}
    head = make(chosen).fit(X, y)
    classes = sorted(set(y.tolist())) if task == CLASSIFY else []
    model = RaterModel(task, encoder, head, classes, metrics, embedder=featurizer._embedder)
    return model, TrainResult(metrics=metrics, n_train=len(tr), n_val=len(va), chosen_param=chosen, classes=classes)


class RaterScorer:
    """Scores records with a trained model. DataRater: value = predicted 0-5 quality.
    Domain: value = probability of `target_label`, keep = (predicted label == target_label)."""

    def __init__(self, model: RaterModel, *, name: str, version: str, target_label: str = "medical"):
        self.model = model
        self.name = name
        self.version = version
        self.target_label = target_label
        if model.task == CLASSIFY and model.classes and target_label not in model.classes:
            raise ValueError(f"target label {target_label!r} is not one of the model's labels {model.classes}")

    def score_batch(self, records: list[RecordView]) -> list[ScoreResult]:
        texts = [record_text(r) for r in records]
        todo = [i for i, t in enumerate(texts) if t.strip()]
        results: list[ScoreResult] = [ScoreResult(value=None, reason="empty text") for _ in records]
        preds = self.model.predict([texts[i] for i in todo])
        for i, pred in zip(todo, preds):
            if self.model.task == REGRESS:
                results[i] = ScoreResult(value=pred, detail={"score": round(pred, 4)})
            else:
                label, proba = pred
                keep = label == self.target_label
                results[i] = ScoreResult(value=proba.get(self.target_label, 0.0),
                                         detail={"label": label, "proba": {k: round(v, 4) for k, v in proba.items()}},
                                         keep=keep, reason="" if keep else f"domain:{label}"[:100])
        return results
