"""The REST API (``llm4tag serve``): tag one, tag a batch, learn from corrections, tags, health.

A thin surface over the façade (``agent.tagging``): it validates requests, calls ``tag``,
``learn`` and ``search_tags``, and shapes the answers.

``create_app(kb_dir, context, token, max_body_bytes)`` builds the FastAPI app; ``llm4tag serve``
runs it with uvicorn. The OpenAPI spec is at ``/openapi.json`` (interactive docs at ``/docs``).

- ``POST /v1/tag`` — ``{"text", "title"?, "id"?, "mode"?, "max_tags"?, "threshold"?, "explain"?}``
  → the tags with confidence and why, the candidate set, notes; ``id`` and the SHA-256 of the
  text are echoed back, so a client can match answers to requests.
- ``POST /v1/tag/stream`` — the same request, answered as server-sent events: ``fast`` (fused
  recall's answer, milliseconds) first, then ``final`` (the answer in the mode asked for).
- ``POST /v1/tag-batch`` — ``{"documents": [{"id", "text", "title"?}, ...], options}`` → one result
  per document in order, ids echoed; a bad document (empty text) gets an ``error`` and the rest
  go on.
- ``POST /v1/learn`` — ``{"text", "correct": [...], "incorrect": [...], "id"?}``: a person's verdict
  becomes a sample (for in-context examples) and graph edges (for C2C2T recall). Unknown tags are
  refused (400, named); an ``id`` that already holds a different text is refused (409) unless
  ``"replace": true``; nothing is written then.
- ``GET /v1/tags?q=&limit=&offset=`` — list the tag repository, or search it by name and meaning.
- ``GET /health`` — status, knowledge-base counts, backend, queue.

Errors are JSON ``{"detail": ...}``, never a stack trace: 400 unusable input, 401 missing token,
409 an id that holds another text, 413 body over the limit, 422 request not matching the schema (e.g. empty text), 429 a review
asked for while ``max_reviews`` wait, 503 queue full
(with ``Retry-After``) or model/knowledge base unavailable.

Security. No endpoint takes a file path: everything read or written is inside the knowledge
base directory the server was started with. Write endpoints (``learn``, and ``tag`` when the
server's context has ``write_back`` on) require ``Authorization: Bearer TOKEN`` whenever a token
is set; ``llm4tag serve`` refuses to listen beyond loopback without one. Content is data: the
generator is grammar-constrained to the recalled candidates and the system prompt tells the model
to ignore instructions inside the content.

Concurrency. The embedded llama.cpp model is not thread-safe (its backend serialises calls with a
lock). Tag requests run in worker threads (``LLM4TAG_API_WORKERS``, default 2 for llama.cpp —
retrieval of one request overlaps generation of another — and ``LLM4TAG_OLLAMA_PARALLEL`` for
Ollama). ``serve --workers N`` (``LLM4TAG_WORKERS``) runs N model worker processes instead, each
with its own llama.cpp on one core (``agent.workers``), and serves N tag requests at once. At most
``LLM4TAG_API_QUEUE`` (default 32) more wait for a worker, and any request beyond that is
answered 503 at once with ``Retry-After``. Each request runs the graph on its own state, so no
request can get another's result. Learn writes go through the knowledge base's write lock
(threads and processes), so concurrent corrections all land.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import time
from contextlib import asynccontextmanager
from functools import partial
from typing import Annotated, Any, Literal

import anyio
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, BaseModel, Field

from agent.context import LANGUAGE_CODE, Context, llm_mode
from agent.nodes.review import ReviewDecision
from agent.results import RecalledTag, ScoredTag, TagResult, recalled_tags, tag_result
from agent.llm.base import BackendError
from agent.tagger import Tagger, tagger_for
from agent.workers import TaggerPool, remote_backend
from .guard import LocalOnly, is_loopback, require_token_beyond_loopback  # noqa: F401 (is_loopback: the old import place)
from knowledge_base.errors import (
    ConflictError,
    DiskFullError,
    InputError,
    KnowledgeBaseError,
    Llm4tagError,
    NoReviewWaitingError,
    TooManyReviewsError,
    UnknownTagsError,
)
from knowledge_base.loaders import clean_text, encodable, require_id, valid_unicode
from knowledge_base.settings import settings

log = logging.getLogger("llm4tag.api")

MAX_BATCH_DOCUMENTS = 100
MAX_ID_CHARS = 200
EMPTY_TEXT = "the text is empty (or only whitespace/control characters); give some text to tag"


def _valid(value: str) -> str:
    valid_unicode(value, "the value")  # an InputError is a ValueError: pydantic reports it as a 422
    return value


def _not_blank(value: str) -> str:
    if not clean_text(_valid(value)):
        raise ValueError(EMPTY_TEXT)
    return value


def _valid_id(value: str) -> str:
    require_id(value, "the id")
    return value


ValidText = Annotated[str, AfterValidator(_valid)]
NonBlankText = Annotated[str, AfterValidator(_not_blank)]
ValidId = Annotated[str, AfterValidator(_valid_id)]


class SafeJSONResponse(JSONResponse):
    """JSON that can always be sent: a lone surrogate or a NaN in the content (say, an error that
    quotes the input) is escaped or nulled instead of failing the response with a 500."""

    def render(self, content) -> bytes:
        try:
            return super().render(content)
        except (UnicodeEncodeError, ValueError):
            return super().render(encodable(content))


def default_workers(context: Context) -> int:
    """Tag requests served at once: LLM4TAG_API_WORKERS, else the context's model workers when
    more than one, else 2 (llama.cpp) or the Ollama parallelism."""
    env = settings()
    if env.api_workers is not None:
        return env.api_workers
    if context.workers > 1:
        return context.workers
    if context.backend.startswith("ollama"):
        return env.ollama_parallel
    return 2


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()  # any str, even one the pipeline refuses


# ---- request and response models ------------------------------------------------------------
class ErrorResponse(BaseModel):
    detail: str = Field(description="What was wrong and what to do next.")


class TagOptions(BaseModel):
    mode: Literal["multi", "single"] | None = Field(default=None, description="multi: several tags; single: exactly one.")
    max_tags: int | None = Field(default=None, ge=1, le=20, description="At most this many tags (multi mode).")
    threshold: float | None = Field(
        default=None, ge=0.0, le=1.0, allow_inf_nan=False, description="Drop tags whose confidence is below this."
    )
    llm: Literal["auto", "full", "fast"] | bool | None = Field(
        default=None,
        description="auto: the language model only where it can change the answer (the default); full (or true): always; "
        "fast (or false): fused recall only, milliseconds per text. Default: the server's setting.",
    )
    review: bool | None = Field(
        default=None,
        description="true: hold the proposed tags for a review (the answer's review is pending); "
        "POST /v1/review/{content_id} or any /v1/learn of the same text resumes it.",
    )
    label_language: str | None = Field(
        default=None,
        max_length=20,
        pattern=LANGUAGE_CODE,
        description="Also give each tag its label in this language (ISO 639-1, e.g. de), from the "
        "vocabulary's SKOS prefLabels; a tag without one keeps its name.",
    )


class TagRequest(TagOptions):
    text: NonBlankText = Field(min_length=1, description="The content to tag.")
    title: ValidText | None = Field(default=None, max_length=1000, description="Optional title, prepended to the text.")
    id: ValidText | None = Field(default=None, max_length=MAX_ID_CHARS, description="Your id for the content; echoed back.")
    explain: bool = Field(
        default=False,
        description="Also return examples, knowledge snippets, the generator's raw selection, the judgments "
        "and the words behind each tag (spans of the cleaned text, whose removal lowers recall's score for it most).",
    )


class TagResponse(TagResult):
    """The result every surface returns (``agent.results.TagResult``), with what REST adds."""

    id: str | None = Field(description="The id sent with the request, if any.")
    text_sha256: str = Field(description="SHA-256 of the text as received (UTF-8).")
    candidates: list[RecalledTag] = Field(description="The recalled candidate set Φ(c); tags are always chosen from it.")
    seconds: float
    details: dict[str, Any] | None = Field(
        default=None,
        description="With explain: examples, knowledge, selection, judgments, timings, "
        "and (on /v1/tag) text and spans: {tag: [{start, end, text, drop}]}.",
    )


class BatchDocument(BaseModel):
    id: ValidText | None = Field(default=None, max_length=MAX_ID_CHARS, description="Your id for the document; echoed back.")
    text: str | None = Field(default=None, description="The content to tag; a missing or empty text is reported for this document only.")
    title: str | None = Field(default=None, max_length=1000)


class TagBatchRequest(TagOptions):
    documents: list[BatchDocument] = Field(min_length=1, max_length=MAX_BATCH_DOCUMENTS)


class BatchItemResult(TagResult):
    """One document's result (``agent.results.TagResult``), or its error."""

    index: int = Field(description="Position of the document in the request.")
    id: str | None
    ok: bool
    text_sha256: str | None = None
    content_id: str | None = None
    tags: list[ScoredTag] = Field(default_factory=list)
    error: str | None = None


