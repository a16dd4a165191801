"""Column schemas of the run directory's Parquet files.

Every decision an agent takes is one row of ``steps/step=<n>/shard=<k>.parquet``;
DuckDB and pyarrow read the whole run with ``steps/*/*.parquet``.
"""

from __future__ import annotations

import pyarrow as pa

DECISION_SCHEMA = pa.schema(
    [
        pa.field("step", pa.int32(), nullable=False),  # 1-based step (= round in games)
        pa.field("agent_id", pa.int64(), nullable=False),
        pa.field("shard", pa.int32(), nullable=False),
        pa.field("group", pa.int32(), nullable=False),
        pa.field("model", pa.string(), nullable=False),  # model name from the config
        pa.field("prompt_variant", pa.string(), nullable=False),  # e.g. "P1"
        pa.field("prompt_id", pa.string(), nullable=False),  # short hash of the prompt text
        pa.field("raw_text", pa.string()),  # exactly what the model returned
        pa.field("value", pa.float64()),  # parsed answer, null when invalid
        pa.field("valid", pa.bool_(), nullable=False),
        pa.field("tokens_in", pa.int32(), nullable=False),
        pa.field("tokens_out", pa.int32(), nullable=False),
        pa.field("latency_ms", pa.float32(), nullable=False),
        pa.field("error", pa.string()),  # model failure or parse failure reason, else null
        pa.field("text", pa.string()),  # what the agent said (chat scenarios), else null
    ]
)

DECISION_COLUMNS: tuple[str, ...] = tuple(DECISION_SCHEMA.names)
