//! End-to-end tests of `kiln init`, `kiln data ...` and `kiln quickstart` (which also trains): the real binary, real
//! files, a real SQLite database and artifact folder in a temporary project.

use std::io::Write;
use std::path::Path;

use serde_json::Value;

mod common;

use common::{Project, expect_input_error, finish};

const BIKES_HEAD: &str = "dteday,season,hr,temp,cnt\n";

fn bikes_csv(rows: &[(&str, &str, &str, f64, i64)]) -> String {
    let mut s = BIKES_HEAD.to_owned();
    for (d, season, hr, t, c) in rows {
        s.push_str(&format!("{d},{season},{hr},{t},{c}\n"));
    }
    s
}

fn sample_rows() -> Vec<(&'static str, &'static str, &'static str, f64, i64)> {
    vec![
        ("2011-01-01", "spring", "1am", 3.5, 16),
        ("2011-01-01", "spring", "2am", 3.1, 40),
        ("2011-01-02", "spring", "1am", 2.0, 32),
        ("2011-06-01", "summer", "5pm", 28.4, 520),
        ("2011-06-02", "summer", "6pm", 29.0, 610),
    ]
}

const RULES: &str = r#"
[datasets.bikes]
time_column = "dteday"
target = "cnt"

[datasets.bikes.columns.season]
type = "categorical"
allowed = ["spring", "summer", "fall", "winter"]

[datasets.bikes.columns.hr]
regex = "^(1[0-2]|[1-9])(am|pm)$"

[datasets.bikes.columns.temp]
min = -20.0
max = 50.0

[datasets.bikes.columns.cnt]
min = 0.0
max_null_fraction = 0.0
"#;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn csv_gzip_tsv_and_parquet_ingest_to_the_same_rows() {
    let p = Project::new();
    p.config(RULES);
    let csv = bikes_csv(&sample_rows());
    p.write("bikes.csv", csv.as_bytes());
    p.write("bikes.csv.gz", &gzip(csv.as_bytes()));

    let a = p
        .ok(&["data", "add", "bikes.csv", "--dataset", "bikes", "--json"])
        .json();
    assert_eq!(a["created"], true);
    assert_eq!(a["version"]["version"], 1);
    assert_eq!(a["version"]["rows"], 5);
    assert_eq!(a["version"]["time_min"], "2011-01-01");
    assert_eq!(a["version"]["time_max"], "2011-06-02");
    let schema = &a["version"]["schema"]["columns"];
    let types: Vec<&str> = schema
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["date", "categorical", "categorical", "numeric", "numeric"]
    );

    // The gzip copy holds the same rows: same snapshot, so nothing new is stored.
    let g = p
        .ok(&[
            "data",
            "add",
            "bikes.csv.gz",
            "--dataset",
            "bikes",
            "--json",
        ])
        .json();
    assert_eq!(g["created"], false);
    assert_eq!(g["version"]["snapshot_id"], a["version"]["snapshot_id"]);

    // Parquet: export the snapshot and ingest it as another dataset; rows and profile match.
    p.ok(&[
        "data",
        "export",
        "bikes",
        "--format",
        "parquet",
        "-o",
        "out/bikes.parquet",
    ]);
    let q = p
        .ok(&[
            "data",
            "add",
            "out/bikes.parquet",
            "--dataset",
            "bikes2",
            "--json",
        ])
        .json();
    assert_eq!(q["version"]["rows"], 5);
    assert_eq!(q["version"]["schema"], a["version"]["schema"]);
    let s1 = p.ok(&["data", "show", "bikes", "--json"]).json();
    let s2 = p.ok(&["data", "show", "bikes2", "--json"]).json();
    assert_eq!(s1["profile"], s2["profile"]);

    // Tab-separated (by extension) reads the same rows too.
    p.write("bikes.tsv", csv.replace(',', "\t").as_bytes());
    let t = p
        .ok(&["data", "add", "bikes.tsv", "--dataset", "bikes", "--json"])
        .json();
    assert_eq!(t["version"]["snapshot_id"], a["version"]["snapshot_id"]);

    // CSV export reproduces the values.
    p.ok(&[
        "data",
        "export",
        "bikes@1",
        "--format",
        "csv",
        "-o",
        "out/bikes.csv",
    ]);
    let exported = std::fs::read_to_string(p.path("out/bikes.csv")).unwrap();
    assert_eq!(exported, csv);
}

