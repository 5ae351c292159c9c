"""Offline workflows that measure and tune the tagger, one job a module:

- ``labelled`` — labelled items (text + true tags) from a file;
- ``metrics`` — every figure reported: the paper's Acc@k, Coverage@k, #Right, HR#k, and the rest;
- ``runner`` — ``evaluate``: systems, baselines and ablations side by side, resumable;
- ``report`` — ``metrics.json``, ``report.md`` and the accuracy-vs-coverage plot;
- ``optimize`` — sweeps of the recall settings and of the confidence threshold;
- ``calibration`` — fitting a learned calibration, out-of-fold comparison;
- ``calibrate`` — the ``llm4tag calibrate`` workflow (run, compare, choose, save).

A new metric goes into ``metrics`` (and ``report`` if it is shown); a new system into ``runner``.
"""

from .calibrate import choose_and_fit
from .labelled import Item, load_labelled, load_out_of_domain
from .metrics import confidence_metrics, multi_tag_metrics, single_tag_metrics
from .optimize import optimize_recall, optimize_threshold, threshold_for_coverage
from .report import comparison_rows, markdown_report, summarise
from .runner import ALL_SYSTEMS, DEFAULT_SYSTEMS, LLM_SYSTEMS, evaluate, system_context

__all__ = [
    "ALL_SYSTEMS",
    "DEFAULT_SYSTEMS",
    "Item",
    "LLM_SYSTEMS",
    "choose_and_fit",
    "comparison_rows",
    "confidence_metrics",
    "evaluate",
    "load_labelled",
    "load_out_of_domain",
    "markdown_report",
    "multi_tag_metrics",
    "optimize_recall",
    "optimize_threshold",
    "single_tag_metrics",
    "summarise",
    "threshold_for_coverage",
    "system_context",
]
