"""The Ollama backend: a model served by an Ollama server, through the official ``ollama`` client.

Selection uses structured outputs: ``format`` is a JSON schema whose items are an ``enum`` of the
candidate names, and the answer is validated again. Judgments generate one token with
``logprobs=True, top_logprobs=20`` (Ollama ≥ 0.12.11) and read P(Yes) from the first generated
token's alternatives. Ollama keeps its own prompt cache per slot, so ``reuse_cache`` is ignored:
a content's judgments are sent one after another, which lets the server reuse the shared prefix.

Configuration (environment):

- ``OLLAMA_HOST``: the server (default ``http://127.0.0.1:11434``), as the ``ollama`` CLI reads it.
- ``LLM4TAG_OLLAMA_TIMEOUT``: seconds to wait for one answer (default 60).
- ``LLM4TAG_OLLAMA_CONNECT_TIMEOUT``: seconds to wait for the connection and for the start-up
  checks (``/api/version``, ``/api/show``), which a live server answers at once (default 5): a
  server that accepts and hangs is reported in seconds, not minutes.
- ``LLM4TAG_OLLAMA_PARALLEL``: requests in flight at once from this process (default 4); match
  the server's ``OLLAMA_NUM_PARALLEL``.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading

from knowledge_base.settings import SettingsError, settings

from .base import (
    NO_VARIANTS,
    YES_VARIANTS,
    BackendError,
    Generation,
    TransientBackendError,
    Judgment,
    LLMBackend,
    parse_selection,
    tag_selection_schema,
    yes_probability,
)

DEFAULT_HOST = "http://127.0.0.1:11434"
MIN_SERVER_VERSION = (0, 12, 11)  # the first release whose /api/chat returns logprobs
TOP_LOGPROBS = 20  # the most alternatives Ollama returns per position
_YES = {v.strip().lower() for v in YES_VARIANTS}
_NO = {v.strip().lower() for v in NO_VARIANTS}


def parse_version(text: str) -> tuple[int, int, int] | None:
    """``0.12.11`` → (0, 12, 11); ``0.13.0-rc1`` → (0, 13, 0); None when there is no x.y.z."""
    match = re.match(r"\s*v?(\d+)\.(\d+)\.(\d+)", text or "")
    return tuple(int(g) for g in match.groups()) if match else None


def _logsumexp(values: list[float]) -> float:
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values))


def yes_no_scores(alternatives: list[tuple[str, float]]) -> tuple[float, float]:
    """Log-scores of Yes and No from a position's top alternatives (token text, logprob).

    Every alternative whose stripped, lower-cased text is "yes" (resp. "no") counts: the score is
    the log of their summed probabilities. A side with no alternative in the list gets an
    estimate: its probability is at most that of the least likely alternative listed, and half
    of that (smallest logprob − log 2) is used.
    """
    floor = min(lp for _, lp in alternatives) - math.log(2)
    yes = [lp for token, lp in alternatives if token.strip().lower() in _YES]
    no = [lp for token, lp in alternatives if token.strip().lower() in _NO]
    return (_logsumexp(yes) if yes else floor), (_logsumexp(no) if no else floor)


class OllamaBackend(LLMBackend):
    def __init__(
        self,
        model: str,
        host: str | None = None,
        timeout: float | None = None,
        parallel: int | None = None,
        connect_timeout: float | None = None,
    ):
        import httpx
        import ollama

        self.model = model
        self.spec = f"ollama:{model}"
        try:
            env = settings()  # LLM4TAG_OLLAMA_TIMEOUT, LLM4TAG_OLLAMA_CONNECT_TIMEOUT, LLM4TAG_OLLAMA_PARALLEL
        except SettingsError as exc:
            raise BackendError(str(exc)) from exc
        self.timeout = float(timeout) if timeout is not None else env.ollama_timeout
        connect = float(connect_timeout) if connect_timeout is not None else env.ollama_connect_timeout
        self.connect_timeout = min(self.timeout, connect)
        limit = parallel if parallel is not None else env.ollama_parallel
        self._slots = threading.BoundedSemaphore(limit)
        # A dead host, or one that accepts and never answers, should fail fast even when answers may take a minute.
        http_timeout = httpx.Timeout(self.timeout, connect=self.connect_timeout)
        self._startup_timeout = httpx.Timeout(self.connect_timeout)
        self.client = ollama.Client(host=host or os.environ.get("OLLAMA_HOST") or DEFAULT_HOST, timeout=http_timeout)
        # The client's httpx.Client holds the normalised base URL (scheme and default port added).
        self._http = self.client._client
        self.host = str(self._http.base_url).rstrip("/")
        self.server_version = self._check_server()
        self._check_model()

    def describe(self) -> str:
        return f"ollama · {self.model} @ {self.host}"

    # -- start-up checks --------------------------------------------------------------------------

    def _unreachable(self) -> BackendError:
        return TransientBackendError(
            f"Ollama is not reachable at {self.host}; start it with `ollama serve` or set OLLAMA_HOST to where it runs"
        )

    def _check_server(self) -> str:
        """The server's version; refuses servers that cannot return logprobs.

        The client has no call for ``GET /api/version``, so it goes through the client's own
        httpx.Client (same base URL, headers and timeout).
        """
        import httpx

        try:
            response = self._http.get("/api/version", timeout=self._startup_timeout)
            response.raise_for_status()
            version = str(response.json().get("version", ""))
        except httpx.ConnectTimeout:
            raise self._unreachable() from None
        except httpx.TimeoutException:
            raise BackendError(
                f"Ollama at {self.host} accepted the connection but did not answer /api/version within {self.connect_timeout:g} s; "
                "is it an Ollama server, and not stuck (OLLAMA_HOST; LLM4TAG_OLLAMA_CONNECT_TIMEOUT to wait longer)?"
            ) from None
        except (httpx.TransportError, ConnectionError):
            raise self._unreachable() from None
        except (httpx.HTTPStatusError, ValueError, AttributeError) as exc:
            raise BackendError(f"{self.host} does not answer like an Ollama server (GET /api/version: {exc}); check OLLAMA_HOST") from None
        parsed = parse_version(version)
        # Builds from source report 0.0.0; let them through — judge() still checks the logprobs.
        if parsed is not None and parsed != (0, 0, 0) and parsed < MIN_SERVER_VERSION:
            needed = ".".join(map(str, MIN_SERVER_VERSION))
            raise BackendError(
                f"the Ollama server at {self.host} is version {version}, too old to return logprobs "
                f"(needs Ollama ≥ {needed}); upgrade it (https://ollama.com/download)"
            )
        return version

    def _check_model(self) -> None:
        import pydantic
        from ollama import ResponseError

        try:
            info = self.client.show(self.model)
        except ResponseError as exc:
            if exc.status_code == 404:
                raise BackendError(
                    f"the Ollama server at {self.host} has no model {self.model!r}; fetch it with `ollama pull {self.model}`"
                ) from None
            raise BackendError(f"Ollama at {self.host} cannot describe {self.model!r}: {exc.error}") from None
        except pydantic.ValidationError:
            return  # the server knows the model but answers in a shape this client does not expect
        except Exception as exc:  # noqa: BLE001 — timeouts and connection failures, mapped below
            mapped = self._transport_error(exc, "/api/show")
            if mapped is exc:
                raise
            raise mapped from None
        capabilities = info.capabilities or []
        if capabilities and "completion" not in capabilities:
            raise BackendError(f"{self.model!r} cannot generate text (its capabilities: {', '.join(capabilities)}); use a chat model")

    # -- requests ---------------------------------------------------------------------------------

    def _transport_error(self, exc: Exception, what: str) -> Exception:
        """A BackendError that says what to do, or ``exc`` itself when it is none of ours."""
        import httpx
        from ollama import ResponseError

        if isinstance(exc, httpx.ConnectTimeout):
            return self._unreachable()
        if isinstance(exc, httpx.TimeoutException):
            return BackendError(
                f"Ollama at {self.host} did not answer {what} for {self.model!r} within the {self.timeout:g} s timeout; "
                "the model may still be loading or the server is busy — raise LLM4TAG_OLLAMA_TIMEOUT or use a smaller model"
            )
        if isinstance(exc, (ConnectionError, httpx.TransportError)):
            return self._unreachable()
        if isinstance(exc, ResponseError):
            if exc.status_code == 404:
                return BackendError(
                    f"the Ollama server at {self.host} has no model {self.model!r}; fetch it with `ollama pull {self.model}`"
                )
            error = TransientBackendError if exc.status_code >= 500 else BackendError
            return error(f"Ollama at {self.host} refused {what} for {self.model!r}: {exc.error} (status {exc.status_code})")
        return exc

    def _chat(self, system: str, user: str, **kwargs):
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        with self._slots:
            try:
                return self.client.chat(self.model, messages=messages, stream=False, **kwargs)
            except Exception as exc:  # noqa: BLE001 — mapped to a BackendError when we know what it means
                mapped = self._transport_error(exc, "/api/chat")
                if mapped is exc:
                    raise
                raise mapped from None

    def select_tags(self, system: str, user: str, candidates: list[str], max_tags: int, head: str = "") -> Generation:
        if not candidates:
            return Generation([], "[]", 0, 0, [])
        # Each token is at least one character, so this bounds a complete answer with room for
        # the whitespace a schema-constrained model may add; it stops a runaway generation.
        longest = max(len(json.dumps(c, ensure_ascii=False)) for c in candidates)
        options = {"temperature": 0, "num_predict": max_tags * (longest + 4) + 16}
        response = self._chat(system, user, format=tag_selection_schema(candidates, max_tags), options=options)
        raw = response.message.content or ""
        kept, rejected = parse_selection(raw, candidates, max_tags)
        return Generation(kept, raw, response.prompt_eval_count or 0, response.eval_count or 0, rejected)

    def judge(self, system: str, prompts: list[str], reuse_cache: bool = True, head: str = "") -> list[Judgment]:
        """P(Yes) per prompt from the first generated token's top-20 alternatives.

        ``reuse_cache`` and ``head`` are ignored: Ollama reuses its prompt cache by itself, and the tokens it
        served from that cache are not reported, so ``reused_tokens`` is 0 and ``prompt_tokens``
        is the server's ``prompt_eval_count``.
        """
        out: list[Judgment] = []
        for prompt in prompts:
            response = self._chat(system, prompt, options={"temperature": 0, "num_predict": 1}, logprobs=True, top_logprobs=TOP_LOGPROBS)
            if not response.logprobs:
                needed = ".".join(map(str, MIN_SERVER_VERSION))
                raise BackendError(
                    f"the Ollama server at {self.host} (version {self.server_version or 'unknown'}) returned no logprobs: "
                    f"server too old to return logprobs (needs Ollama ≥ {needed}); upgrade it (https://ollama.com/download)"
                )
            first = response.logprobs[0]
            alternatives = [(t.token, t.logprob) for t in first.top_logprobs or []]
            if first.token not in {t for t, _ in alternatives}:
                alternatives.append((first.token, first.logprob))
            ly, ln = yes_no_scores(alternatives)
            out.append(Judgment(yes_probability(ly, ln), ly, ln, response.prompt_eval_count or 0, 0))
        return out