class TagBatchResponse(BaseModel):
    results: list[BatchItemResult]
    tagged: int
    errors: int


class LearnRequest(BaseModel):
    text: NonBlankText = Field(min_length=1, description="The content the verdict is about.")
    correct: list[ValidText] = Field(default_factory=list, max_length=100, description="Tags that are right for the text.")
    incorrect: list[ValidText] = Field(default_factory=list, max_length=100, description="Tags that are wrong for the text.")
    id: ValidId | None = Field(default=None, max_length=MAX_ID_CHARS, description="Sample id; by default derived from the text.")
    replace: bool = Field(default=False, description="When the id already holds a different text, replace that sample (else 409).")


class LearnResponse(BaseModel):
    id: str = Field(description="The sample's id in the knowledge base.")
    correct: list[str]
    incorrect: list[str]
    samples: int = Field(description="Annotated samples in the knowledge base after this write.")
    retraining: bool = Field(
        default=False, description="Whether this correction started retraining the learned recall path in the background."
    )
    review: dict[str, Any] | None = Field(
        default=None, description="When a review was waiting for this text: the decision this correction made (it resumed that review)."
    )


class ReviewWaiting(BaseModel):
    content_id: str
    text: str = Field(description="The content under review, as the pipeline worked on it.")
    proposed: list[dict[str, Any]] = Field(description="The proposed tags, with their confidence and evidence.")
    other_candidates: list[str] = Field(description="Other likely tags from recall, best first.")
    error: str | None = Field(default=None, description="Why the last decision sent could not be recorded, if one was refused.")


