"""The learned recall path: a supervised extreme multi-label classifier over the history.

omikuji's Parabel/Bonsai label trees (the library Annif's ``omikuji`` backends use; it scales to
100k+ tags) are trained on the knowledge base's annotated samples, with the encoder embeddings
the samples already have as features — so training encodes nothing, and at run time the
content's own embedding (computed once for recall) is all a prediction needs.

Stored in the knowledge base as ``classifier/``: omikuji's own save format in ``model/``,
``classifier.json`` (the label list, what it was trained on, when) and the recall ranker fitted
beside it (``ranker.json``). A new model is written to a
temporary folder and renamed into place, so a reader never sees half a model. No pickle.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .errors import InputError, KnowledgeBaseError
from .ranker import RecallRanker

DIRECTORY = "classifier"
META = "classifier.json"
FORMAT = 1
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


def _write_training_file(path: Path, vectors: np.ndarray, label_ids: list[list[int]], n_labels: int) -> None:
    """omikuji's input: the extreme-classification repository's text format (dense rows here)."""
    with open(path, "w", encoding="ascii") as fh:
        fh.write(f"{len(label_ids)} {vectors.shape[1]} {n_labels}\n")
        for row, ids in zip(vectors, label_ids):
            fh.write(",".join(map(str, ids)) + " " + " ".join(f"{j}:{v:.6f}" for j, v in enumerate(row.tolist())) + "\n")


class TagClassifier:
    """A trained omikuji model and its labels; ``predict`` is thread-safe."""

    def __init__(self, model, info: ClassifierInfo, ranker: RecallRanker | None = None):
        self.model = model
        self.info = info
        self.ranker = ranker  # fitted beside it (``knowledge_base.learned_recall``); orders recall's candidates
        self._lock = threading.Lock()

    @classmethod
    def train(cls, vectors: np.ndarray, tags: list[list[str]], encoder: str, n_threads: int = 1) -> "TagClassifier":
        """Fit on (embedding, correct tags) pairs; samples without a correct tag are left out."""
        keep = [i for i, t in enumerate(tags) if t]
        if len(keep) < 2:
            raise InputError("the learned recall path needs at least 2 annotated samples with a correct tag; load samples first")
        labels = sorted({t for i in keep for t in tags[i]})
        index = {t: i for i, t in enumerate(labels)}
        omikuji = _omikuji()
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="llm4tag-omikuji-") as tmp:
            data = Path(tmp) / "train.txt"
            _write_training_file(data, np.asarray(vectors)[keep], [[index[t] for t in tags[i]] for i in keep], len(labels))
            params = omikuji.Model.default_hyper_param()
            params.collapse_every_n_layers = 0  # dense features: Parabel's default tree, no layer collapsing
            with native_output_silenced():
                model = omikuji.Model.train_on_data(str(data), params, n_threads=n_threads)
        info = ClassifierInfo(labels=labels, samples=len(keep), features=int(np.asarray(vectors).shape[1]), encoder=encoder,
                              trained_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                              seconds=round(time.perf_counter() - started, 2),
                              hyper_parameters={"n_trees": params.n_trees, "max_depth": params.max_depth,
                                                "min_branch_size": params.min_branch_size})
        return cls(model, info)

    def predict(self, vector: np.ndarray, k: int) -> list[tuple[str, float]]:
        """The ``k`` most likely tags for a content embedding, with omikuji's scores (0..1)."""
        if k <= 0:
            return []
        pairs = list(enumerate(np.asarray(vector, dtype=np.float64).tolist()))
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
            (tmp / META).write_text(json.dumps(asdict(self.info), indent=1), encoding="utf-8")
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
        return target

    @classmethod
    def load(cls, kb_dir: Path) -> "TagClassifier | None":
        """The knowledge base's classifier, or None when it has none."""
        directory = Path(kb_dir) / DIRECTORY
        meta = directory / META
        if not meta.is_file():
            return None
        try:
            info = ClassifierInfo(**json.loads(meta.read_text(encoding="utf-8")))
        except (ValueError, TypeError) as exc:
            raise KnowledgeBaseError(f"{meta} is damaged ({exc}); run llm4tag kb train-classifier again") from exc
        if info.format != FORMAT:
            raise KnowledgeBaseError(f"{directory} was written by another llm4tag version; run llm4tag kb train-classifier again")
        omikuji = _omikuji()
        try:
            with native_output_silenced():
                model = omikuji.Model.load(str(directory / "model"))
        except RuntimeError as exc:
            raise KnowledgeBaseError(f"cannot load the classifier in {directory} ({exc}); run llm4tag kb train-classifier again") from exc
        return cls(model, info, RecallRanker.load(directory))


def classifier_stamp(kb_dir: Path) -> tuple[int, int] | None:
    """Changes whenever a new classifier is moved into place (the meta file is new each time)."""
    try:
        st = (Path(kb_dir) / DIRECTORY / META).stat()
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_ino)
