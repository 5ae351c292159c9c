"""The learned recall path: a supervised extreme multi-label classifier over the history.

omikuji's Parabel/Bonsai label trees (the library Annif's ``omikuji`` backends use; it scales to
100k+ tags) are trained on the knowledge base's annotated samples. Each sample's features are its
TF-IDF word and bigram weights (fitted by scikit-learn's ``TfidfVectorizer``, the sparse input Annif feeds
omikuji) beside the encoder embedding it already has, scaled by ``DENSE_WEIGHT``: words the
encoder blurs (package names, formats, jargon) and meaning the words miss both count. On debtags'
validation items omikuji's Acc@1 was 0.697 over the embeddings alone, 0.810 over TF-IDF alone
and 0.823 over both (``docs/results.md``).

Stored in the knowledge base as ``classifier/``: omikuji's own save format in ``model/``,
``tfidf.json`` (the vocabulary and idf weights, plain JSON), ``classifier.json`` (the label
list, what it was trained on, when) and the recall ranker fitted beside it (``ranker.json``). A
new model is written to a temporary folder and renamed into place, so a reader never sees half a
model. No pickle.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import unicodedata
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .errors import InputError, KnowledgeBaseError
from .ranker import RecallRanker

DIRECTORY = "classifier"
META = "classifier.json"
TFIDF = "tfidf.json"
FORMAT = 2  # 2: TF-IDF + embedding features; 1: embedding features only (still read)
DENSE_WEIGHT = 0.5  # the embedding's weight beside the (unit-length) TF-IDF row
TFIDF_SETTINGS = {"sublinear_tf": True, "ngram_range": [1, 2], "max_features": 200_000, "strip_accents": "unicode", "lowercase": True}
_NATIVE_LOCK = threading.Lock()


@dataclass
class ClassifierInfo:
    """What a trained classifier was trained on; stored as ``classifier.json``."""

    labels: list[str]
    samples: int
    features: int
    encoder: str
    trained_at: str = ""
    seconds: float = 0.0
    format: int = FORMAT
    hyper_parameters: dict = field(default_factory=dict)
    vocabulary: int = 0  # TF-IDF terms (0: embedding features only)


@contextmanager
def native_output_silenced():
    """omikuji's native code logs to file descriptor 1 and draws progress bars on 2, whatever the
    log settings; that would corrupt a ``--json`` answer or a protocol stream. While it runs both
    go to a temporary file, which is shown on standard error only if the call fails."""
    sys.stdout.flush()
    sys.stderr.flush()
    with _NATIVE_LOCK, tempfile.TemporaryFile() as sink:
        saved = [os.dup(1), os.dup(2)]
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved[1], 2)
            sink.seek(0)
            sys.stderr.write(sink.read()[-4000:].decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def _omikuji():
    try:
        import omikuji
    except ImportError as exc:  # a dependency, but say what to do if it is missing
        raise KnowledgeBaseError("the learned recall path needs the omikuji package: pip install omikuji") from exc
    return omikuji


TOKEN_PATTERN = re.compile(r"(?u)\b\w\w+\b")  # scikit-learn's default token_pattern


def strip_accents(text: str) -> str:
    """scikit-learn's ``strip_accents_unicode``: NFKD, then drop the combining marks."""
    if text.isascii():
        return text
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