class ReviewRequest(ReviewDecision):
    """The body of ``POST /v1/review/{content_id}``: the review node's own decision schema, under the name the API has always used."""


class TagInfo(BaseModel):
    name: str
    description: str = ""
    similarity: float | None = Field(default=None, description="With q: 1.0 for a name match, else the cosine to the query.")


class TagChangeRequest(BaseModel):
    action: Literal["rename", "merge", "retire"] = Field(
        description="rename: into a new name; merge: into an existing tag; retire: never suggested again."
    )
    into: str | None = Field(
        default=None, max_length=MAX_ID_CHARS, description="The new name (rename) or the tag to merge into (merge); none to retire."
    )


class TagChangeResponse(BaseModel):
    change: Literal["rename", "merge", "retire"]
    tag: str
    into: str | None
    samples: int = Field(description="Samples whose verdicts on the tag moved (or, retired, were set aside in tag-changes.jsonl).")
    removed_samples: int = Field(
        description="Samples that had a verdict on the retired tag only; their texts are kept in tag-changes.jsonl."
    )
    conflicts: int = Field(description="Samples that had the tag and its replacement as right and wrong at once (kept as right).")
    children: int = Field(description="Tags whose parent was the old tag and is now its replacement.")
    summary: str


class TagListResponse(BaseModel):
    query: str | None
    total: int = Field(description="Tags in the repository.")
    tags: list[TagInfo]


class KbSummary(BaseModel):
    tags: int
    samples: int
    contents: int
    document_passages: int
    graph: dict[str, int]


class QueueStatus(BaseModel):
    running: int
    waiting: int
    workers: int
    max_waiting: int


class HealthResponse(BaseModel):
    status: Literal["ok"]
    backend: str
    knowledge_base: KbSummary
    queue: QueueStatus
    auth_required: bool


# ---- backpressure --------------------------------------------------------------------------
class QueueFull(Exception):
    def __init__(self, retry_after: int):
        super().__init__(retry_after)
        self.retry_after = retry_after


