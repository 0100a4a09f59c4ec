"""A small, fixed bandit experiment folder (the summary CSVs ``bandit metrics`` and ``bandit ope`` write),
so that the reports can be rendered and looked at without running the simulator."""

from __future__ import annotations

import json
from pathlib import Path

AGENTS = ("linear_ts", "linear_ucb", "epsilon_greedy", "random")
METRICS = ("accumulated_revenue", "accumulated_demand", "retention", "category_penetration",
           "empirical_discount", "mean_coupon_level")
SEGMENTS = tuple(f"Q{i}" for i in range(1, 6))


def write_experiment(root: Path, *, with_ope: bool = True) -> Path:
    """Write ``summary/*.csv`` (and ``ope/``) for four agents under ``root``; returns ``root``."""
    summary = root / "summary"
    summary.mkdir(parents=True, exist_ok=True)
    head = ["segment", "agent", "n_customers", *[c for m in METRICS for c in (m, f"{m}_std")], "n_trajectories"]

    def row(segment: str, i: int, scale: float) -> list[str]:
        values = [f"{scale * (40.0 - 5 * i) / (1 + k):.4f},{0.5 + 0.1 * i:.3f}" for k in range(len(METRICS))]
        return [segment, AGENTS[i], "120", *values, "4"]

    lines = [",".join(head)]
    lines += [",".join(row("all", i, 1.0)) for i in range(len(AGENTS))]
    (summary / "all_customers.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    seg = [",".join(head)] + [",".join(row(s, i, 0.8 + 0.1 * j)) for j, s in enumerate(SEGMENTS) for i in range(len(AGENTS))]
    (summary / "segmented.csv").write_text("\n".join(seg) + "\n", encoding="utf-8")
    arms = ["agent,segment,arm,share"] + [f"{a},{s},{arm},{0.25:.2f}" for a in AGENTS for s in ("all", *SEGMENTS)
                                          for arm in range(4)]
    (summary / "arm_frequencies.csv").write_text("\n".join(arms) + "\n", encoding="utf-8")
    steps = ["agent,step,revenue"] + [f"{a},{t},{3.0 + 0.1 * t - 0.2 * i:.3f}" for i, a in enumerate(AGENTS) for t in range(30)]
    (summary / "revenue_by_step.csv").write_text("\n".join(steps) + "\n", encoding="utf-8")
    if with_ope:
        ope = root / "ope"
        ope.mkdir(parents=True, exist_ok=True)
        rows = ["estimator,value,ci_low,ci_high,se,true_value,error,relative_error,covers_truth,ci_method,alpha"]
        for k, name in enumerate(("ips", "snips", "dm", "dr", "sndr")):
            v = 2.0 + 0.05 * (k - 2)
            rows.append(f"{name},{v},{v - 0.3},{v + 0.3},0.15,2.0,{v - 2.0},{(v - 2.0) / 2.0},True,bootstrap,0.05")
        (ope / "ope_table.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
        (ope / "summary.json").write_text(json.dumps({"agent": "linear_ts", "true_value": 2.0,
                                                      "logging_policy_value": 1.4}), encoding="utf-8")
    return root
