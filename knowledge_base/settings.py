"""This process's settings from the environment: one typed place for every ``LLM4TAG_*`` variable
that is about the machine and the process, not about a knowledge base or a tagging run.

A knowledge base's settings live in its ``config.json`` (``knowledge_base.config``), a tagging
run's in ``agent.context.Context`` (also settable as ``LLM4TAG_<FIELD>``). The settings here are
read where they are used, each time (a worker pool sets some of them for its children), and are
checked alike: a bad value is refused with the variable's name and what it may be. ``llm4tag
config`` prints them with the run configuration.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal, get_args, get_type_hints

from .errors import InputError

EncoderRuntime = Literal["onnx-int8", "onnx", "torch"]
ENV_PREFIX = "LLM4TAG_"


class SettingsError(InputError):
    """An ``LLM4TAG_*`` environment variable holds a value llm4tag cannot use."""


@dataclass(frozen=True)
class Settings:
    home: str = field(
        default="~/.cache/llm4tag",
        metadata={"help": "where llm4tag keeps what it builds once per machine: the demo knowledge base, converted models"},
    )
    encoder_runtime: EncoderRuntime = field(
        default="onnx-int8",
        metadata={
            "help": "how a few texts at a time are encoded: onnx-int8 (int8 weights, 0.28x PyTorch's time), onnx (float32), "
            "torch (PyTorch); bulk loads always use PyTorch"
        },
    )
    encoder_threads: int = field(default=1, metadata={"min": 1, "help": "ONNX Runtime threads for encoding"})
    llm_threads: int = field(default=1, metadata={"min": 1, "help": "llama.cpp threads of the embedded model"})
    llama_repack: bool = field(
        default=False, metadata={"help": "let llama.cpp use its repacked (AMX) weight buffers; off because they crash inside some VMs"}
    )
    ollama_timeout: float = field(
        default=60.0, metadata={"min": 0.0, "exclusive": True, "help": "seconds to wait for one answer from Ollama"}
    )
    ollama_connect_timeout: float = field(
        default=5.0, metadata={"min": 0.0, "exclusive": True, "help": "seconds to wait for the Ollama connection and its start-up checks"}
    )
    ollama_parallel: int = field(
        default=4,
        metadata={"min": 1, "help": "Ollama requests in flight at once from this process; match the server's OLLAMA_NUM_PARALLEL"},
    )
    api_workers: int | None = field(
        default=None,
        metadata={
            "min": 1,
            "help": "tag requests the REST API serves at once; unset: the run's model workers when more than one, "
            "else 2 (llama.cpp) or ollama_parallel",
        },
    )
    api_max_body: int = field(default=1_000_000, metadata={"min": 1, "help": "the largest REST request body in bytes"})
    api_queue: int = field(default=32, metadata={"min": 0, "help": "REST tag requests that may wait for a worker before 503"})
    allowed_backends: str | None = field(
        default=None,
        metadata={
            "help": "backends a caller of the app or LangGraph's server may pick besides the configured one (LLM4TAG_BACKEND), "
            "comma-separated specs such as 'llamacpp:/models/x.gguf,ollama:qwen2.5:7b'; unset: only the configured one"
        },
    )
    served_writes: bool = field(
        default=False,
        metadata={
            "help": "let a run's context on LangGraph's server turn on write_back or review (both change the knowledge base); "
            "off: only LLM4TAG_WRITE_BACK / LLM4TAG_REVIEW, set by the operator, do"
        },
    )
    disk_reserve: int = field(
        default=16 * 2**20,
        metadata={
            "min": 0,
            "help": "bytes that must be free on the knowledge base's disk before a write starts; with less it is "
            "refused whole, and a write that fails there is put down to a full disk",
        },
    )
    doc_max_bytes: int = field(
        default=64 * 2**20, metadata={"min": 1, "help": "load-docs: the largest document file in bytes, and the most a .docx may unpack to"}
    )
    doc_max_pages: int = field(default=2000, metadata={"min": 1, "help": "load-docs: the most pages a PDF may have"})
    doc_max_passages: int = field(default=20000, metadata={"min": 1, "help": "load-docs: the most passages one file may give"})
    prompts_dir: str | None = field(
        default=None, metadata={"help": "a folder with your own copies of prompts/*.txt; a template it lacks is read from prompts/"}
    )

    @staticmethod
    def variable(name: str) -> str:
        return ENV_PREFIX + name.upper()

    @classmethod
    def from_env(cls) -> "Settings":
        """The defaults, with each set (non-empty) ``LLM4TAG_<FIELD>`` variable parsed and checked."""
        hints = _hints(cls)
        values = {}
        for f in fields(cls):
            raw = os.environ.get(cls.variable(f.name), "").strip()
            if raw:
                values[f.name] = parse_variable(cls.variable(f.name), raw, hints[f.name])
                _check_minimum(cls.variable(f.name), raw, values[f.name], f.metadata)
        return cls(**values)

    @property
    def home_path(self) -> Path:
        return Path(self.home).expanduser()

    def variables(self) -> dict[str, object]:
        """Each setting's value under its variable's name, for ``llm4tag config``."""
        return {self.variable(f.name): getattr(self, f.name) for f in fields(self)}


@functools.cache
def _hints(cls) -> dict:
    return get_type_hints(cls)


def parse_variable(variable: str, raw: str, hint) -> object:
    """An environment variable's text as the type ``hint`` names: a yes/no value, a whole number, a
    number, one of a ``Literal``'s choices, else the text; ``none`` for an optional number is None.
    Shared by these settings and the run configuration (``agent.context.Context``)."""
    text = str(hint)
    choices = [c for c in get_args(hint) if c is not type(None)]
    if choices and all(isinstance(c, str) for c in choices):
        value = raw.lower()
        if value not in choices:
            raise SettingsError(f"{variable}={raw!r}: choose one of {', '.join(choices)}")
        return value
    if "bool" in text:
        lowered = raw.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{variable}={raw!r} is not a yes/no value: use 1 or 0")
    if "int" in text or "float" in text:
        if "None" in text and raw.lower() == "none":
            return None
        kind, what = (int, "a whole number") if "int" in text else (float, "a number")
        try:
            value = kind(raw)
        except ValueError:
            raise SettingsError(f"{variable}={raw!r} is not {what}") from None
        if kind is float and not math.isfinite(value):
            raise SettingsError(f"{variable}={raw!r} is not a finite number")
        return value
    return raw


def _check_minimum(variable: str, raw: str, value, meta) -> None:
    minimum = meta.get("min")
    if minimum is None or value is None:
        return
    if value <= minimum if meta.get("exclusive") else value < minimum:
        raise SettingsError(f"{variable} must be {'greater than' if meta.get('exclusive') else 'at least'} {minimum:g}, not {raw!r}")


def settings() -> Settings:
    """The settings as the environment says now."""
    return Settings.from_env()
