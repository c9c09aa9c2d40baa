//! `GET /openapi.json` (OpenAPI 3.1, generated from the handlers' annotations) and `GET /docs`,
//! a page rendered from that same document on the server: no script, no external asset, so it
//! opens on a machine without network access.

use std::fmt::Write;

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::{admin, catalog, error, native, v2};

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer =
            || SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build());
        components.add_security_scheme("api_key", bearer());
        components.add_security_scheme("admin_token", bearer());
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Kiln",
        description = "Predictions, labels and model administration for models registered with Kiln. Errors are `{\"error\": {\"code\", \"message\", \"field\"?, \"row\"?}}`; on /v2 routes they take the Open Inference Protocol's shape, `{\"error\": \"message\", \"code\", \"field\"?, \"row\"?}`.",
    ),
    paths(
        native::predict,
        native::list_models,
        native::feedback,
        v2::server_metadata,
        v2::live,
        v2::ready,
        v2::model_metadata,
        v2::version_metadata,
        v2::model_ready,
        v2::version_ready,
        v2::infer,
        v2::version_infer,
        admin::reload,
        admin::set_alias,
        admin::rollback,
    ),
    components(schemas(error::ErrorBody, error::ErrorDetail, error::ErrorItem, error::V2ErrorBody, catalog::SyncReport)),
    modifiers(&Security),
    tags(
        (name = "predict", description = "Kiln's JSON API"),
        (name = "v2", description = "Open Inference Protocol (KServe v2)"),
        (name = "admin", description = "Needs the admin token"),
    )
)]
pub struct ApiDoc;

/// The OpenAPI document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

pub async fn json() -> Response {
    match document().to_json() {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => {
            error::ApiError::internal("cannot render the OpenAPI document", e).into_response()
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A readable page of every route: method, path, summary, parameters, body and responses.
pub async fn docs() -> Html<String> {
    let doc = document();
    let value = serde_json::to_value(&doc).unwrap_or_default();
    let mut out = String::with_capacity(32 * 1024);
    out.push_str(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Kiln API</title><style>\
         body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}\
         code,pre{font:13px ui-monospace,monospace}pre{background:#f5f5f5;padding:.6rem;overflow:auto}\
         .m{display:inline-block;width:4rem;font-weight:bold}.route{border-top:1px solid #ddd;padding:.6rem 0}\
         td{padding:0 .8rem 0 0;vertical-align:top}</style></head><body><h1>Kiln API</h1>",
    );
    let _ = write!(
        out,
        "<p>{}</p><p>Machine-readable: <a href=\"/openapi.json\">/openapi.json</a>. Also: <code>GET /metrics</code> (Prometheus).</p>",
        escape(doc.info.description.as_deref().unwrap_or(""))
    );
    if let Some(paths) = value.get("paths").and_then(|p| p.as_object()) {
        for (path, item) in paths {
            let Some(item) = item.as_object() else {
                continue;
            };
            for (method, op) in item {
                let summary = op.get("summary").and_then(|s| s.as_str()).unwrap_or("");
                let _ = write!(
                    out,
                    "<div class=\"route\"><span class=\"m\">{}</span><code>{}</code> — {}",
                    escape(&method.to_uppercase()),
                    escape(path),
                    escape(summary)
                );
                if let Some(params) = op.get("parameters").and_then(|p| p.as_array()) {
                    out.push_str("<table>");
                    for p in params {
                        let _ = write!(
                            out,
                            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                            escape(p.get("name").and_then(|v| v.as_str()).unwrap_or("")),
                            escape(p.get("in").and_then(|v| v.as_str()).unwrap_or("")),
                            escape(p.get("description").and_then(|v| v.as_str()).unwrap_or(""))
                        );
                    }
                    out.push_str("</table>");
                }
                if let Some(body) = op.pointer("/requestBody/content/application~1json/schema") {
                    let _ = write!(
                        out,
                        "<div>Body: <code>{}</code></div>",
                        escape(&schema_name(body))
                    );
                }
                if let Some(responses) = op.get("responses").and_then(|r| r.as_object()) {
                    let codes: Vec<&str> = responses.keys().map(String::as_str).collect();
                    let _ = write!(out, "<div>Responses: {}</div>", escape(&codes.join(", ")));
                }
                out.push_str("</div>");
            }
        }
    }
    out.push_str("<h2>Schemas</h2>");
    if let Some(schemas) = value
        .pointer("/components/schemas")
        .and_then(|s| s.as_object())
    {
        for (name, schema) in schemas {
            let _ = write!(
                out,
                "<h3 id=\"{0}\">{0}</h3><pre>{1}</pre>",
                escape(name),
                escape(&serde_json::to_string_pretty(schema).unwrap_or_default())
            );
        }
    }
    out.push_str("</body></html>");
    Html(out)
}

fn schema_name(schema: &serde_json::Value) -> String {
    if let Some(r) = schema.get("$ref").and_then(|r| r.as_str()) {
        return r.rsplit('/').next().unwrap_or(r).to_owned();
    }
    if let Some(items) = schema.get("items") {
        return format!("[{}]", schema_name(items));
    }
    schema
        .get("type")
        .map(|t| t.to_string())
        .unwrap_or_else(|| "object".into())
}