class TextFeatures:
    """A content's features for omikuji: its encoder embedding (indices 0..dims-1, scaled by
    ``dense_weight``) and, when a vocabulary was fitted, its TF-IDF row after it.

    The vocabulary and idf weights are fitted by scikit-learn's ``TfidfVectorizer``; applying
    them to a text is its ``transform`` for ``TFIDF_SETTINGS`` (lower-case, accents stripped,
    word uni- and bigrams, sublinear tf, idf, unit length) written out here, because importing
    scikit-learn costs 1.6–1.8 s of every command's start-up. ``tests/test_classifier.py``
    checks the rows equal scikit-learn's."""

    def __init__(
        self,
        dims: int,
        vocabulary: dict[str, int] | None = None,
        idf: np.ndarray | None = None,
        settings: dict | None = None,
        dense_weight: float = DENSE_WEIGHT,
    ):
        self.dims = dims
        self.vocabulary = vocabulary or None
        self.idf = np.asarray(idf, dtype=np.float64) if self.vocabulary else None
        self.settings = {**TFIDF_SETTINGS, **(settings or {})}
        self.dense_weight = dense_weight if self.vocabulary else 1.0
        if self.vocabulary and (
            self.settings.get("strip_accents") not in (None, "unicode") or self.idf is None or len(self.idf) != len(self.vocabulary)
        ):
            raise ValueError("settings or idf weights that this version does not apply")

    @property
    def size(self) -> int:
        return self.dims + (len(self.vocabulary) if self.vocabulary else 0)

    @classmethod
    def fit(cls, dims: int, texts: list[str] | None) -> "TextFeatures":
        """Fit the TF-IDF vocabulary on the samples' texts (terms in at least two of them, when
        there are enough); embedding features only when there are no texts or no terms."""
        if not texts:
            return cls(dims)
        from sklearn.feature_extraction.text import TfidfVectorizer

        settings = {**TFIDF_SETTINGS, "ngram_range": tuple(TFIDF_SETTINGS["ngram_range"])}
        for min_df in (2, 1) if len(texts) >= 50 else (1,):
            try:
                fitted = TfidfVectorizer(min_df=min_df, dtype=np.float32, **settings).fit(texts)
            except ValueError:  # no term left (texts without words, e.g. only digits or symbols)
                continue
            return cls(dims, {t: int(i) for t, i in fitted.vocabulary_.items()}, fitted.idf_, {**TFIDF_SETTINGS, "min_df": min_df})
        return cls(dims)

    def terms(self, text: str) -> list[str]:
        """scikit-learn's word analyzer: preprocess, tokenise, then n-grams of the tokens."""
        if self.settings.get("lowercase", True):
            text = text.lower()
        if self.settings.get("strip_accents") == "unicode":
            text = strip_accents(text)
        tokens = TOKEN_PATTERN.findall(text)
        low, high = self.settings.get("ngram_range", (1, 1))
        out = list(tokens) if low == 1 else []
        for n in range(max(low, 2), min(high, len(tokens)) + 1):
            out.extend(" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
        return out

    def tfidf(self, text: str) -> list[tuple[int, float]]:
        """(term index, weight) of one text, by index."""
        counts: dict[int, int] = {}
        for term in self.terms(text):
            j = self.vocabulary.get(term)
            if j is not None:
                counts[j] = counts.get(j, 0) + 1
        if not counts:
            return []
        index = np.fromiter(sorted(counts), dtype=np.int64, count=len(counts))
        tf = np.array([counts[j] for j in index.tolist()], dtype=np.float64)
        if self.settings.get("sublinear_tf"):
            tf = np.log(tf) + 1.0
        weights = tf * self.idf[index]
        norm = float(np.sqrt(weights @ weights))
        if norm > 0:
            weights /= norm
        return list(zip(index.tolist(), weights.astype(np.float32).tolist()))

    def rows(self, vectors: np.ndarray, texts: list[str] | None) -> list[list[tuple[int, float]]]:
        """(index, value) pairs per content; ``texts`` are needed when a vocabulary was fitted."""
        dense = np.asarray(vectors, dtype=np.float64) * self.dense_weight
        out = [[(j, v) for j, v in enumerate(row.tolist())] for row in dense]
        if self.vocabulary:
            for row, text in zip(out, list(texts or [""] * len(out))):
                row.extend((self.dims + j, v) for j, v in self.tfidf(text))
        return out

    def save(self, directory: Path) -> None:
        if not self.vocabulary:
            return
        data = {
            "dense_weight": self.dense_weight,
            "settings": self.settings,
            "vocabulary": self.vocabulary,
            "idf": [float(v) for v in self.idf],
        }
        (directory / TFIDF).write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path, dims: int) -> "TextFeatures":
        path = directory / TFIDF
        if not path.is_file():
            return cls(dims)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            settings = {k: v for k, v in data["settings"].items() if k in TFIDF_SETTINGS or k == "min_df"}
            settings["ngram_range"] = tuple(settings.get("ngram_range", TFIDF_SETTINGS["ngram_range"]))
            vocabulary = {str(t): int(i) for t, i in data["vocabulary"].items()}
            return cls(dims, vocabulary, np.asarray(data["idf"], dtype=np.float64), settings, float(data.get("dense_weight", DENSE_WEIGHT)))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise KnowledgeBaseError(f"{path} is damaged ({exc}); run llm4tag kb train-classifier again") from exc


