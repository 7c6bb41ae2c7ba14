"""The summary of a sweep printed at its end: one small table per measurement, with the
parameters and workload fields that vary and the measurement's main figures, then the
failures and what the estimates are."""

from __future__ import annotations

import pandas as pd

from .results import PARAMETER_COLUMNS
from .workloads import VARYING_COLUMNS

__all__ = ["FIGURES", "summary_text"]

#: The columns shown for each measurement, after the varying parameters and workload fields.
FIGURES: dict[str, tuple[str, ...]] = {
    "run": ("cycles", "speedup", "utilization", "passed"),
    "synth": ("luts", "ffs", "brams", "dsps", "fmax_mhz", "fits", "estimate"),
    "derived": ("luts", "fmax_mhz", "time_us", "macs_per_s", "macs_per_s_per_lut", "estimate"),
    "train": ("step_seconds", "tokens_per_s", "required_stream_gbps", "bytes_per_tile",
              "memory_fits", "energy_j", "power_w"),
}

_WORKLOAD_FIELDS = VARYING_COLUMNS


def _varying(df: pd.DataFrame, columns: tuple[str, ...]) -> list[str]:
    return [c for c in columns if c in df and df[c].nunique(dropna=True) > 1]


def summary_text(df: pd.DataFrame, *, max_rows: int = 60) -> str:
    """The summary of the rows ``df`` (a sweep's rows of its table, as pandas reads it).

    Parameters
    ----------
    df : pandas.DataFrame
        The rows.
    max_rows : int
        Rows shown per measurement; the rest are counted.
    """
    if df.empty:
        return "no rows"
    params = _varying(df, PARAMETER_COLUMNS)
    fidelity = ["fidelity"] if df["fidelity"].nunique() > 1 else []
    out = []
    for measurement, group in df.groupby("measurement", sort=False):
        ok = int((group["status"] == "ok").sum())
        out.append(f"{measurement}: {len(group)} rows, {ok} ok, {len(group) - ok} failed")
        wl = _varying(group, _WORKLOAD_FIELDS) if measurement != "synth" else []
        figures = [c for c in FIGURES.get(measurement, ()) if c in group]
        shown = group[[*fidelity, *params, *wl, *figures, "status"]]
        text = shown.head(max_rows).to_string(index=False, na_rep="-",
                                              float_format=lambda v: f"{v:.4g}")
        out.append("  " + text.replace("\n", "\n  "))
        if len(group) > max_rows:
            out.append(f"  ... {len(group) - max_rows} more rows in the table")
    failed = df[df["status"] != "ok"]
    if not failed.empty:
        out.append(f"{len(failed)} failed point(s):")
        for _, row in failed.head(10).iterrows():
            out.append(f"  {row['id']} {row['measurement']}: {row['error']}")
        if len(failed) > 10:
            out.append(f"  ... and {len(failed) - 10} more (column 'error' of the table)")
    if "estimate" in df and df["estimate"].astype(str).eq("True").any():
        out.append("estimate = True: one tile placed and routed alone, its resources x rows x "
                   "cols and its fmax (synth mode 'tile'), not a placed and routed array")
    return "\n".join(out)
