"""LightGBM and scikit-learn baselines at scale: flights-3m, training and batch scoring.

    python train_flights.py PARQUET [FIT_REPEATS]

PARQUET is flights-3m.parquet (npm vega-datasets@3.2.1; see bench/fetch-data.sh): columns
date (timestamp), delay (minutes, the target), distance, origin, destination.

Time split: train on date < 2001-06-01 (2,497,772 rows), test on the rest (502,228 rows).
The features are those Kiln's pipeline gives its trees, built here with pandas beforehand:

- from date: hour, day_of_week (Monday = 0), month, day_of_year, is_weekend (0/1);
- distance as it is;
- origin and destination as pandas `category`.

Models, with their defaults: lightgbm.LGBMRegressor (verbose=-1 only silences it) and sklearn
HistGradientBoostingRegressor(categorical_features="from_dtype"). fit_seconds is the fastest
of FIT_REPEATS (default 1) `fit` calls; rmse is on the test rows. Scoring: LightGBM's
`predict` on the 502,228 test rows and on 1,000,000 rows (the first million of the file),
fastest of 3 calls, as rows per second.

Prints one JSON line on stdout:
{"lightgbm": {"rmse", "fit_seconds", "predict_test_rows_per_s", "predict_1m_rows_per_s"},
 "hgb": {"rmse", "fit_seconds"}, "rows_train", "rows_test"}; details go to stderr.
"""

import json
import sys
import time

import lightgbm
import numpy as np
import pandas as pd
import sklearn
from sklearn.ensemble import HistGradientBoostingRegressor

SPLIT = pd.Timestamp("2001-06-01")


def features(df):
    d = df["date"].dt
    x = pd.DataFrame(
        {
            "hour": d.hour,
            "day_of_week": d.dayofweek,
            "month": d.month,
            "day_of_year": d.dayofyear,
            "is_weekend": (d.dayofweek >= 5).astype("int64"),
            "distance": df["distance"].astype("float64"),
        }
    )
    for c in ["origin", "destination"]:
        x[c] = df[c].astype("category")
    return x


def rmse(y, pred):
    return float(np.sqrt(np.mean((np.asarray(pred, dtype="float64") - y) ** 2)))


def fastest(fn, n):
    best, out = float("inf"), None
    for _ in range(n):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: train_flights.py PARQUET [FIT_REPEATS]")
    repeats = int(sys.argv[2]) if len(sys.argv) == 3 else 1
    df = pd.read_parquet(sys.argv[1])
    x = features(df)
    y = df["delay"].to_numpy(dtype="float64")
    train = (df["date"] < SPLIT).to_numpy()
    x_tr, y_tr, x_te, y_te = x[train], y[train], x[~train], y[~train]
    # The same categories in every slice, so predict sees what fit saw.
    x_1m = x.iloc[:1_000_000]
    print(f"train_flights: {len(x_tr)} train / {len(x_te)} test rows, features {list(x.columns)}; "
          f"lightgbm {lightgbm.__version__}, scikit-learn {sklearn.__version__}", file=sys.stderr)

    lgb = lightgbm.LGBMRegressor(verbose=-1)
    fit_s, _ = fastest(lambda: lgb.fit(x_tr, y_tr), repeats)
    pred_te_s, pred = fastest(lambda: lgb.predict(x_te), 3)
    pred_1m_s, _ = fastest(lambda: lgb.predict(x_1m), 3)
    out = {
        "lightgbm": {
            "rmse": round(rmse(y_te, pred), 4),
            "fit_seconds": round(fit_s, 3),
            "predict_test_rows_per_s": round(len(x_te) / pred_te_s),
            "predict_1m_rows_per_s": round(len(x_1m) / pred_1m_s),
        }
    }
    print(f"train_flights: lightgbm {out['lightgbm']}", file=sys.stderr)
    hgb = HistGradientBoostingRegressor(categorical_features="from_dtype")
    fit_s, _ = fastest(lambda: hgb.fit(x_tr, y_tr), repeats)
    out["hgb"] = {"rmse": round(rmse(y_te, hgb.predict(x_te)), 4), "fit_seconds": round(fit_s, 3)}
    print(f"train_flights: hgb {out['hgb']}", file=sys.stderr)
    out["rows_train"] = int(len(x_tr))
    out["rows_test"] = int(len(x_te))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
