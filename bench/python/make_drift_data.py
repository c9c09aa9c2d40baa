"""The data of `bench/run.sh drift`: the bundled bike-rental rows of 2011 and of 2012, each
resampled with replacement (fixed seed) to N rows.

    python make_drift_data.py BIKES.csv.gz N OUT_DIR   ->  OUT_DIR/reference.csv, current.csv
"""

import sys

import numpy as np
import pandas as pd

source, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
df = pd.read_csv(source)
rng = np.random.default_rng(20261129)
for name, year in (("reference", "2011"), ("current", "2012")):
    part = df[df["dteday"].str.startswith(year)]
    part.iloc[rng.integers(0, len(part), n)].to_csv(f"{out}/{name}.csv", index=False)