class TagQueue:
    """At most ``workers`` tag jobs run at once and ``max_waiting`` documents wait; the rest are refused.

    The queue counts documents, not requests: a batch of 100 takes 100 places, so a single
    ``/v1/tag`` behind it is refused at once (503 with ``Retry-After``) instead of waiting for all
    of them. A batch larger than the whole queue is admitted only into an empty one. Admission is
    decided on the event loop (no lock needed); waiting requests hold no thread.
    """

    def __init__(self, workers: int, max_waiting: int):
        self.workers = workers
        self.max_waiting = max_waiting
        self.admitted = 0  # documents admitted and not finished
        self.started = 0  # of those, documents whose request holds a worker
        self._limiter: anyio.CapacityLimiter | None = None
        self._mean_seconds = 5.0  # per document

    @property
    def limiter(self) -> anyio.CapacityLimiter:
        if self._limiter is None:  # created inside the running event loop
            self._limiter = anyio.CapacityLimiter(self.workers)
        return self._limiter

    @property
    def running(self) -> int:
        return 0 if self._limiter is None else int(self._limiter.borrowed_tokens)

    @property
    def waiting(self) -> int:
        """Documents admitted whose request waits for a worker."""
        return max(0, self.admitted - self.started)

    def retry_after(self) -> int:
        return max(1, math.ceil(self._mean_seconds * (self.admitted + 1) / self.workers))

    async def run(self, fn, *args, documents: int = 1, **kwargs):
        if self.admitted and self.admitted + documents > self.workers + self.max_waiting:
            raise QueueFull(self.retry_after())
        self.admitted += documents
        try:
            async with self.limiter:
                self.started += documents
                try:
                    started = time.perf_counter()
                    result = await anyio.to_thread.run_sync(partial(fn, *args, **kwargs))
                    self._mean_seconds = 0.8 * self._mean_seconds + 0.2 * (time.perf_counter() - started) / documents
                    return result
                finally:
                    self.started -= documents
        finally:
            self.admitted -= documents


# ---- request body limit --------------------------------------------------------------------
class BodySizeLimit:
    """Refuse request bodies over ``max_bytes`` with 413, whether declared or streamed (chunked)."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self, size: int | None) -> JSONResponse:
        said = f"the request body is {size} bytes, over" if size is not None else "the request body goes over"
        return JSONResponse(
            {
                "detail": f"{said} this server's limit of {self.max_bytes} bytes; "
                "send less (split a batch) or start the server with a larger --max-body"
            },
            status_code=413,
        )

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                return await JSONResponse({"detail": "the Content-Length header is not a number"}, status_code=400)(scope, receive, send)
            if size > self.max_bytes:
                return await self._too_large(size)(scope, receive, send)
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body = message.get("body", b"")
            received += len(body)
            if received > self.max_bytes:
                return await self._too_large(None)(scope, receive, send)
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


# ---- the server's own time -------------------------------------------------------------------
class ServerTiming:
    """Say in a ``Server-Timing`` header (W3C Server Timing: ``app;dur=<ms>``) how long the app took
    from the request's arrival to its response's start, so a client can tell the server's time from
    its own and the network's (``bench/api_load.py`` reports both)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()

        async def timed(message):
            if message["type"] == "http.response.start":
                took = (time.perf_counter() - started) * 1000
                message = {**message, "headers": [*message.get("headers", []), (b"server-timing", f"app;dur={took:.1f}".encode())]}
            await send(message)

        await self.app(scope, receive, timed)


# ---- the app -------------------------------------------------------------------------------
def _event(name: str, data: str) -> str:
    """One server-sent event (``data`` is one line of JSON)."""
    return f"event: {name}\ndata: {data}\n\n"


def _options(base: Context, options: TagOptions) -> Context:
    return base.with_overrides(
        mode=options.mode,
        max_tags=options.max_tags,
        threshold=options.threshold,
        review=getattr(options, "review", None),
        llm=llm_mode(options.llm),
        label_language=options.label_language,
    )


def _error_responses(*codes: int) -> dict:
    described = {
        400: "The input cannot be used (the detail says why).",
        401: "A bearer token is needed for this endpoint.",
        404: "No review is waiting for this content.",
        409: "The id already holds a different text; send replace=true to overwrite it.",
        413: "The request body is over the size limit.",
        429: "A review was asked for while the knowledge base's max_reviews reviews wait; decide some first.",
        503: "The tag queue is full (retry after Retry-After seconds), or the model or knowledge base is unavailable.",
    }
    return {code: {"model": ErrorResponse, "description": described[code]} for code in codes}


