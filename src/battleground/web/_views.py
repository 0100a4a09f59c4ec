"""Where the views used to live: re-exports of the view modules, one job each.

``_view_common`` (JSON values, the read-only monitor, the results window), ``_experiment_views``,
``_model_views`` and ``_bandit_views``. New code imports from those modules.
"""

from battleground.web._bandit_views import (
    CSV_ROW_LIMIT,
    BanditFile,
    bandit_file_path,
    bandit_files,
    bandit_root,
    read_csv_table,
)
from battleground.web._experiment_views import (
    ExperimentDetail,
    ExperimentSummary,
    _sizes,
    audit_dicts,
    audit_text,
    experiment_detail,
    experiment_summary,
    record_dict,
    result_records,
)
from battleground.web._model_views import (
    CHAMPION_ALIAS,
    CHAMPION_MODEL,
    Leaderboard,
    LeaderboardRow,
    leaderboard,
    leaderboard_chart,
)
from battleground.web._view_common import (
    ReadOnlySource,
    WindowError,
    frame_records,
    jsonable,
    parse_window,
    read_only_monitor,
)

__all__ = [
    "CHAMPION_ALIAS", "CHAMPION_MODEL", "CSV_ROW_LIMIT", "BanditFile", "ExperimentDetail", "ExperimentSummary",
    "Leaderboard", "LeaderboardRow", "ReadOnlySource", "WindowError", "_sizes", "audit_dicts", "audit_text",
    "bandit_file_path", "bandit_files", "bandit_root", "experiment_detail", "experiment_summary",
    "frame_records", "jsonable", "leaderboard", "leaderboard_chart", "parse_window", "read_csv_table",
    "read_only_monitor", "record_dict", "result_records",
]
