"""Batch tagging on Ray Data (``llm4tag index --engine ray``): the same files, spread over a cluster.

``ray_results(items, context, workers, address)`` tags batch items (``agent.batch.BatchItem``)
with ``Dataset.map_batches`` over an actor pool (``ActorPoolStrategy(size=workers)``) of
``RayTagger`` actors. Each actor opens the knowledge base and loads the model once, when it
starts, and then tags batch after batch through the façade (``agent.tagging.tag``), on one CPU
(llama.cpp, the encoder and torch on one thread each). Results come back to the driver in input
order (``preserve_order``) and ``agent.batch.run_batch`` writes them as everywhere else: one
fsynced line each, resumable, bad lines and failures as error lines.

``address``: a running cluster (``ray://HEAD:10001`` or ``auto``); unset, Ray starts a local
instance with this machine's cores. On a cluster every node needs llm4tag installed and the
same knowledge base: a folder at the same path on each node, or — the way for many nodes — one
Chroma server that every node's folder points at (``LLM4TAG_CHROMA_HOST``, see README "Several
servers, one Chroma"). The ``LLM4TAG_*`` variables of the driver are passed to every actor.
``docs/scaling.md`` says how to size it.
"""

from __future__ import annotations

import json
import os
from typing import Iterator

from knowledge_base.errors import Llm4tagError

from .context import Context

BATCH_SIZE = 4  # contents per actor call: small, so the pool's actors share a short batch evenly


# a result's parts an actor does not send back to the driver: the prompts' material, not the record's
SENT_BACK_WITHOUT = ("text", "examples", "knowledge", "similar_contents", "timings", "metadata")


class RayTagger:
    """One tagger of the actor pool: loads the model when the actor starts, tags each batch."""

    def __init__(self, context: Context):
        from .workers import _start_worker

        self.context = context
        _start_worker(context)

    def __call__(self, batch: dict) -> dict:
        from .tagging import tag

        out = []
        for text, title in zip(batch["text"], batch["title"]):
            try:
                result = tag(str(text), title=str(title) if title else None, context=self.context)
                # what the driver's batch record is made of (agent.batch.batch_record), without the prompts' material
                kept = {k: v for k, v in result.items() if k not in SENT_BACK_WITHOUT}
                out.append(json.dumps(kept, ensure_ascii=False))
            except (Llm4tagError, OSError) as exc:
                out.append(json.dumps({"error": str(exc)}, ensure_ascii=False))
        return {"key": batch["key"], "result": out}


def _init_ray(address: str | None, workers: int):
    try:
        import ray
    except ImportError as exc:
        raise Llm4tagError("--engine ray needs Ray Data: pip install 'llm4tag[ray]' (or pip install 'ray[data]')") from exc
    if not ray.is_initialized():
        env = {k: v for k, v in os.environ.items() if k.startswith("LLM4TAG_") or k in ("HF_HUB_OFFLINE", "ANONYMIZED_TELEMETRY")}
        options = {"include_dashboard": False, "log_to_driver": False, "runtime_env": {"env_vars": env}}
        try:
            if address:
                ray.init(address=address, **options)
            else:
                ray.init(num_cpus=max(workers, os.cpu_count() or 1), **options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise Llm4tagError(
                f"cannot start or reach Ray{f' at {address}' if address else ''} ({exc}); "
                "check the address (ray://HEAD:10001, auto) or run without --ray-address for a local instance"
            ) from exc
    return ray


def ray_results(items: list, context: Context, workers: int, address: str | None = None) -> Iterator[tuple]:
    """(item, its result, or the error that stopped it, or None for a bad line), in input order;
    ``items`` are ``agent.batch.BatchItem`` (not imported here: batch imports this module)."""
    good = [item for item in items if item.error is None]
    if good:
        ray = _init_ray(address, workers)
        from ray.data import ActorPoolStrategy, DataContext

        DataContext.get_current().execution_options.preserve_order = True
        dataset = ray.data.from_items([{"key": i.key, "text": i.text, "title": i.title or ""} for i in good])
        tagged = dataset.map_batches(
            RayTagger,
            fn_constructor_args=(context,),
            compute=ActorPoolStrategy(size=workers),
            num_cpus=1,
            batch_size=BATCH_SIZE,
            batch_format="numpy",
        )
        rows = iter(tagged.iter_rows())
    else:
        rows = iter(())
    for item in items:
        if item.error is not None:
            yield item, None
            continue
        row = next(rows)
        if row["key"] != item.key:  # preserve_order keeps them aligned; never write a result under another id
            raise Llm4tagError(f"Ray returned the result of {row['key']!r} where {item.key!r} was expected; nothing more was written")
        result = json.loads(row["result"])
        yield item, Llm4tagError(result["error"]) if "error" in result else result