def _write_training_file(
    path: Path, rows: list[list[tuple[int, float]]], label_ids: list[list[int]], n_features: int, n_labels: int
) -> None:
    """omikuji's input: the extreme-classification repository's text format (sparse rows)."""
    with open(path, "w", encoding="ascii") as fh:
        fh.write(f"{len(label_ids)} {n_features} {n_labels}\n")
        for row, ids in zip(rows, label_ids):
            fh.write(",".join(map(str, ids)) + " " + " ".join(f"{j}:{v:.6f}" for j, v in row if v) + "\n")


def exchange_directories(a: Path, b: Path) -> bool:
    """Swap two directories in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False where
    the system cannot. A process killed at any moment leaves one complete classifier in place."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_cwd, exchange = -100, 2
    return renameat2(at_cwd, os.fsencode(a), at_cwd, os.fsencode(b), exchange) == 0


LEFTOVER_AGE_S = 3600  # a save takes minutes at most: an older .classifier-* folder is a killed save's leftover


def _remove_leftovers(kb_dir: Path) -> None:
    for path in kb_dir.glob(".classifier-*"):
        try:
            if time.time() - path.stat().st_mtime > LEFTOVER_AGE_S:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass


class TagClassifier:
    """A trained omikuji model and its labels; ``predict`` is thread-safe."""

    def __init__(self, model, info: ClassifierInfo, ranker: RecallRanker | None = None, features: TextFeatures | None = None):
        self.model = model
        self.info = info
        self.ranker = ranker  # fitted beside it (``knowledge_base.learned_recall``); orders recall's candidates
        self.features = features or TextFeatures(info.features)
        self._lock = threading.Lock()

    @classmethod
    def train(
        cls, vectors: np.ndarray, tags: list[list[str]], encoder: str, n_threads: int = 1, texts: list[str] | None = None
    ) -> "TagClassifier":
        """Fit on (embedding, text, correct tags) samples; samples without a correct tag are left
        out. Without ``texts`` the features are the embeddings alone."""
        keep = [i for i, t in enumerate(tags) if t]
        if len(keep) < 2:
            raise InputError("the learned recall path needs at least 2 annotated samples with a correct tag; load samples first")
        labels = sorted({t for i in keep for t in tags[i]})
        index = {t: i for i, t in enumerate(labels)}
        omikuji = _omikuji()
        started = time.perf_counter()
        dense = np.asarray(vectors)[keep]
        kept_texts = [texts[i] for i in keep] if texts is not None else None
        features = TextFeatures.fit(dense.shape[1], kept_texts)
        with tempfile.TemporaryDirectory(prefix="llm4tag-omikuji-") as tmp:
            data = Path(tmp) / "train.txt"
            _write_training_file(
                data, features.rows(dense, kept_texts), [[index[t] for t in tags[i]] for i in keep], features.size, len(labels)
            )
            params = omikuji.Model.default_hyper_param()
            params.collapse_every_n_layers = 0  # Parabel's default tree, no layer collapsing
            with native_output_silenced():
                model = omikuji.Model.train_on_data(str(data), params, n_threads=n_threads)
        info = ClassifierInfo(
            labels=labels,
            samples=len(keep),
            features=int(dense.shape[1]),
            encoder=encoder,
            trained_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            seconds=round(time.perf_counter() - started, 2),
            hyper_parameters={
                "n_trees": params.n_trees,
                "max_depth": params.max_depth,
                "min_branch_size": params.min_branch_size,
                "dense_weight": features.dense_weight,
            },
            vocabulary=features.size - int(dense.shape[1]),
        )
        return cls(model, info, features=features)

    def predict(self, vector: np.ndarray, k: int, text: str = "") -> list[tuple[str, float]]:
        """The ``k`` most likely tags for a content (its embedding and its text), with omikuji's scores (0..1)."""
        if k <= 0:
            return []
        pairs = self.features.rows(np.asarray(vector)[None, :], [text])[0]
        with self._lock:
            hits = self.model.predict(pairs, beam_size=max(10, k), top_k=k)
        return [(self.info.labels[i], float(s)) for i, s in hits]

    def save(self, kb_dir: Path) -> Path:
        """Write into ``kb_dir/classifier`` atomically (a temporary folder renamed into place)."""
        target = Path(kb_dir) / DIRECTORY
        tmp = Path(tempfile.mkdtemp(prefix=".classifier-", dir=kb_dir))
        try:
            with native_output_silenced():
                self.model.save(str(tmp / "model"))
            if self.ranker is not None:
                self.ranker.save(tmp)
            self.features.save(tmp)
            (tmp / META).write_text(json.dumps(asdict(self.info), indent=1), encoding="utf-8")
            if target.exists() and exchange_directories(tmp, target):
                shutil.rmtree(tmp, ignore_errors=True)  # it holds the old classifier now
            else:  # no atomic exchange here: two renames, with a moment without a classifier
                old = None
                if target.exists():
                    old = target.with_name(f".classifier-old-{os.getpid()}-{time.time_ns()}")
                    os.replace(target, old)
                os.replace(tmp, target)
                if old is not None:
                    shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _remove_leftovers(Path(kb_dir))
        return target

    @staticmethod
    def read_info(kb_dir: Path) -> ClassifierInfo | None:
        """What the knowledge base's classifier was trained on, without loading it; None when it has none."""
        meta = Path(kb_dir) / DIRECTORY / META
        if not meta.is_file():
            return None
        try:
            return ClassifierInfo(**json.loads(meta.read_text(encoding="utf-8")))
        except (ValueError, TypeError) as exc:
            raise KnowledgeBaseError(f"{meta} is damaged ({exc}); run llm4tag kb train-classifier again") from exc

    @classmethod
    def load(cls, kb_dir: Path) -> "TagClassifier | None":
        """The knowledge base's classifier, or None when it has none."""
        directory = Path(kb_dir) / DIRECTORY
        info = cls.read_info(kb_dir)
        if info is None:
            return None
        if info.format not in (1, FORMAT):
            raise KnowledgeBaseError(f"{directory} was written by another llm4tag version; run llm4tag kb train-classifier again")
        omikuji = _omikuji()
        try:
            with native_output_silenced():
                model = omikuji.Model.load(str(directory / "model"))
        except RuntimeError as exc:
            raise KnowledgeBaseError(f"cannot load the classifier in {directory} ({exc}); run llm4tag kb train-classifier again") from exc
        return cls(model, info, RecallRanker.load(directory), TextFeatures.load(directory, info.features))


def classifier_stamp(kb_dir: Path) -> tuple[int, int] | None:
    """Changes whenever a new classifier is moved into place (the meta file is new each time)."""
    try:
        st = (Path(kb_dir) / DIRECTORY / META).stat()
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_ino)
