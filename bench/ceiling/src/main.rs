//! The ceiling of the `serve` benchmark: `ceiling ADDR` (e.g. `ceiling 127.0.0.1:8080`).
//!
//! `POST /v1/models/bikes/predict` reads the whole body, parses it into a
//! `serde_json::Value` (400 when it is not JSON) and answers a constant body
//! of the same shape as a real prediction; `GET /v2/health/ready` answers 200.
//! Multi-threaded tokio runtime (one worker per core), HTTP/1.1 keep-alive,
//! nothing printed per request. What a model server adds on top of this
//! (validation, features, trees, logging) is what the benchmark measures.

use axum::Router;
use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};

const RESPONSE: &str = r#"{"predictions":[{"value":0.0}],"model":"bikes","version":1}"#;

async fn predict(body: Bytes) -> impl IntoResponse {
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(value) => {
            std::hint::black_box(value);
            (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], RESPONSE)
        }
        Err(_) => (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"error":"body is not JSON"}"#,
        ),
    }
}

async fn ready() -> StatusCode {
    StatusCode::OK
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(addr), None) = (args.next(), args.next()) else {
        eprintln!("usage: ceiling ADDR   (e.g. ceiling 127.0.0.1:8080)");
        std::process::exit(2);
    };
    let app = Router::new()
        .route("/v1/models/bikes/predict", post(predict))
        .route("/v2/health/ready", get(ready));
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ceiling: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("ceiling: listening on {addr}");
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("ceiling: {e}");
        std::process::exit(1);
    }
}
