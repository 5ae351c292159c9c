"""The tagging graph: prepare → recall → (examples ∥ knowledge) → generate → calibrate → review or write back.

``graph`` is the compiled LangGraph (what LangGraph's server serves, see ``langgraph.json``); run
it with a Context::

    from agent import graph, Context
    result = graph.invoke({"content": "..."}, context=Context(kb_dir="my-kb"))
    for update in graph.stream({"content": "..."}, context=Context(), stream_mode="updates"):
        ...  # one {node_name: changes} per step, as it happens

``build_graph(cache=…, checkpointer=…)`` compiles the same graph with a node cache and a
checkpointer; ``agent.runtime`` keeps one such graph per knowledge base, with both stored in the
knowledge base itself (``agent.tagging`` runs that one).

What LangGraph adds here:

- **Parallel retrieval.** The examples and the knowledge nodes both need only recall's output, so
  they run as parallel branches and ``generate`` waits for both.
- **Node caching.** Recall and knowledge are cached per text and per the settings that change
  their result, for the knowledge base as it is now (``prepare`` computes the keys, which include
  the knowledge base's revision: any write, here or in another process, misses the cache).
- **Retries.** The nodes that call the language model retry a failure that may pass (a model
  server that refused the connection or answered 5xx, ``agent.retries``), and each failure a
  retry got past is named in the result's notes. Web search retries inside the knowledge node
  and is left out (with a note) when it still fails.
- **Streamed judgments.** The calibrate node sends each judgment on LangGraph's custom stream as
  soon as it is computed (``stream_mode="custom"``: ``{"judgment": {...}}``).
- **Human review.** With ``Context.review`` the run stops after calibrate (``interrupt``) with
  the proposed tags and resumes with a person's decision (``Command(resume={"accept", "reject",
  "add"})``); ``record_review`` then writes it as a correction of the knowledge base. It needs a
  checkpointer.
"""

from __future__ import annotations

from typing import Literal

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import CachePolicy

# absolute imports: LangGraph's server (langgraph.json) loads this file by path, outside its package
from agent.context import Context, context_of
from agent.nodes import (
    calibrate_confidence,
    generate_tags,
    prepare_content,
    recall_tags,
    record_review,
    retrieve_examples,
    retrieve_knowledge,
    review_tags,
    write_back,
)
from agent.nodes.prepare import cache_key
from agent.retries import MODEL_RETRY
from agent.state import InputState, OutputState, State

NODE_ORDER = ("prepare", "recall", "examples", "knowledge", "generate", "calibrate", "review", "record_review", "write_back")


def route_after_calibrate(state: State, runtime: Runtime[Context]) -> Literal["review", "write_back", "__end__"]:
    ctx = context_of(runtime)
    if ctx.review:
        return "review"
    return "write_back" if ctx.write_back and state.get("tags") else END


def build_graph(cache=None, checkpointer=None, context_schema: type[Context] = Context):
    """The tagging graph, compiled with an optional node cache (a LangGraph ``BaseCache``) and
    checkpointer (needed by review). ``context_schema``: what a run's context dict becomes (LangGraph's
    server uses ``agent.served.ServedContext``, which checks it against the operator's settings)."""
    builder = StateGraph(State, context_schema=context_schema, input_schema=InputState, output_schema=OutputState)
    builder.add_node("prepare", prepare_content)
    builder.add_node("recall", recall_tags, cache_policy=CachePolicy(key_func=cache_key("recall")))
    builder.add_node("examples", retrieve_examples)
    builder.add_node("knowledge", retrieve_knowledge, cache_policy=CachePolicy(key_func=cache_key("knowledge")))
    builder.add_node("generate", generate_tags, retry_policy=MODEL_RETRY)
    builder.add_node("calibrate", calibrate_confidence, retry_policy=MODEL_RETRY)
    builder.add_node("review", review_tags)
    builder.add_node("record_review", record_review)
    builder.add_node("write_back", write_back)
    builder.add_edge(START, "prepare")
    builder.add_edge("prepare", "recall")
    builder.add_edge("recall", "examples")
    builder.add_edge("recall", "knowledge")
    builder.add_edge(["examples", "knowledge"], "generate")
    builder.add_edge("generate", "calibrate")
    builder.add_conditional_edges("calibrate", route_after_calibrate)
    builder.add_edge("review", "record_review")
    builder.add_edge("record_review", END)
    builder.add_edge("write_back", END)
    return builder.compile(name="llm4tag", cache=cache, checkpointer=checkpointer)


graph = build_graph()
