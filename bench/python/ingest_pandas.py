"""pandas baseline for `kiln data add`: read, check, profile, snapshot.

    python ingest_pandas.py FILE OUT_DIR

Does what a pandas user would write to do the work Kiln's `data add` does:

1. read FILE in one go: pd.read_parquet for .parquet, pd.read_csv for .csv
   (datetime columns are sniffed from the first 1,000 rows and handed to
   read_csv's parse_dates, so the CSV and Parquet inputs give the same dtypes);
2. the checks Kiln runs: null count per column; numeric columns: count of
   values outside a generous [-1e9, 1e9] range; string columns: value_counts
   (an "in the observed set" check is vacuous on the data it was observed on);
3. the profile: df.describe(), a 20-bin numpy histogram per numeric column,
   value_counts per string column (shared with step 2);
4. the snapshot: df.to_parquet(OUT_DIR/snapshot.parquet) with pyarrow.

Prints one JSON line on stdout, {"rows": N, "seconds": S}, S being the wall
time of steps 1-4 (not interpreter start-up and imports; bench/run.sh measures
the whole process separately). Per-step times go to stderr.
"""

import json
import os
import sys
import time

import numpy as np
import pandas as pd

LOW, HIGH = -1e9, 1e9
BINS = 20


def read(path):
    ext = os.path.splitext(path)[1].lower()
    if ext in (".parquet", ".pq"):
        return pd.read_parquet(path, engine="pyarrow")
    if ext == ".csv":
        head = pd.read_csv(path, nrows=1000)
        dates = []
        for name in head.select_dtypes(include="object").columns:
            try:
                pd.to_datetime(head[name], format="ISO8601")
                dates.append(name)
            except (ValueError, TypeError):
                pass
        return pd.read_csv(path, parse_dates=dates, date_format="ISO8601")
    sys.exit(f"ingest_pandas.py: unsupported file type {ext!r} (want .csv or .parquet)")


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: ingest_pandas.py FILE OUT_DIR")
    path, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    stages = {}
    t0 = t = time.perf_counter()

    def lap(name):
        nonlocal t
        now = time.perf_counter()
        stages[name] = round(now - t, 3)
        t = now

    df = read(path)
    lap("read")

    numeric = df.select_dtypes(include="number").columns
    strings = df.select_dtypes(include=["object", "string"]).columns
    checks = {"nulls": df.isna().sum().to_dict(), "out_of_range": {}, "distinct": {}}
    for name in numeric:
        s = df[name]
        checks["out_of_range"][name] = int(((s < LOW) | (s > HIGH)).sum())
    value_counts = {name: df[name].value_counts() for name in strings}
    for name, vc in value_counts.items():
        checks["distinct"][name] = len(vc)
    lap("checks")

    describe = df.describe()
    histograms = {name: np.histogram(df[name].dropna().to_numpy(), bins=BINS) for name in numeric}
    lap("profile")

    df.to_parquet(os.path.join(out_dir, "snapshot.parquet"), engine="pyarrow")
    lap("snapshot")

    seconds = time.perf_counter() - t0
    failed = sum(checks["out_of_range"].values())
    print(
        f"ingest_pandas: {len(df)} rows x {df.shape[1]} cols; stages {stages}; "
        f"{len(describe.columns)} described, {len(histograms)} histograms, "
        f"{len(value_counts)} value_counts; out-of-range values: {failed}",
        file=sys.stderr,
    )
    print(json.dumps({"rows": len(df), "seconds": round(seconds, 3)}))


if __name__ == "__main__":
    main()