class _Service:
    """What the endpoints of one app share: the run settings, the knowledge base's Tagger, the
    queue and the model workers, the token guard, and how a result and a failure are answered."""

    def __init__(self, base: Context, tagger: Tagger, queue: "TagQueue", pool: TaggerPool | None, token: str | None):
        self.base, self.tagger, self.queue, self.pool, self.token = base, tagger, queue, pool, token
        self.bearer = HTTPBearer(auto_error=False, description="The token given to `llm4tag serve --token` (or LLM4TAG_API_TOKEN).")
        bearer = self.bearer

        def require_token(credentials: HTTPAuthorizationCredentials | None = Security(bearer)) -> None:
            if token and (credentials is None or not hmac.compare_digest(credentials.credentials.encode("utf-8"), token.encode("utf-8"))):
                raise HTTPException(
                    status_code=401,
                    detail="this endpoint changes the knowledge base and needs 'Authorization: Bearer <token>' with the server's token",
                    headers={"WWW-Authenticate": "Bearer"},
                )

        self.require_token = require_token
        self.write_guard = [Depends(require_token)] if token else []
        self.tag_guard = self.write_guard if base.write_back else []
        self.write_errors: tuple[int, ...] = (401,) if token else ()
        self.tag_errors = self.write_errors if base.write_back else ()

    def tag_text(self, text: str, title: str | None, ctx: Context) -> dict:
        """Tag in a model worker process when the server has them, else in this process."""
        return self.pool.submit(text, title, ctx).result() if self.pool else self.tagger.tag(text, title=title, context=ctx)

    def failure(self, exc: Exception, where: str) -> tuple[int, str, dict[str, str] | None]:
        """The status, message and headers a failed request is answered with: by the exception
        handlers below, and as the ``error`` event of a stream that has already begun."""
        if isinstance(exc, QueueFull):
            return (
                503,
                f"the tagging queue is full ({self.queue.workers} running, {self.queue.max_waiting} waiting); retry in {exc.retry_after} s",
                {"Retry-After": str(exc.retry_after)},
            )
        if isinstance(exc, Llm4tagError):
            if isinstance(exc, ConflictError):
                status = 409
            elif isinstance(exc, TooManyReviewsError):
                status = 429
            elif isinstance(exc, DiskFullError):
                status = 507  # Insufficient Storage
            else:
                status = 503 if isinstance(exc, (BackendError, KnowledgeBaseError)) and not isinstance(exc, InputError) else 400
            return status, str(exc), None
        log.exception("unexpected error on %s", where, exc_info=exc)
        return 500, f"internal error ({type(exc).__name__}); the server log has the details", None

    def failed(self, request: Request, exc: Exception) -> SafeJSONResponse:
        status, detail, headers = self.failure(exc, f"{request.method} {request.url.path}")
        return SafeJSONResponse({"detail": detail}, status_code=status, headers=headers)

    def tag_response(
        self, result: dict, given_id: str | None, digest: str, started: float, explain: bool = False, spans: dict | None = None
    ) -> TagResponse:
        details = None
        if explain:
            details = {k: result.get(k) for k in ("similar_contents", "examples", "knowledge", "selection", "judgments", "timings")}
            if spans is not None:
                details |= {"text": result["text"], "spans": spans}
        return TagResponse(
            **dict(tag_result(result, spans)),
            id=given_id,
            text_sha256=digest,
            candidates=recalled_tags(result),
            seconds=round(time.perf_counter() - started, 3),
            details=details,
        )


def create_app(
    kb_dir: str | None = None,
    context: Context | None = None,
    token: str | None = None,
    max_body_bytes: int | None = None,
    *,
    workers: int | None = None,
    max_waiting: int | None = None,
    local_only: bool = False,
) -> FastAPI:
    """The REST app for one knowledge base.

    ``kb_dir`` (or ``context.kb_dir``; the demo knowledge base when both are None) is the only
    place the app reads or writes. ``token``: when set, write endpoints need it as a bearer token.
    ``max_body_bytes`` (default ``LLM4TAG_API_MAX_BODY`` or 1 MB), ``workers`` and ``max_waiting``
    (default ``LLM4TAG_API_QUEUE`` or 32) bound what the server accepts at once. ``local_only``
    refuses (403) requests whose ``Host`` or ``Origin`` is not a loopback name: ``serve`` sets it
    on loopback without a token, against DNS rebinding.
    """
    base = (context or Context.from_env()).with_overrides(kb_dir=kb_dir)
    env = settings()
    limit = max_body_bytes or env.api_max_body
    queue = TagQueue(workers or default_workers(base), max_waiting if max_waiting is not None else env.api_queue)
    tagger = tagger_for(base.kb_dir)  # every operation of this knowledge base; fails at start, not on the first request
    pool = TaggerPool(base.workers, base) if base.workers > 1 and not remote_backend(base) else None
    svc = _Service(base, tagger, queue, pool, token)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        try:
            await anyio.to_thread.run_sync(tagger.warm_up)  # before the first request: it would wait for these loads
        except Exception as exc:  # the first request reports it with its own error
            log.warning("warm-up failed (%s: %s); the first request will load what it needs", type(exc).__name__, exc)
        yield
        if pool is not None:
            pool.close(cancel=True)

    app = FastAPI(
        lifespan=lifespan,
        default_response_class=SafeJSONResponse,
        title="llm4tag",
        version="0.1.0",
        description="Automatic tagging with graph-based recall, knowledge-enhanced LLM generation and calibrated confidence (after LLM4Tag, KDD 2025).",
    )
    app.state.context = base
    app.state.queue = queue
    app.state.pool = pool
    app.add_middleware(BodySizeLimit, max_bytes=limit)
    app.add_middleware(ServerTiming)  # outside the body limit: its time counts reading the body too
    if local_only:
        app.add_middleware(LocalOnly)  # added last: it runs first

    _add_error_handlers(app, svc)
    _add_tagging(app, svc)
    _add_tag_stream(app, svc)
    _add_batch(app, svc)
    _add_learning(app, svc)
    _add_vocabulary(app, svc)
    return app


