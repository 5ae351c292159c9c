"""The encoder: PyTorch for bulk loads, ONNX Runtime (exported once from the local model files)
for the few texts a tagging call encodes — PyTorch's vectors in float32, close to them with the
default int8 weights. Real MiniLM."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from knowledge_base.settings import SettingsError
from knowledge_base.encoder import ONNX_MAX_BATCH, Encoder
from knowledge_base.config import llm4tag_home

TEXTS = ["A command-line tool that converts PNG images to PDF", "héllo wörld, ünïcode " * 120, "x", "   spaced   out   "]


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    """The float32 ONNX runtime (``onnx``), whose vectors are PyTorch's."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLM4TAG_ENCODER_RUNTIME", "onnx")
        return Encoder()


def test_small_calls_go_through_onnx_with_pytorchs_vectors(encoder):
    onnx = encoder.onnx()
    assert onnx is not None, "the ONNX export failed (see the warning)"
    assert any(p.name.startswith("encoder-") and p.suffix == ".onnx" for p in (llm4tag_home() / "models").iterdir())
    small = encoder.encode(TEXTS)
    reference = encoder.model.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    assert small.vectors.shape == reference.shape and small.vectors.dtype == np.float32
    np.testing.assert_allclose(small.vectors, reference, atol=2e-5)
    assert small.truncated == [False, True, False, False]  # the long text is cut to the window either way
    vector, truncated = encoder.encode_one(TEXTS[0])
    np.testing.assert_allclose(vector, reference[0], atol=2e-5)

    # a large call goes through PyTorch and agrees with the small ones
    many = [f"{t} #{i}" for i in range(ONNX_MAX_BATCH + 1) for t in TEXTS[:1]]
    bulk = encoder.encode(many).vectors
    np.testing.assert_allclose(bulk[:2], np.vstack([encoder.encode_one(t)[0] for t in many[:2]]), atol=2e-5)


def test_the_runtime_setting(monkeypatch):
    monkeypatch.setenv("LLM4TAG_ENCODER_RUNTIME", "torch")
    assert Encoder().onnx() is None
    monkeypatch.setenv("LLM4TAG_ENCODER_RUNTIME", "tensorrt")
    with pytest.raises(SettingsError, match="LLM4TAG_ENCODER_RUNTIME='tensorrt': choose one of onnx-int8, onnx, torch"):
        Encoder()  # refused before anything is loaded
    monkeypatch.delenv("LLM4TAG_ENCODER_RUNTIME", raising=False)
    quantized = Encoder()  # the default
    assert quantized.runtime == "onnx-int8" and quantized.onnx() is not None
    assert any(p.name.endswith("-int8pc.onnx") for p in (llm4tag_home() / "models").iterdir())
    small = quantized.encode(TEXTS).vectors
    reference = quantized.model.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    cosines = (small * reference).sum(1)
    assert np.all(cosines > 0.97) and np.all(cosines < 0.99999), cosines  # int8 weights per channel: close, not equal ("x": 0.979)
    np.testing.assert_allclose(np.linalg.norm(small, axis=1), 1.0, atol=1e-5)


def test_quantizing_keeps_onnx_runtimes_advice_out_of_the_users_log(encoder, tmp_path, monkeypatch, caplog):
    """The int8 export's quantizer advises pre-processing on the root logger; the export drops
    that advice only, and leaves the root logger as it found it."""
    from knowledge_base.encoder import OnnxEncoder

    fp32 = OnnxEncoder.export_path(encoder)  # the float32 export the fixture made
    monkeypatch.setenv("LLM4TAG_HOME", str(tmp_path))
    monkeypatch.setenv("LLM4TAG_ENCODER_RUNTIME", "onnx-int8")
    quantized = Encoder()
    target = OnnxEncoder.export_path(quantized)
    target.parent.mkdir(parents=True)
    (target.parent / fp32.name).write_bytes(fp32.read_bytes())  # so only the quantizing step runs
    filters = list(logging.root.filters)
    with caplog.at_level(logging.WARNING):
        assert OnnxEncoder.export(quantized) == target and target.is_file()
        logging.warning("a warning of the user's own")
    assert not [r for r in caplog.records if "pre-process" in r.getMessage()]
    assert [r.getMessage() for r in caplog.records if r.name == "root"] == ["a warning of the user's own"]
    assert logging.root.filters == filters