#[test]
fn profile_of_the_reference_dataset_matches_known_figures() {
    let p = Project::new();
    let data = manifest_dir().join("../../examples/bikeshare/data/bike-rental-dataset.csv.gz");
    let data = data.to_str().unwrap();
    let config = manifest_dir().join("../../examples/bikeshare/kiln.toml");
    std::fs::copy(config, p.path("kiln.toml")).unwrap();
    let a = p
        .ok(&["data", "add", data, "--dataset", "bikes", "--json"])
        .json();
    assert_eq!(a["version"]["rows"], 17379);
    assert_eq!(a["version"]["time_min"], "2011-01-01");
    assert_eq!(a["version"]["time_max"], "2012-12-31");
    let show = p.ok(&["data", "show", "bikes", "--json"]).json();
    let col = |name: &str| {
        show["profile"]["columns"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()
            .clone()
    };
    // Figures counted independently from the CSV (see examples/bikeshare/DATA.md).
    assert_eq!(col("weekday")["nulls"], 875);
    assert_eq!(col("weathersit")["nulls"], 1258);
    assert_eq!(col("weathersit")["stats"]["counts"]["Heavy Rain"], 3);
    assert_eq!(col("season")["stats"]["counts"]["fall"], 4496);
    let cnt = &col("cnt")["stats"];
    assert_eq!(cnt["min"], 1.0);
    assert_eq!(cnt["max"], 977.0);
    assert_eq!(cnt["count"], 17379);
    let mean = cnt["mean"].as_f64().unwrap();
    assert!((mean - 3_292_679.0 / 17_379.0).abs() < 1e-9, "{mean}");
    let buckets: u64 = cnt["buckets"]["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b[1].as_u64().unwrap())
        .sum();
    assert_eq!(buckets, 17379);
}

/// Each rule, under the default reject policy: exit 2, a report naming the place and the rule,
/// and a store exactly as it was.
#[test]
fn every_rule_rejects_and_stores_nothing() {
    let p = Project::new();
    p.config(RULES);
    p.write("good.csv", bikes_csv(&sample_rows()).as_bytes());
    p.ok(&["data", "add", "good.csv", "--dataset", "bikes"]);
    let before = p.store_state();

    let cases: Vec<(&str, String, &[&str])> = vec![
        (
            "type",
            bikes_csv(&sample_rows()).replace("3.5,16", "warm,16"),
            &["row 1", "line 2", "column `temp`", "\"warm\"", "[type]"],
        ),
        (
            "range",
            bikes_csv(&sample_rows()).replace("28.4,520", "88.4,520"),
            &["row 4", "column `temp`", "88.4", "[range]"],
        ),
        (
            "allowed",
            bikes_csv(&sample_rows()).replace("2011-06-02,summer", "2011-06-02,monsoon"),
            &["row 5", "column `season`", "monsoon", "[allowed]"],
        ),
        (
            "regex",
            bikes_csv(&sample_rows()).replace(",5pm,", ",17h,"),
            &["row 4", "column `hr`", "17h", "[regex]"],
        ),
        (
            "ragged",
            format!("{BIKES_HEAD}2011-01-01,spring,1am,3.5\n2011-01-01,spring,2am,3.1,40\n"),
            &["row 1", "line 2", "4 fields", "[ragged_row]"],
        ),
        (
            "nulls",
            bikes_csv(&sample_rows()).replace("3.1,40", "3.1,"),
            &["column `cnt`", "[max_null_fraction]"],
        ),
    ];
    for (name, content, expect) in cases {
        let file = format!("{name}.csv");
        p.write(&file, content.as_bytes());
        let r = p.run(&["data", "add", &file, "--dataset", "bikes"]);
        assert_eq!(r.code, 2, "{name}: {}", r.stderr);
        assert!(
            r.stderr.contains(&file),
            "{name}: no file name in\n{}",
            r.stderr
        );
        for e in expect {
            assert!(
                r.stderr.contains(e),
                "{name}: `{e}` missing from\n{}",
                r.stderr
            );
        }
        assert!(r.stderr.contains("nothing was stored"), "{}", r.stderr);
        assert_eq!(p.store_state(), before, "{name} changed the store");
    }

    // Bad UTF-8 in a cell.
    let mut bytes = bikes_csv(&sample_rows()).into_bytes();
    let at = bytes.windows(6).position(|w| w == b"summer").unwrap();
    bytes[at + 1] = 0xff;
    p.write("utf8.csv", &bytes);
    let r = p.run(&["data", "add", "utf8.csv", "--dataset", "bikes"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("[bad_utf8]") && r.stderr.contains("column `season`"),
        "{}",
        r.stderr
    );
    assert_eq!(p.store_state(), before);

    // The JSON report is one document with every count.
    let mut many = BIKES_HEAD.to_owned();
    for i in 0..50 {
        many.push_str(&format!("2011-01-01,spring,1am,{},{i}\n", 100 + i));
    }
    p.write("many.csv", many.as_bytes());
    let r = p.run(&["data", "add", "many.csv", "--dataset", "bikes", "--json"]);
    assert_eq!(r.code, 2);
    let doc = r.json();
    assert_eq!(doc["validation"]["violations"], 50);
    assert_eq!(doc["validation"]["bad_rows"], 50);
    assert_eq!(doc["validation"]["shown"].as_array().unwrap().len(), 20);
    assert!(r.stderr.contains("and 30 more"), "{}", r.stderr);
    assert_eq!(p.store_state(), before);
}

#[test]
fn uniqueness_is_checked_within_the_file_and_across_appends() {
    let p = Project::new();
    p.config("[datasets.ids.columns.id]\nunique = true\n");
    p.write("ids.csv", b"id,x\na,1\nb,2\na,3\n");
    let r = p.run(&["data", "add", "ids.csv", "--dataset", "ids"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("row 3") && r.stderr.contains("[unique]"),
        "{}",
        r.stderr
    );

    // Across an append: the new rows may not repeat ids of the version they extend.
    p.write("first.csv", b"id,x\na,1\nb,2\n");
    p.ok(&["data", "add", "first.csv", "--dataset", "ids"]);
    p.write("more.csv", b"id,x\nc,3\nb,4\n");
    let r = p.run(&["data", "add", "more.csv", "--dataset", "ids", "--append"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("row 2") && r.stderr.contains("\"b\" appears more than once"),
        "{}",
        r.stderr
    );
    p.write("more.csv", b"id,x\nc,3\nd,4\n");
    let ok = p
        .ok(&[
            "data",
            "add",
            "more.csv",
            "--dataset",
            "ids",
            "--append",
            "--json",
        ])
        .json();
    assert_eq!(ok["version"]["rows"], 4);

    // Appended columns must come in the dataset's order.
    p.write("swapped.csv", b"x,id\n5,e\n");
    let r = p.run(&["data", "add", "swapped.csv", "--dataset", "ids", "--append"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("different order"), "{}", r.stderr);
}

#[test]
fn quarantine_stores_good_rows_and_sets_bad_ones_aside() {
    let p = Project::new();
    p.config(&format!("{RULES}\n").replace(
        "target = \"cnt\"\n",
        "target = \"cnt\"\npolicy = \"quarantine\"\n",
    ));
    let content = bikes_csv(&sample_rows())
        .replace("3.5,16", "warm,16")
        .replace("2011-06-02,summer", "2011-06-02,monsoon");
    p.write("mixed.csv", content.as_bytes());
    let out = p
        .ok(&["data", "add", "mixed.csv", "--dataset", "bikes", "--json"])
        .json();
    assert_eq!(out["version"]["rows"], 3);
    assert_eq!(out["quarantined_rows"], 2);
    assert_eq!(out["version"]["quarantined_rows"], 2);
    let qid = out["version"]["quarantine_id"].as_str().unwrap();
    let blob = p.path(&format!(".kiln/artifacts/blobs/{}/{qid}", &qid[..2]));
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(blob).unwrap()),
        &mut text,
    )
    .unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "_row,_line,dteday,season,hr,temp,cnt");
    assert_eq!(lines[1], "1,2,2011-01-01,spring,1am,warm,16");
    assert_eq!(lines[2], "5,6,2011-06-02,monsoon,6pm,29,610");
    assert_eq!(lines.len(), 3);
    let human = p.ok(&["data", "show", "bikes"]).stdout;
    assert!(human.contains("quarantined: 2 rows"), "{human}");
}

#[test]
fn identical_content_is_a_no_op_and_append_records_lineage() {
    let p = Project::new();
    p.config(RULES);
    let rows = sample_rows();
    p.write("a.csv", bikes_csv(&rows[..3]).as_bytes());
    p.write("b.csv", bikes_csv(&rows[3..]).as_bytes());
    let first = p
        .ok(&["data", "add", "a.csv", "--dataset", "bikes", "--json"])
        .json();
    let again = p.run(&["data", "add", "a.csv", "--dataset", "bikes"]);
    assert_eq!(again.code, 0);
    assert!(again.stdout.contains("unchanged"), "{}", again.stdout);

    let appended = p
        .ok(&[
            "data",
            "add",
            "b.csv",
            "--dataset",
            "bikes",
            "--append",
            "--json",
        ])
        .json();
    let v = &appended["version"];
    assert_eq!(v["version"], 2);
    assert_eq!(v["parent_version"], 1);
    assert_eq!(v["mode"], "append");
    assert_eq!(v["rows"], 5);
    assert_eq!(v["parts"].as_array().unwrap().len(), 2);
    // The parent's part is shared, not copied.
    assert_eq!(v["parts"][0]["id"], first["version"]["parts"][0]["id"]);
    assert_eq!(v["time_max"], "2011-06-02");
    // Appending the same rows again changes nothing.
    let dup = p
        .ok(&[
            "data",
            "add",
            "b.csv",
            "--dataset",
            "bikes",
            "--append",
            "--json",
        ])
        .json();
    assert_eq!(dup["created"], false);

    // The appended version's profile is the profile of all its rows.
    p.write("all.csv", bikes_csv(&rows).as_bytes());
    p.ok(&["data", "add", "all.csv", "--dataset", "whole"]);
    let merged = p.ok(&["data", "show", "bikes@2", "--json"]).json();
    let whole = p.ok(&["data", "show", "whole", "--json"]).json();
    for (m, w) in merged["profile"]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .zip(whole["profile"]["columns"].as_array().unwrap())
    {
        assert_eq!(m["nulls"], w["nulls"]);
        assert_eq!(m["stats"]["counts"], w["stats"]["counts"]);
        assert_eq!(m["stats"]["buckets"], w["stats"]["buckets"]);
        assert_eq!(m["stats"]["min"], w["stats"]["min"]);
    }

    let log = p.ok(&["data", "log", "bikes", "--json"]).json();
    assert_eq!(log.as_array().unwrap().len(), 2);
    let human = p.ok(&["data", "log", "bikes"]).stdout;
    assert!(
        human.contains("bikes@2") && human.contains("append"),
        "{human}"
    );
}

#[test]
fn diff_reports_rows_schema_and_profile_changes() {
    let p = Project::new();
    p.write("v1.csv", b"city,temp\nparis,10\nlyon,12\n");
    p.ok(&["data", "add", "v1.csv", "--dataset", "w"]);
    p.write(
        "v2.csv",
        b"city,temp,wind\nparis,20,3\nnice,22,4\nlyon,24,5\n",
    );
    let r = p.run(&["data", "add", "v2.csv", "--dataset", "w"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("added `wind` (numeric)") && r.stderr.contains("--allow-schema-change"),
        "{}",
        r.stderr
    );
    p.ok(&[
        "data",
        "add",
        "v2.csv",
        "--dataset",
        "w",
        "--allow-schema-change",
    ]);
    let d = p.ok(&["data", "diff", "w@1", "w@2", "--json"]).json();
    assert_eq!(d["rows_from"], 2);
    assert_eq!(d["rows_to"], 3);
    assert_eq!(d["schema"]["added"][0]["name"], "wind");
    let city = d["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "city")
        .unwrap();
    assert_eq!(city["new_categories"][0], "nice");
    let temp = d["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "temp")
        .unwrap();
    assert_eq!(temp["stats"][0][0], "mean");
    assert_eq!(temp["stats"][0][1], 11.0);
    assert_eq!(temp["stats"][0][2], 22.0);
    let human = p.ok(&["data", "diff", "w@1", "w"]).stdout;
    assert!(human.contains("rows: 2 -> 3 (+1)"), "{human}");
    assert!(
        human.contains("new values") && human.contains("nice"),
        "{human}"
    );
}

#[test]
fn a_tampered_snapshot_is_refused_on_read() {
    let p = Project::new();
    p.write("a.csv", bikes_csv(&sample_rows()).as_bytes());
    let out = p
        .ok(&["data", "add", "a.csv", "--dataset", "bikes", "--json"])
        .json();
    let part = out["version"]["parts"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let blob = p.path(&format!(".kiln/artifacts/blobs/{}/{part}", &part[..2]));
    let mut bytes = std::fs::read(&blob).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&blob, &bytes).unwrap();
    let r = p.run(&["data", "export", "bikes", "--format", "csv", "-o", "x.csv"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("tampered") && r.stderr.contains(&part),
        "{}",
        r.stderr
    );
    assert!(
        !p.path("x.csv").exists(),
        "a partial export was left behind"
    );

    // A tampered profile is refused too.
    let prof = out["version"]["profile_id"].as_str().unwrap().to_owned();
    let pblob = p.path(&format!(".kiln/artifacts/blobs/{}/{prof}", &prof[..2]));
    std::fs::write(&pblob, b"{}").unwrap();
    let r = p.run(&["data", "show", "bikes"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("tampered"), "{}", r.stderr);
}

#[test]
fn bad_input_gets_a_clear_message_and_exit_code_2() {
    let p = Project::new();
    p.write("empty.csv", b"");
    p.write("blank.csv", b"\n\n");
    p.write("header_only.csv", b"a,b\n");
    p.write("dup.csv", b"a,b,a\n1,2,3\n");
    p.write("noname.csv", b"a,,c\n1,2,3\n");
    p.write("fake.parquet", b"a,b\n1,2\n");
    p.write("badgz.csv.gz", b"\x1f\x8b\x08\x00garbage-not-deflate");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["data", "add", "empty.csv", "-d", "x"],
            "empty.csv: the file is empty",
        ),
        (
            vec!["data", "add", "blank.csv", "-d", "x"],
            "blank.csv: the file is empty",
        ),
        (
            vec!["data", "add", "header_only.csv", "-d", "x"],
            "no data rows",
        ),
        (
            vec!["data", "add", "dup.csv", "-d", "x"],
            "duplicate column name `a` in the header (columns 1 and 3)",
        ),
        (
            vec!["data", "add", "noname.csv", "-d", "x"],
            "header column 2 has no name",
        ),
        (
            vec!["data", "add", "fake.parquet", "-d", "x"],
            "not a Parquet file",
        ),
        (
            vec!["data", "add", "badgz.csv.gz", "-d", "x"],
            "badgz.csv.gz",
        ),
        (vec!["data", "add", "missing.csv", "-d", "x"], "missing.csv"),
        (
            vec!["data", "add", "dup.csv", "-d", "../etc"],
            "invalid dataset name",
        ),
        (vec!["data", "show", "nosuch"], "no dataset named `nosuch`"),
        (vec!["data", "show", "x@zero"], "not a dataset reference"),
        (
            vec!["data", "add", "dup.csv", "-d", "x", "--time-column", "when"],
            "duplicate column name",
        ),
    ];
    for (args, expect) in cases {
        let r = p.run(&args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains(expect),
            "{args:?}: `{expect}` not in\n{}",
            r.stderr
        );
        assert!(r.stderr.starts_with("error: "), "{}", r.stderr);
    }

    p.write("ok.csv", b"a,b\n1,x\n");
    let r = p.run(&["data", "add", "ok.csv", "-d", "x", "--time-column", "when"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("time column `when` is not a column")
            && r.stderr.contains("columns in the file: a, b"),
        "{}",
        r.stderr
    );
    let r = p.run(&["data", "add", "ok.csv", "-d", "x", "--time-column", "b"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("must be a date or timestamp"),
        "{}",
        r.stderr
    );
    let r = p.run(&["data", "add", "ok.csv", "-d", "x", "--target", "y"]);
    assert!(
        r.code == 2 && r.stderr.contains("target `y`"),
        "{}",
        r.stderr
    );

    // A column in kiln.toml that the file does not have.
    p.config("[datasets.x.columns.nope]\ntype = \"numeric\"\n");
    let r = p.run(&["data", "add", "ok.csv", "-d", "x"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("declares column `nope`")
            && r.stderr.contains("columns in the file: a, b"),
        "{}",
        r.stderr
    );

    // A typo in kiln.toml.
    p.config("[ingest]\nbatch_rowz = 5\n");
    let r = p.run(&["data", "log"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("kiln.toml") && r.stderr.contains("batch_rowz"),
        "{}",
        r.stderr
    );
}

#[test]
fn init_writes_a_config_and_settings_follow_their_precedence() {
    // Where the SQLite file lands is what this test checks, on any suite backend.
    let p = Project::sqlite();
    p.ok(&["init", "proj"]);
    let text = std::fs::read_to_string(p.path("proj/kiln.toml")).unwrap();
    assert!(text.contains("[store]") && text.contains("# [datasets.NAME]"));
    assert!(p.path("proj/.kiln").is_dir());
    let again = p.run(&["init", "proj"]);
    assert_eq!(again.code, 2);
    assert!(again.stderr.contains("--force"));

    // kiln.toml sets the home; KILN_HOME overrides it; --home overrides both.
    p.config("[store]\nhome = \"from-toml\"\n");
    p.write("t.csv", b"a\n1\n");
    p.ok(&["data", "add", "t.csv", "-d", "t"]);
    assert!(p.path("from-toml/kiln.db").exists());
    let r = finish(
        p.command()
            .env("KILN_HOME", p.path("from-env"))
            .args(["data", "add", "t.csv", "-d", "t"])
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(p.path("from-env/kiln.db").exists());
    let r = finish(
        p.command()
            .env("KILN_HOME", p.path("from-env"))
            .args(["--home", "from-flag", "data", "add", "t.csv", "-d", "t"])
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(p.path("from-flag/kiln.db").exists());
    // --db and --artifacts move each store on its own.
    let db = p.path("elsewhere/meta.db");
    let url = format!("sqlite://{}", db.display());
    p.ok(&[
        "--db",
        &url,
        "--artifacts",
        "blobs",
        "data",
        "add",
        "t.csv",
        "-d",
        "t",
    ]);
    assert!(db.exists());
    assert!(p.path("blobs/blobs").is_dir());
    let r = p.run(&["--db", "mysql://x", "data", "log"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("unsupported database URL"),
        "{}",
        r.stderr
    );
}

#[test]
fn help_describes_every_command() {
    let p = Project::new();
    let top = p.ok(&["--help"]).stdout;
    for cmd in [
        "init",
        "data",
        "quickstart",
        "replay",
        "watch",
        "retrains",
        "pipeline",
        "rollouts",
        "--home",
        "--db",
        "--artifacts",
        "--log-format",
        "--quiet",
    ] {
        assert!(top.contains(cmd), "`{cmd}` missing from --help:\n{top}");
    }
    let data = p.ok(&["data", "--help"]).stdout;
    for cmd in ["add", "log", "show", "diff", "export"] {
        assert!(
            data.contains(cmd),
            "`{cmd}` missing from data --help:\n{data}"
        );
    }
    let add = p.ok(&["data", "add", "--help"]).stdout;
    for flag in [
        "--dataset",
        "--time-column",
        "--target",
        "--append",
        "--allow-schema-change",
        "--json",
    ] {
        assert!(add.contains(flag), "`{flag}` missing from data add --help");
    }
}

#[test]
fn quickstart_sets_up_trains_and_deploys_the_bundled_example() {
    let p = Project::new();
    let dir = p.path("qs");
    let out = p
        .ok(&[
            "quickstart",
            "--dir",
            dir.to_str().unwrap(),
            "--no-replay",
            "--json",
        ])
        .json();
    // 2011 to learn from; 2012 is the traffic.
    assert_eq!(out["rows"], 8645);
    assert_eq!(out["dataset"], "bikes");
    assert_eq!(out["time_min"], "2011-01-01");
    assert_eq!(out["time_max"], "2011-12-31");
    assert!(Path::new(&dir).join("kiln.toml").exists());
    assert!(out.get("rmse_ratio_vs_frozen").is_none(), "no replay ran");
    // It trains, registers and deploys the model and writes its card.
    assert_eq!(out["model"], "bikes@1");
    let m = &out["metrics"];
    assert!(m["model"]["rmse"].as_f64().unwrap() < m["linear"]["rmse"].as_f64().unwrap());
    let card = std::fs::read_to_string(out["card"].as_str().unwrap()).unwrap();
    assert!(card.contains("<h1>Model card: bikes@1</h1>"));
    let in_dir = |args: &[&str]| {
        let mut c = p.command();
        c.current_dir(&dir).args(args);
        common::finish(c.output().unwrap())
    };
    let shown = in_dir(&["models", "show", "bikes@production", "--json"]).json();
    assert_eq!(shown["version"]["version"], 1);
    let traffic = in_dir(&["data", "show", "bikes-2012", "--json"]).json();
    assert_eq!(traffic["version"]["rows"], 8734, "{traffic}");
    // A second quickstart into the same folder refuses instead of mixing projects.
    let r = p.run(&["quickstart", "--dir", dir.to_str().unwrap()]);
    assert_eq!(r.code, 2);
}

#[test]
fn json_logs_are_json() {
    let p = Project::new();
    p.write("t.csv", b"a\n1\n");
    let r = p.run(&[
        "--log-format",
        "json",
        "-v",
        "data",
        "add",
        "t.csv",
        "-d",
        "t",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("snapshot stored"), "{}", r.stderr);
    for line in r.stderr.lines().filter(|l| !l.trim().is_empty()) {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
}

#[test]
fn parquet_strings_are_parsed_into_declared_types() {
    let p = Project::new();
    p.config(
        r#"
[datasets.raw.columns.day]
type = "categorical"
[datasets.raw.columns.n]
type = "categorical"
[datasets.typed.columns.day]
type = "date"
[datasets.typed.columns.n]
type = "numeric"
"#,
    );
    // A Parquet file whose columns are strings: export a dataset declared all-categorical.
    p.write(
        "raw.csv",
        b"day,n\n2011-01-01,1.5\n2011-01-02,2\n2011-01-03,oops\n",
    );
    p.ok(&["data", "add", "raw.csv", "-d", "raw"]);
    p.ok(&[
        "data",
        "export",
        "raw",
        "--format",
        "parquet",
        "-o",
        "raw.parquet",
    ]);
    let r = p.run(&["data", "add", "raw.parquet", "-d", "typed"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    for e in [
        "raw.parquet",
        "row 3",
        "column `n`",
        "\"oops\" is not a number",
        "[type]",
    ] {
        assert!(r.stderr.contains(e), "`{e}` not in\n{}", r.stderr);
    }

    p.write("raw.csv", b"day,n\n2011-01-01,1.5\n2011-01-02,2\n");
    p.ok(&["data", "add", "raw.csv", "-d", "raw"]);
    p.ok(&[
        "data",
        "export",
        "raw",
        "--format",
        "parquet",
        "-o",
        "raw.parquet",
    ]);
    let out = p
        .ok(&["data", "add", "raw.parquet", "-d", "typed", "--json"])
        .json();
    let types: Vec<&str> = out["version"]["schema"]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["date", "numeric"]);
    let show = p.ok(&["data", "show", "typed", "--json"]).json();
    assert_eq!(show["profile"]["columns"][1]["stats"]["mean"], 1.75);
    assert_eq!(show["profile"]["columns"][0]["stats"]["max"], 14976);
}

#[test]
fn timestamps_survive_a_parquet_round_trip() {
    let p = Project::new();
    p.write(
        "t.csv",
        b"at,v\n2011-01-01 10:00:00,1\n2011-01-01T11:30:00Z,2\n2011-01-02 00:00:00.25,3\n",
    );
    let a = p
        .ok(&[
            "data",
            "add",
            "t.csv",
            "-d",
            "t",
            "--time-column",
            "at",
            "--json",
        ])
        .json();
    assert_eq!(a["version"]["time_min"], "2011-01-01T10:00:00Z");
    assert_eq!(a["version"]["time_max"], "2011-01-02T00:00:00.250Z");
    // Kiln's Parquet carries a UTC zone; reading it back must keep every instant.
    p.ok(&[
        "data",
        "export",
        "t",
        "--format",
        "parquet",
        "-o",
        "t.parquet",
    ]);
    let b = p
        .ok(&[
            "data",
            "add",
            "t.parquet",
            "-d",
            "t2",
            "--time-column",
            "at",
            "--json",
        ])
        .json();
    assert_eq!(b["version"]["time_min"], a["version"]["time_min"]);
    assert_eq!(b["version"]["time_max"], a["version"]["time_max"]);
    p.ok(&["data", "export", "t2", "--format", "csv", "-o", "t2.csv"]);
    let text = std::fs::read_to_string(p.path("t2.csv")).unwrap();
    assert_eq!(
        text,
        "at,v\n2011-01-01T10:00:00Z,1\n2011-01-01T11:30:00Z,2\n2011-01-02T00:00:00.250Z,3\n"
    );
}

/// The bundled bike data, 2011 as one version and 2012 as the next: `kiln data diff --drift`
/// gives, column for column, the test, score and verdict of Evidently's own DataDriftPreset
/// report on the same split (kept in kiln-monitor's fixtures, from its generator script).
#[test]
fn drift_between_versions_equals_evidentlys_report() {
    let p = Project::new();
    let gz = manifest_dir().join("../../examples/bikeshare/data/bike-rental-dataset.csv.gz");
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(gz).unwrap()),
        &mut text,
    )
    .unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let day = header.split(',').position(|c| c == "dteday").unwrap();
    for year in ["2011", "2012"] {
        let mut out = format!("{header}\n");
        for line in text.lines().skip(1) {
            if line.split(',').nth(day).unwrap().starts_with(year) {
                out.push_str(line);
                out.push('\n');
            }
        }
        std::fs::write(p.path(&format!("{year}.csv")), out).unwrap();
        p.ok(&[
            "data",
            "add",
            &format!("{year}.csv"),
            "--dataset",
            "bikes",
            "-q",
        ]);
    }
    let d = p
        .ok(&["data", "diff", "bikes@1", "bikes@2", "--drift", "--json"])
        .json();
    let fixtures: Value = serde_json::from_str(
        &std::fs::read_to_string(
            manifest_dir().join("../kiln-monitor/tests/fixtures/drift_cases.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let evidently = fixtures["reports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "bike")
        .unwrap();
    let ours = d["drift"]["columns"].as_array().unwrap();
    let mut compared = 0;
    for e in evidently["columns"].as_array().unwrap() {
        let name = e["column"].as_str().unwrap();
        // Kiln leaves the date column out, as Evidently does with datetime columns (it read
        // this one as text).
        let Some(k) = ours.iter().find(|c| c["name"] == name) else {
            assert_eq!(name, "dteday", "Kiln did not test {name}");
            continue;
        };
        let k = &k["drift"];
        assert_eq!(k["method"], e["method"], "{name}");
        assert_eq!(k["drifted"], e["drifted"], "{name}");
        let (a, b) = (k["score"].as_f64().unwrap(), e["score"].as_f64().unwrap());
        assert!((a - b).abs() <= 1e-6, "{name}: Kiln {a}, Evidently {b}");
        compared += 1;
    }
    assert_eq!(
        compared,
        ours.len(),
        "every column Kiln tested is in Evidently's report"
    );
    assert!(compared >= 12, "{compared}");
    // Kiln's verdict is over the columns it tested; the drifted ones are the same.
    let drifted = ours
        .iter()
        .filter(|c| c["drift"]["drifted"] == true)
        .count();
    assert_eq!(
        drifted, 4,
        "hum, casual, registered and cnt drift from 2011 to 2012"
    );
    assert_eq!(d["drift"]["dataset"]["drifted"], false);

    // And as a table for people.
    let human = p
        .ok(&["data", "diff", "bikes@1", "bikes@2", "--drift"])
        .stdout;
    assert!(human.contains("Wasserstein distance (normed)"), "{human}");
    assert!(human.contains("4 of 13 columns drifted"), "{human}");

    // kiln.toml chooses a column's test and threshold, and the dataset's share; the serving
    // keys of [monitor] beside them (as in the example) are fine.
    let config = p.path("kiln.toml");
    let mut toml = std::fs::read_to_string(&config).unwrap_or_default();
    toml.push_str(
        "\n[monitor]\nwindow = \"7d\"\ninterval = \"1s\"\n[monitor.drift]\nshare = 0.25\n[monitor.drift.columns.temp]\nmethod = \"psi\"\nthreshold = 0.001\n",
    );
    std::fs::write(&config, &toml).unwrap();
    let d = p
        .ok(&["data", "diff", "bikes@1", "bikes@2", "--drift", "--json"])
        .json();
    let temp = d["drift"]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "temp")
        .unwrap();
    assert_eq!(temp["drift"]["method"], "psi");
    assert_eq!(temp["drift"]["threshold"], 0.001);
    assert_eq!(temp["drift"]["drifted"], true, "{temp}");
    assert_eq!(
        d["drift"]["dataset"]["drifted"], true,
        "5 of 13 reach a share of 0.25"
    );

    // A method that does not exist is refused, naming it and the known ones.
    std::fs::write(&config, toml.replace("\"psi\"", "\"t-test\"")).unwrap();
    let bad = p.run(&["data", "diff", "bikes@1", "bikes@2", "--drift"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("t-test") && bad.stderr.contains("wasserstein"),
        "{}",
        bad.stderr
    );
}

/// This crate's directory, read when the test runs: cargo sets `CARGO_MANIFEST_DIR` for test
/// processes. The compile-time value can name another checkout when a build cache is shared
/// between clones (cargo does not rebuild a test when only the clone's path changed).
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// A PostgreSQL URL naming a database that does not exist, or a server that is not there:
/// one clear message each, exit 2 for what the server refused and 1 for what is unreachable,
/// and nothing written to the artifact store.
#[test]
fn a_misconfigured_database_fails_before_any_write() {
    let Some(server) = std::env::var("KILN_TEST_POSTGRES_URL").ok() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must set KILN_TEST_POSTGRES_URL (see .ci/run)"
        );
        eprintln!("skipped: KILN_TEST_POSTGRES_URL is not set");
        return;
    };
    let p = Project::sqlite();
    p.write("t.csv", b"a\n1\n");
    let missing = format!("{}/kiln_missing_db", server.rsplit_once('/').unwrap().0);
    let r = p.run(&["--db", &missing, "data", "add", "t.csv", "-d", "t"]);
    expect_input_error(&r, "kiln_missing_db");
    assert!(
        r.stderr.contains("hint: the database does not exist"),
        "{}",
        r.stderr
    );
    let r = p.run(&[
        "--db",
        "postgres://kiln:secret@127.0.0.1:1/kiln",
        "data",
        "add",
        "t.csv",
        "-d",
        "t",
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("127.0.0.1:1")
            && r.stderr.contains("hint: is the database server running")
            && !r.stderr.contains("secret"),
        "{}",
        r.stderr
    );
    let (blobs, _) = p.store_state();
    assert!(blobs.is_empty(), "{blobs:?}");
}

/// Four `kiln data add` of the same file at once, on a fresh store: all succeed, and they
/// agree on one snapshot, one dataset version, with no duplicate rows or parts.
#[test]
fn concurrent_ingests_of_the_same_content_make_one_version() {
    let p = Project::new();
    let mut csv = String::from("t,x,y\n");
    for i in 0..2000 {
        csv.push_str(&format!("2011-01-{:02},{i},{}\n", i % 28 + 1, i % 7));
    }
    p.write("same.csv", csv.as_bytes());
    let children: Vec<_> = (0..4)
        .map(|_| {
            p.command()
                .args(["data", "add", "same.csv", "-d", "race", "--json"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let runs: Vec<_> = children
        .into_iter()
        .map(|c| finish(c.wait_with_output().unwrap()))
        .collect();
    let mut snapshots = std::collections::BTreeSet::new();
    for r in &runs {
        assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
        let v = r.json();
        snapshots.insert(v["version"]["snapshot_id"].as_str().unwrap().to_owned());
        assert_eq!(v["version"]["version"].as_i64(), Some(1), "{v:#}");
    }
    assert_eq!(snapshots.len(), 1, "{snapshots:?}");
    let log = p.ok(&["data", "log", "race", "--json"]).json();
    assert_eq!(log.as_array().map(Vec::len), Some(1), "{log:#}");
    let shown = p.ok(&["data", "show", "race@1", "--json"]).json();
    assert_eq!(shown["version"]["rows"].as_i64(), Some(2000), "{shown:#}");
}
