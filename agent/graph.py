"""The tagging graph: recall → examples → knowledge → generate → calibrate → write back.

``graph`` is the compiled LangGraph; run it with a Context::

    from agent import graph, Context
    result = graph.invoke({"content": "..."}, context=Context(kb_dir="my-kb"))
    for update in graph.stream({"content": "..."}, context=Context(), stream_mode="updates"):
        ...  # one {node_name: changes} per step, as it happens
"""

from __future__ import annotations

from typing import Literal

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

# absolute imports: LangGraph's server (langgraph.json) loads this file by path, outside its package
from agent.context import Context
from agent.nodes import calibrate_confidence, generate_tags, recall_tags, retrieve_examples, retrieve_knowledge, write_back
from agent.state import InputState, OutputState, State

NODE_ORDER = ("recall", "examples", "knowledge", "generate", "calibrate", "write_back")


def route_after_calibrate(state: State, runtime: Runtime[Context]) -> Literal["write_back", "__end__"]:
    return "write_back" if runtime.context.write_back and state.get("tags") else END


def build_graph():
    builder = StateGraph(State, context_schema=Context, input_schema=InputState, output_schema=OutputState)
    builder.add_node("recall", recall_tags)
    builder.add_node("examples", retrieve_examples)
    builder.add_node("knowledge", retrieve_knowledge)
    builder.add_node("generate", generate_tags)
    builder.add_node("calibrate", calibrate_confidence)
    builder.add_node("write_back", write_back)
    builder.add_edge(START, "recall")
    builder.add_edge("recall", "examples")
    builder.add_edge("examples", "knowledge")
    builder.add_edge("knowledge", "generate")
    builder.add_edge("generate", "calibrate")
    builder.add_conditional_edges("calibrate", route_after_calibrate)
    builder.add_edge("write_back", END)
    return builder.compile(name="llm4tag")


graph = build_graph()
