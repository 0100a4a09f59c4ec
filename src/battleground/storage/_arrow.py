"""The Arrow schema of a normalised, validated batch of events."""

from __future__ import annotations

import pyarrow as pa

__all__ = ["EVENT_SCHEMA"]

EVENT_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("experiment_id", pa.int32(), nullable=False),
        pa.field("variant", pa.string(), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("ts", pa.timestamp("us"), nullable=False),
        pa.field("value", pa.float64()),
        pa.field("covariate", pa.float64()),
    ]
)
