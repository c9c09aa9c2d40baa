"""LightGBM and scikit-learn baselines for Kiln's gradient-boosted trees.

    python train_bike.py CSV_GZ

CSV_GZ is the bike-rental reference data (normally
examples/bikeshare/data/bike-rental-dataset.csv.gz; see its DATA.md). Target
`cnt`; `casual` and `registered` are parts of the target and are never used.

Time split: train on dteday < 2012-07-01, validate on dteday >= 2012-07-01
(rows sorted by date and hour first; the file is shuffled). The features are
those Kiln's pipeline gives its trees:

- season, hr, holiday, weekday, workingday, weathersit as pandas `category`
  (a missing value stays NaN; the categories are those seen in the file);
- temp, atemp, hum, windspeed as they are;
- from dteday: day_of_week (Monday = 0), month, day_of_year, is_weekend (0/1).

Models, with their defaults: (a) lightgbm.LGBMRegressor (verbose=-1 only
silences it), (b) sklearn HistGradientBoostingRegressor with
categorical_features="from_dtype". Each is fitted FITS times; fit_seconds is
the fastest `fit` call (time.perf_counter around `fit` alone: the features are
prepared beforehand, warm-up effects are skipped) and rmse the median
validation RMSE over the fits. LightGBM's defaults are deterministic; the
histogram booster's are not (with more than 10,000 rows it holds out a random
10% for early stopping), hence the median.

Prints one JSON line on stdout:
{"lightgbm": {"rmse": R, "fit_seconds": S}, "hgb": {"rmse": R, "fit_seconds": S},
 "rows_train": N, "rows_valid": M}; per-fit figures go to stderr.
"""

import json
import statistics
import sys
import time

import lightgbm
import numpy as np
import pandas as pd
import sklearn
from sklearn.ensemble import HistGradientBoostingRegressor

FITS = 3
SPLIT = pd.Timestamp("2012-07-01")
TARGET = "cnt"
LEAKS = ["casual", "registered"]
CATEGORICAL = ["season", "hr", "holiday", "weekday", "workingday", "weathersit"]
NUMERIC = ["temp", "atemp", "hum", "windspeed"]


def hour_of(label):
    """'12am' -> 0, '6am' -> 6, '12pm' -> 12, '11pm' -> 23 (only to sort rows)."""
    h = int(label[:-2]) % 12
    return h + 12 if label.endswith("pm") else h


def features(raw):
    """The 14 features from raw rows: a DataFrame with the file's columns, the
    categorical ones as strings (missing: NA / None), dteday as 'YYYY-MM-DD'.
    Also used by serve_fastapi.py on the rows of each request."""
    x = pd.DataFrame(index=raw.index)
    for c in CATEGORICAL:
        x[c] = raw[c].astype(object).astype("category")  # <NA> -> NaN, not a category
    for c in NUMERIC:
        x[c] = raw[c].astype("float64")
    d = pd.to_datetime(raw["dteday"], format="%Y-%m-%d").dt
    x["day_of_week"] = d.dayofweek
    x["month"] = d.month
    x["day_of_year"] = d.dayofyear
    x["is_weekend"] = (d.dayofweek >= 5).astype("int64")
    return x


def load(path):
    """(features, target, train mask): the file's rows sorted by date and hour,
    train = dteday < SPLIT."""
    raw = pd.read_csv(path, dtype={c: "string" for c in CATEGORICAL})
    raw = raw.drop(columns=LEAKS)
    date = pd.to_datetime(raw["dteday"], format="%Y-%m-%d")
    raw = raw.assign(_date=date, _hour=raw["hr"].map(hour_of))
    raw = raw.sort_values(["_date", "_hour"], kind="stable").reset_index(drop=True)
    x = features(raw)
    y = raw[TARGET].to_numpy(dtype="float64")
    train = (raw["_date"] < SPLIT).to_numpy()
    return x, y, train


def rmse(y, pred):
    return float(np.sqrt(np.mean((np.asarray(pred, dtype="float64") - y) ** 2)))


def bench(name, make, x_tr, y_tr, x_va, y_va):
    times, errors = [], []
    for i in range(FITS):
        model = make()
        t0 = time.perf_counter()
        model.fit(x_tr, y_tr)
        times.append(time.perf_counter() - t0)
        errors.append(rmse(y_va, model.predict(x_va)))
        print(f"train_bike: {name} fit {i + 1}/{FITS}: {times[-1]:.4f} s, "
              f"validation RMSE {errors[-1]:.4f}", file=sys.stderr)
    return {"rmse": round(statistics.median(errors), 4), "fit_seconds": round(min(times), 4)}


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: train_bike.py CSV_GZ")
    x, y, train = load(sys.argv[1])
    x_tr, y_tr, x_va, y_va = x[train], y[train], x[~train], y[~train]
    print(f"train_bike: {len(x_tr)} train / {len(x_va)} validation rows, "
          f"{x.shape[1]} features {list(x.columns)}; lightgbm {lightgbm.__version__}, "
          f"scikit-learn {sklearn.__version__}", file=sys.stderr)

    out = {
        "lightgbm": bench("lightgbm", lambda: lightgbm.LGBMRegressor(verbose=-1),
                          x_tr, y_tr, x_va, y_va),
        "hgb": bench("hgb", lambda: HistGradientBoostingRegressor(categorical_features="from_dtype"),
                     x_tr, y_tr, x_va, y_va),
        "rows_train": int(len(x_tr)),
        "rows_valid": int(len(x_va)),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
