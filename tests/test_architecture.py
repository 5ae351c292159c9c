"""The layout holds: no import circle among the project's modules (imports inside functions
included) and no import from a higher floor (surfaces → pipeline → knowledge base)."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("knowledge_base", "prompts", "agent", "ui")
# a package may import from its own floor and the floors below it
FLOOR = {"knowledge_base": 0, "prompts": 0, "agent": 1, "ui": 2}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules that ``name`` imports anywhere in its file, resolved to the deepest known module."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()

    def resolve(target: str) -> str | None:
        while target and target not in known:
            target = target.rpartition(".")[0]
        return target or None

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            # ``from pkg import sub`` imports the module pkg.sub when there is one
            targets = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in known else prefix for a in node.names]
        for t in targets:
            resolved = resolve(t)
            if resolved and resolved != name:
                out.add(resolved)
    return out


def import_graph() -> nx.DiGraph:
    modules = project_modules()
    g = nx.DiGraph()
    g.add_nodes_from(modules)
    for name, path in modules.items():
        for target in imported_modules(name, path, set(modules)):
            g.add_edge(name, target)
    return g


def test_the_checker_sees_imports_inside_functions_and_relative_ones():
    g = import_graph()
    assert g.has_edge("ui.cli", "ui.app")  # ``from .app import launch`` inside a command
    assert g.has_edge("agent.nodes.recall", "agent.runtime")  # ``from ..runtime import``
    assert g.has_edge("agent.tagger", "agent.graph")


def test_no_import_circle():
    g = import_graph()
    circles = [sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1]
    assert not circles, f"modules importing each other in a circle: {circles}"


def test_no_import_from_a_higher_floor():
    g = import_graph()
    upward = [(a, b) for a, b in g.edges if FLOOR[b.split(".")[0]] > FLOOR[a.split(".")[0]]]
    assert not upward, f"imports from a higher floor: {upward}"


def test_the_pipeline_and_the_knowledge_base_never_import_a_surface_or_each_others_offline_workflows():
    g = import_graph()
    offline = {n for n in g if n.startswith(("agent.evaluation", "agent.training"))}
    run_time = {n for n in g if n.startswith(("agent.nodes", "agent.graph", "agent.tagging", "agent.runtime", "agent.confidence"))}
    assert not [(a, b) for a, b in g.edges if a in run_time and b in offline], (
        "the tagging path must not depend on evaluation or training code"
    )


# ---- function length ------------------------------------------------------------------------
MAX_LINES = 60
# Functions over MAX_LINES on 2026-12-08, as `ruff format` lays them out, each at most as long as
# it was then (issue 27 splits them; a split one leaves this list). A new long function, or one of
# these grown longer, fails.
LONG_FUNCTIONS = {
    "knowledge_base/learned_recall.py:train_learned_recall": 153,
    "knowledge_base/recall.py:recall_candidates": 138,
    "agent/evaluation/report.py:markdown_report": 133,
    "knowledge_base/loaders.py:read_tags": 130,
    "agent/training/finetune.py:train": 126,
    "agent/training/__init__.py:train_model": 125,
    "knowledge_base/store.py:change_tag": 111,
    "agent/training/demo.py:build_demo_model": 107,
    "knowledge_base/skos.py:read_skos": 97,
    "agent/training/datasets.py:build_training_sets": 97,
    "ui/cli.py:eval_command": 92,
    "agent/evaluation/report.py:summarise": 89,
    "agent/nodes/calibrate.py:calibrate_confidence": 87,
    "knowledge_base/loaders.py:read_documents": 85,
    "ui/app.py:respond": 85,
    "ui/render.py:neighbourhood_svg": 78,
    "agent/evaluation/runner.py:evaluate": 76,
    "knowledge_base/encoder.py:export": 73,
    "ui/render.py:result_graph_svg": 68,
    "knowledge_base/learned_recall.py:_fit_ranker": 64,
    "knowledge_base/store.py:__init__": 62,
    "agent/batch.py:run_batch": 62,
    "agent/nodes/generate.py:generate_tags": 62,
    "ui/cli.py:optimize_command": 62,
}


def function_lengths() -> dict[str, int]:
    """Every production function's length in lines (decorators left out), by file and name."""
    lengths: dict[str, int] = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    key = f"{path.relative_to(ROOT).as_posix()}:{node.name}"
                    lengths[key] = max(lengths.get(key, 0), node.end_lineno - node.lineno + 1)
    return lengths


def test_no_function_grows_past_sixty_lines():
    lengths = function_lengths()
    too_long = {k: n for k, n in lengths.items() if n > LONG_FUNCTIONS.get(k, MAX_LINES)}
    assert not too_long, f"functions over {MAX_LINES} lines (or longer than they were): {too_long}; split them"
    gone = sorted(k for k in LONG_FUNCTIONS if lengths.get(k, 0) <= MAX_LINES)
    assert not gone, f"no longer over {MAX_LINES} lines: take {gone} out of LONG_FUNCTIONS"