def _add_error_handlers(app: FastAPI, svc: _Service) -> None:
    """Errors as ``{"detail": ...}``, never a traceback."""

    @app.exception_handler(QueueFull)
    async def _queue_full(request: Request, exc: QueueFull):
        return svc.failed(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        return SafeJSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError):
        # FastAPI's own handler echoes the input, which may be what no JSON encoder takes (a lone
        # surrogate, NaN): say where and what was wrong, without the input
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()]
        return SafeJSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(Llm4tagError)
    async def _llm4tag_error(request: Request, exc: Llm4tagError):
        return svc.failed(request, exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        return svc.failed(request, exc)


def _add_tagging(app: FastAPI, svc: _Service) -> None:
    """``POST /v1/tag``."""
    base, tagger, queue = svc.base, svc.tagger, svc.queue
    tag_guard, write_errors = svc.tag_guard, svc.write_errors

    @app.post(
        "/v1/tag",
        response_model=TagResponse,
        dependencies=tag_guard,
        responses=_error_responses(400, 413, 429, 503, *write_errors),
        tags=["tagging"],
    )
    async def tag_one(request: TagRequest, credentials: HTTPAuthorizationCredentials | None = Security(svc.bearer)) -> TagResponse:
        """Tag one content with the full pipeline: recall, examples, knowledge, generate, calibrate.
        With ``review`` (it stores the text until a decision) the server's token is needed."""
        ctx = _options(base, request)
        if ctx.review:
            svc.require_token(credentials)
        started = time.perf_counter()
        result = await queue.run(svc.tag_text, request.text, request.title, ctx)
        spans = None
        if request.explain:  # the words behind each kept tag, in this process (recall only: no model call)
            spans = await anyio.to_thread.run_sync(
                partial(tagger.supporting_spans, result["text"], [t["tag"] for t in result["tags"]], context=ctx)
            )
        return svc.tag_response(result, request.id, text_digest(request.text), started, request.explain, spans)


def _add_tag_stream(app: FastAPI, svc: _Service) -> None:
    """``POST /v1/tag/stream``: fused recall's answer at once, then the pipeline's, as server-sent events."""
    base, queue = svc.base, svc.queue
    tag_guard, tag_errors = svc.tag_guard, svc.tag_errors

    @app.post(
        "/v1/tag/stream",
        dependencies=tag_guard,
        response_class=StreamingResponse,
        tags=["tagging"],
        responses={
            200: {
                "description": "Server-sent events: `fast`, then `final`, each a TagResponse (or `error` with {detail}).",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            **_error_responses(400, 413, 503, *tag_errors),
        },
    )
    async def tag_one_streamed(request: TagRequest):
        """Tag one content, answering at once with fused recall and then with the pipeline, as
        server-sent events: ``event: fast`` — the ``llm: fast`` answer (a TagResponse, milliseconds
        after the request) — then ``event: final``, the answer in the mode asked for (``auto`` by
        default: the same tags as ``fast`` when the language model did not run for this text, its
        ``route`` says why). A failure after the first event comes as ``event: error`` with
        ``{"detail"}``; one before it (an empty text, a full queue) as the usual HTTP error.
        Reviews are not streamed: use ``/v1/tag`` with ``review``."""
        ctx = _options(base, request)
        if ctx.review:
            raise HTTPException(status_code=400, detail='a review is not streamed; send it to /v1/tag with "review": true')
        digest, started = text_digest(request.text), time.perf_counter()
        fast = await queue.run(svc.tag_text, request.text, request.title, ctx.with_overrides(llm="fast"))

        async def events():
            answer = svc.tag_response(fast, request.id, digest, started, request.explain)
            yield _event("fast", answer.model_dump_json())
            if ctx.llm == "fast":
                yield _event("final", answer.model_dump_json())
                return
            try:
                final = await queue.run(svc.tag_text, request.text, request.title, ctx)
            except Exception as exc:  # the response has begun: the failure is an event, with the message a status code would carry
                yield _event("error", json.dumps({"detail": svc.failure(exc, "POST /v1/tag/stream")[1]}))
                return
            yield _event("final", svc.tag_response(final, request.id, digest, started, request.explain).model_dump_json())

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def _add_batch(app: FastAPI, svc: _Service) -> None:
    """``POST /v1/tag-batch``."""
    base, tagger, queue, pool = svc.base, svc.tagger, svc.queue, svc.pool
    tag_guard, tag_errors = svc.tag_guard, svc.tag_errors

    @app.post(
        "/v1/tag-batch",
        response_model=TagBatchResponse,
        dependencies=tag_guard,
        responses=_error_responses(400, 413, 503, *tag_errors),
        tags=["tagging"],
    )
    async def tag_batch(request: TagBatchRequest) -> TagBatchResponse:
        """Tag several documents in one request; each result echoes its document's id, a bad document is reported in its own result."""
        ctx = _options(base, request)

        def run_all() -> list[BatchItemResult]:
            results = []
            usable = [doc.text is not None and bool(clean_text(doc.text)) for doc in request.documents]
            # with model workers, every document of the batch is in their queue at once
            futures = [pool.submit(doc.text, doc.title, ctx) if pool and ok else None for doc, ok in zip(request.documents, usable)]
            for index, (doc, ok, future) in enumerate(zip(request.documents, usable, futures)):
                item = BatchItemResult(index=index, id=doc.id, ok=False)
                if doc.text is not None:
                    item.text_sha256 = text_digest(doc.text)
                if not ok:
                    item.error = EMPTY_TEXT
                else:
                    try:
                        result = future.result() if future else tagger.tag(doc.text, title=doc.title, context=ctx)
                    except Llm4tagError as exc:
                        item.error = str(exc)
                    else:
                        item = BatchItemResult(**dict(tag_result(result)), index=index, id=doc.id, ok=True, text_sha256=item.text_sha256)
                results.append(item)
            return results

        results = await queue.run(run_all, documents=len(request.documents))
        tagged = sum(1 for r in results if r.ok)
        return TagBatchResponse(results=results, tagged=tagged, errors=len(results) - tagged)


def _add_learning(app: FastAPI, svc: _Service) -> None:
    """Reviews (``GET``/``POST /v1/review/{content_id}``) and corrections (``POST /v1/learn``)."""
    tagger = svc.tagger
    write_guard, write_errors = svc.write_guard, svc.write_errors

    @app.get(
        "/v1/review/{content_id}",
        response_model=ReviewWaiting,
        dependencies=write_guard,
        responses=_error_responses(404, *write_errors),
        tags=["learning"],
    )
    def pending_review(content_id: str) -> ReviewWaiting:
        """The review waiting for a content (tagged with review: true): its text, the proposed tags and the other likely candidates."""
        waiting = tagger.pending_review(content_id=content_id)
        if waiting is None:
            raise HTTPException(status_code=404, detail=f'no review is waiting for {content_id!r}; tag the text with "review": true first')
        return ReviewWaiting(**{k: v for k, v in encodable(waiting).items() if k in ReviewWaiting.model_fields})

    @app.post(
        "/v1/review/{content_id}",
        response_model=TagResponse,
        dependencies=write_guard,
        responses=_error_responses(400, 404, 413, 503, *write_errors),
        tags=["learning"],
    )
    def resume_review(content_id: str, decision: ReviewRequest) -> TagResponse:
        """Resume a waiting review with a decision: accepted and added tags are recorded as right, rejected ones as wrong."""
        started = time.perf_counter()
        waiting = tagger.pending_review(content_id=content_id)
        if waiting is None:
            raise HTTPException(status_code=404, detail=f'no review is waiting for {content_id!r}; tag the text with "review": true first')
        try:
            result = tagger.review(content_id, accept=decision.accept, reject=decision.reject, add=decision.add)
        except UnknownTagsError as exc:
            raise HTTPException(status_code=400, detail=f"{exc}. Find tags with GET /v1/tags?q=...") from exc
        except NoReviewWaitingError as exc:  # decided meanwhile (another decision, or a learn of the same text)
            raise HTTPException(status_code=404, detail=str(exc)) from exc
        return svc.tag_response(result, None, text_digest(waiting["text"]), started)

    @app.post(
        "/v1/learn",
        response_model=LearnResponse,
        dependencies=write_guard,
        responses=_error_responses(400, 409, 413, 503, *write_errors),
        tags=["learning"],
    )
    def learn(request: LearnRequest) -> LearnResponse:
        """Record a verdict: the correct and incorrect tags of a text become a sample and graph edges."""
        try:
            learned = tagger.learn(request.text, request.correct, request.incorrect, sample_id=request.id, replace=request.replace)
        except UnknownTagsError as exc:
            raise HTTPException(status_code=400, detail=f"{exc}. Find tags with GET /v1/tags?q=...") from exc
        return LearnResponse(**learned)


def _add_vocabulary(app: FastAPI, svc: _Service) -> None:
    """The tag repository (``GET /v1/tags``, ``POST /v1/tags/{tag}/change``) and ``GET /health``."""
    base, tagger, kb, queue = svc.base, svc.tagger, svc.tagger.kb, svc.queue
    write_guard, write_errors = svc.write_guard, svc.write_errors

    @app.get("/v1/tags", response_model=TagListResponse, responses=_error_responses(400), tags=["vocabulary"])
    def list_tags(
        q: str | None = Query(default=None, max_length=200, description="Search by name or meaning; list alphabetically when empty."),
        limit: int = Query(default=20, ge=1, le=500),
        offset: int = Query(default=0, ge=0, description="Skip this many tags (listing only)."),
    ) -> TagListResponse:
        """List the tag repository, or search it: name matches first, then tags nearest in meaning."""
        total = kb.collection("tags").count()
        query = clean_text(q or "")
        if query:
            hits = tagger.search_tags(query, limit)
            tags = [TagInfo(name=h["tag"], description=h["description"], similarity=h["similarity"]) for h in hits]
        else:
            names = sorted(kb.tag_names())[offset : offset + limit]
            known = kb.get_tags(names)
            tags = [TagInfo(name=n, description=known[n].description if n in known else "") for n in names]
        return TagListResponse(query=query or None, total=total, tags=tags)

    @app.post(
        "/v1/tags/{tag}/change",
        response_model=TagChangeResponse,
        dependencies=write_guard,
        responses=_error_responses(400, 503, *write_errors),
        tags=["vocabulary"],
    )
    def change_tag(
        request: TagChangeRequest, tag: str = Path(max_length=MAX_ID_CHARS, description="The tag to rename, merge or retire.")
    ) -> TagChangeResponse:
        """Rename, merge or retire a tag: its history moves to the replacement (or is set aside), a
        retired tag is never suggested again, and what was there is kept in the knowledge base."""
        return TagChangeResponse(**tagger.change_tag(tag, request.action, request.into))

    @app.get("/health", response_model=HealthResponse, tags=["service"])
    def health() -> HealthResponse:
        """Liveness and what the server serves: knowledge-base counts, backend, queue."""
        kb.graph.refresh()
        summary = KbSummary(
            tags=kb.collection("tags").count(),
            samples=kb.collection("samples").count(),
            contents=kb.collection("contents").count(),
            document_passages=kb.collection("documents").count(),
            graph=kb.graph_counts(),
        )
        return HealthResponse(
            status="ok",
            backend=base.backend,
            knowledge_base=summary,
            queue=QueueStatus(running=queue.running, waiting=queue.waiting, workers=queue.workers, max_waiting=queue.max_waiting),
            auth_required=bool(svc.token),
        )


def serve(
    kb_dir: str | None,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    max_body_bytes: int | None = None,
    context: Context | None = None,
    log_level: str = "info",
) -> None:
    """Run the API with uvicorn; refuses a non-loopback host without a token, and on loopback
    without one answers only requests addressed to loopback (``guard.LocalOnly``)."""
    import uvicorn

    require_token_beyond_loopback(host, token)
    app = create_app(kb_dir, context, token, max_body_bytes, local_only=not token)
    if app.state.pool is not None:
        app.state.pool.start()  # every worker loads its model before the first request
    elif app.state.context.uses_llm:
        tagger_for(app.state.context.kb_dir).backend(app.state.context)  # load the model before the first request
    uvicorn.run(app, host=host, port=port, log_level=log_level)
