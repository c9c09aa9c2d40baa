"""The Python baseline of the `serve` benchmark: FastAPI + uvicorn serving a
LightGBM model of the bike-rental data, the way such services are commonly
built.

    python serve_fastapi.py --port PORT [--host 127.0.0.1] [--data CSV_GZ]

At start-up it trains the model of train_bike.py (lightgbm.LGBMRegressor with
its defaults, same 14 features from the same feature preparation, trained on
dteday < 2012-07-01) on CSV_GZ (default: the bike-rental data in the repo),
then serves, in one uvicorn worker (uvicorn's default; uvloop and httptools
when installed, as uvicorn picks them by itself; access log off):

- POST /v1/models/bikes/predict  {"instances": [ROW, ...]}, ROW a JSON object
  with the file's columns (dteday as "YYYY-MM-DD", the categorical columns as
  strings or null, the numeric ones as numbers or null; other keys ignored),
  validated by pydantic; answers
  {"predictions": [{"value": X}, ...], "model": "bikes", "version": 1}.
- GET /v2/health/ready  200 (the model is trained before the server listens).

The endpoint is a plain `def` (FastAPI runs it in its thread pool), the usual
choice for blocking work such as a model's predict.
"""

import argparse
import datetime
import os
import sys

import lightgbm
import pandas as pd
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_bike  # noqa: E402  (same folder: the shared feature preparation)

DEFAULT_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples",
                            "bikeshare", "data", "bike-rental-dataset.csv.gz")


class BikeRow(BaseModel):
    dteday: datetime.date
    season: str | None = None
    hr: str | None = None
    holiday: str | None = None
    weekday: str | None = None
    workingday: str | None = None
    weathersit: str | None = None
    temp: float | None = None
    atemp: float | None = None
    hum: float | None = None
    windspeed: float | None = None


class PredictRequest(BaseModel):
    instances: list[BikeRow]


class Prediction(BaseModel):
    value: float


class PredictResponse(BaseModel):
    predictions: list[Prediction]
    model: str
    version: int


def train(path):
    x, y, is_train = train_bike.load(path)
    model = lightgbm.LGBMRegressor(verbose=-1)
    model.fit(x[is_train], y[is_train])
    print(f"serve_fastapi: LightGBM {lightgbm.__version__} trained on {int(is_train.sum())} rows",
          file=sys.stderr)
    return model


def make_app(model):
    app = FastAPI(title="bikes")

    @app.post("/v1/models/bikes/predict", response_model=PredictResponse)
    def predict(request: PredictRequest):
        if not request.instances:
            return {"predictions": [], "model": "bikes", "version": 1}
        raw = pd.DataFrame([row.model_dump(mode="json") for row in request.instances])
        values = model.predict(train_bike.features(raw), num_threads=1)
        return {"predictions": [{"value": float(v)} for v in values], "model": "bikes", "version": 1}

    @app.get("/v2/health/ready")
    def ready():
        return {"ready": True}

    return app


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data", default=DEFAULT_DATA)
    args = parser.parse_args()
    app = make_app(train(args.data))
    uvicorn.run(app, host=args.host, port=args.port, workers=1, access_log=False)


if __name__ == "__main__":
    main()
