"""The ``evaluation`` section of the config: its defaults (read from the schema, their one
home) and its resolution, which the workflow, the scoring and the roster share."""

from __future__ import annotations

import copy
from typing import Any

from mrbench.config.schema import section_defaults

#: the ``evaluation`` section's defaults: the schema's ``x-default`` values (the Snakefile checks
#: keys against this dict; the schema's descriptions say what each key does)
EVALUATION_DEFAULTS: dict[str, Any] = section_defaults("evaluation")

#: evaluation keys that only arrange the tables (which methods, in which order, against whom):
#: they shape no number of a metrics file, so they stay out of its config hash
TABLE_ROLE_KEYS = (
    "table1_methods",
    "ablation_methods",
    "method_order",
    "reference_method",
    "efficiency_pair",
    "test_supervised",
    "protocol_table_metrics",
)


def evaluation_settings(config: dict) -> dict[str, Any]:
    """The config's ``evaluation`` section over :data:`EVALUATION_DEFAULTS` (nested dicts
    merged); unknown keys or protocols raise ``ValueError`` naming the key."""
    out = copy.deepcopy(EVALUATION_DEFAULTS)
    for key, value in (config.get("evaluation") or {}).items():
        if key not in EVALUATION_DEFAULTS:
            raise ValueError(
                f"config key evaluation.{key}: unknown; known: {', '.join(EVALUATION_DEFAULTS)}"
            )
        if isinstance(out[key], dict) and isinstance(value, dict):
            unknown = sorted(set(value) - set(out[key]))
            if unknown:
                raise ValueError(
                    f"config key evaluation.{key}.{unknown[0]}: unknown; "
                    f"known: {', '.join(out[key])}"
                )
            out[key].update(value)
        else:
            out[key] = value
    from mrbench.evaluation.metrics import PROTOCOLS  # numpy/scipy: only when called

    for proto in out["protocols"]:
        if proto not in PROTOCOLS:
            raise ValueError(
                f"config key evaluation.protocols: unknown protocol {proto!r}; "
                f"known: {', '.join(PROTOCOLS)}"
            )
    if out["table_protocol"] not in out["protocols"]:
        raise ValueError(
            f"config key evaluation.table_protocol: {out['table_protocol']!r} is not among "
            "evaluation.protocols"
        )
    return out
