"""The pipelines ``compare`` knows: a protocol (:mod:`compare.pipelines.base`) and one adapter
module per pipeline, each registering itself on import. Every module of this package is imported
here, so adding a pipeline is adding one module (``classical``: LOMO+XQDA, ``cnn``: the CNNs)."""

from __future__ import annotations

import importlib
import pkgutil

from compare.pipelines.base import (
    BatchExtractor,
    EngineContext,
    FamilyStyle,
    Matcher,
    Pipeline,
    RunRef,
    Variant,
    derived_rows,
    family_style,
    family_styles,
    is_registered,
    pipeline,
    pipelines,
    register,
    row_extra,
    rows_where,
    time_run_queries,
    unregister,
    variant_of,
    variants,
)

# sorted: a stable registration order (the legend's order), classical before cnn
for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _module != "base":
        importlib.import_module(f"{__name__}.{_module}")

__all__ = [
    "BatchExtractor",
    "EngineContext",
    "FamilyStyle",
    "Matcher",
    "Pipeline",
    "RunRef",
    "Variant",
    "derived_rows",
    "family_style",
    "family_styles",
    "is_registered",
    "pipeline",
    "pipelines",
    "register",
    "row_extra",
    "rows_where",
    "time_run_queries",
    "unregister",
    "variant_of",
    "variants",
]
