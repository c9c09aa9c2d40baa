//! A stage's cache key: the BLAKE3 of its inputs document in canonical JSON (object keys
//! sorted at every level, no whitespace), and the reasons two documents differ.
//!
//! The inputs document of a stage has these sections, each optional:
//!
//! ```json
//! {"kind": "train",
//!  "settings": {...},                      // the stage's own keys
//!  "config": {"[train]": {...}},           // the kiln.toml sections it reads
//!  "deps": {"data/hour.csv.gz": "<blake3>"},// files by content
//!  "upstream": {"ingest": {...}},          // what earlier stages it consumes produced
//!  "code": "kiln 0.1.0"}                   // the code that does the work
//! ```

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;

use serde_json::Value;

/// `v` as JSON with object keys sorted at every level.
pub fn canonical(v: &Value) -> String {
    let mut out = String::new();
    write(v, &mut out);
    out
}

fn write(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                write(&m[k.as_str()], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The cache key of an inputs document.
pub fn key_of(inputs: &Value) -> String {
    blake3::hash(canonical(inputs).as_bytes())
        .to_hex()
        .to_string()
}

/// The BLAKE3 of a file's content, read in pieces; `None` when it does not exist.
pub fn hash_file(path: &Path) -> std::io::Result<Option<String>> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(Some(h.finalize().to_hex().to_string()))
}

/// Why the inputs `now` differ from the inputs `then` a stage last succeeded with, in words:
/// one reason per changed section entry ("data/hour.csv.gz changed", "[train] changed",
/// "upstream `ingest` changed: bikes@3", "code version changed (kiln 0.1.0 → 0.2.0)").
pub fn reasons(then: &Value, now: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let section = |v: &Value, s: &str| v.get(s).cloned().unwrap_or(Value::Null);
    if section(then, "kind") != section(now, "kind") {
        out.push("the stage's kind changed".into());
    }
    if section(then, "settings") != section(now, "settings") {
        out.push("stage settings changed".into());
    }
    let entries = |v: &Value, s: &str| -> Vec<(String, Value)> {
        match v.get(s) {
            Some(Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            _ => Vec::new(),
        }
    };
    for s in ["config", "deps", "upstream"] {
        let a = entries(then, s);
        let b = entries(now, s);
        let names: BTreeSet<&String> = a.iter().chain(&b).map(|(k, _)| k).collect();
        for name in names {
            let old = a.iter().find(|(k, _)| k == name).map(|(_, v)| v);
            let new = b.iter().find(|(k, _)| k == name).map(|(_, v)| v);
            if old == new {
                continue;
            }
            out.push(match (s, old, new) {
                ("deps", _, Some(Value::Null)) => format!("{name} is missing"),
                ("deps", None, _) => format!("{name} is a new dep"),
                ("deps", _, None) => format!("{name} is no longer a dep"),
                ("deps", ..) => format!("{name} changed"),
                ("upstream", _, Some(v)) => {
                    format!("upstream `{name}` changed{}", describe(v))
                }
                ("upstream", _, None) => format!("no longer reads upstream `{name}`"),
                (_, None, _) => format!("now reads {name}"),
                _ => format!("{name} changed"),
            });
        }
    }
    if section(then, "code") != section(now, "code") {
        out.push(format!(
            "code version changed ({} → {})",
            section(then, "code").as_str().unwrap_or("?"),
            section(now, "code").as_str().unwrap_or("?")
        ));
    }
    if out.is_empty() && then != now {
        out.push("its inputs changed".into());
    }
    out
}

/// ": bikes@3" for an upstream view naming a dataset or model version.
fn describe(v: &Value) -> String {
    let name = v
        .get("dataset")
        .or_else(|| v.get("model"))
        .and_then(Value::as_str);
    match (name, v.get("version").and_then(Value::as_i64)) {
        (Some(n), Some(ver)) => format!(": now {n}@{ver}"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_key_ignores_key_order_and_sees_every_value() {
        let a =
            json!({"kind": "train", "config": {"[train]": {"a": 1, "b": [1, {"y": 2, "x": 1}]}}});
        let b =
            json!({"config": {"[train]": {"b": [1, {"x": 1, "y": 2}], "a": 1}}, "kind": "train"});
        assert_eq!(key_of(&a), key_of(&b));
        assert_eq!(
            canonical(&b),
            r#"{"config":{"[train]":{"a":1,"b":[1,{"x":1,"y":2}]}},"kind":"train"}"#
        );
        let c =
            json!({"kind": "train", "config": {"[train]": {"a": 1, "b": [1, {"y": 2, "x": 2}]}}});
        assert_ne!(key_of(&a), key_of(&c));
        // Array order matters (argv, gate lists).
        assert_ne!(key_of(&json!([1, 2])), key_of(&json!([2, 1])));
        assert_eq!(key_of(&a).len(), 64);
    }

    #[test]
    fn reasons_name_what_changed() {
        let base = json!({
            "kind": "train",
            "settings": {"set": {}},
            "config": {"[train]": {"seed": 0}},
            "deps": {"a.csv": "h1", "b.py": "h2"},
            "upstream": {"ingest": {"dataset": "bikes", "version": 1}},
            "code": "kiln 0.1.0"
        });
        assert!(reasons(&base, &base).is_empty());
        let mut now = base.clone();
        now["config"]["[train]"]["seed"] = json!(1);
        now["deps"]["a.csv"] = json!("h9");
        now["deps"]["b.py"] = Value::Null;
        now["deps"]["c.txt"] = json!("h3");
        now["upstream"]["ingest"]["version"] = json!(2);
        now["code"] = json!("kiln 0.2.0");
        now["settings"]["set"] = json!({"seed": 3});
        assert_eq!(
            reasons(&base, &now),
            [
                "stage settings changed",
                "[train] changed",
                "a.csv changed",
                "b.py is missing",
                "c.txt is a new dep",
                "upstream `ingest` changed: now bikes@2",
                "code version changed (kiln 0.1.0 → kiln 0.2.0)",
            ]
        );
    }

    #[test]
    fn files_hash_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.csv");
        assert_eq!(hash_file(&p).unwrap(), None);
        std::fs::write(&p, b"x,y\n1,2\n").unwrap();
        let h = hash_file(&p).unwrap().unwrap();
        assert_eq!(h, blake3::hash(b"x,y\n1,2\n").to_hex().to_string());
        std::fs::write(&p, b"x,y\n1,3\n").unwrap();
        assert_ne!(hash_file(&p).unwrap().unwrap(), h);
    }
}
