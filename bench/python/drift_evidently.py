"""Evidently's data drift report on two CSV files: the baseline of `bench/run.sh drift`.

    python drift_evidently.py REFERENCE.csv CURRENT.csv

Reads both files with pandas, runs Evidently's DataDriftTable + DatasetDriftMetric (what
DataDriftPreset computes) over every column but the date, with the numeric and categorical
columns declared as Kiln types them, and prints one JSON line: the seconds the report took
(reading excluded), and per column the test, score and verdict.
"""

import json
import sys
import time

import pandas as pd
from evidently.legacy.metrics import DataDriftTable, DatasetDriftMetric
from evidently.legacy.pipeline.column_mapping import ColumnMapping
from evidently.legacy.report import Report

reference = pd.read_csv(sys.argv[1]).drop(columns=["dteday"])
current = pd.read_csv(sys.argv[2]).drop(columns=["dteday"])
categorical = [c for c in reference.columns if reference[c].dtype == object]
numeric = [c for c in reference.columns if c not in categorical]

start = time.perf_counter()
report = Report(metrics=[DataDriftTable(), DatasetDriftMetric()])
report.run(
    reference_data=reference,
    current_data=current,
    column_mapping=ColumnMapping(
        target=None, prediction=None, numerical_features=numeric, categorical_features=categorical
    ),
)
table, dataset = (m["result"] for m in report.as_dict()["metrics"])
seconds = time.perf_counter() - start
print(
    json.dumps(
        {
            "seconds": seconds,
            "rows": len(reference) + len(current),
            "dataset_drift": bool(dataset["dataset_drift"]),
            "columns": {
                name: {
                    "test": r["stattest_name"],
                    "score": float(r["drift_score"]),
                    "drifted": bool(r["drift_detected"]),
                }
                for name, r in table["drift_by_columns"].items()
            },
        }
    )
)
