//! `[pipeline]` of kiln.toml: the stages, checked in full before anything runs.
//!
//! Every error names the stage (`[[pipeline.stages]] #2 `train``), the key and, where it
//! helps, the keys that kind accepts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use kiln_core::config::Config;
use serde::{Deserialize, Serialize};

use crate::AutomateError;
use crate::config::AutomateConfig;

/// The pipeline, checked.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PipelineConfig {
    /// Runs and the cache are kept per pipeline name.
    pub name: String,
    pub stages: Vec<Stage>,
    /// The stages were derived from kiln.toml (no `[[pipeline.stages]]`).
    pub derived: bool,
}

/// One stage: a unique name and what it does.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stage {
    pub name: String,
    #[serde(flatten)]
    pub kind: Kind,
}

/// What a stage does, with its settings.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Kind {
    /// `kiln data add PATH --dataset DATASET` (`append`: `--append`).
    Ingest {
        dataset: String,
        path: PathBuf,
        append: bool,
    },
    /// The upstream snapshot against its dataset's rules as kiln.toml states them now.
    Validate,
    /// `[train]` with `set` over it on the upstream snapshot, against the champion; registers.
    Train {
        set: toml::Table,
        register: Option<String>,
    },
    /// An ONNX model imported and evaluated like `kiln models import`.
    Import {
        file: PathBuf,
        schema: PathBuf,
        model: Option<String>,
    },
    /// Promotion gates on the upstream candidate.
    Gate {
        gates: Vec<String>,
        margin: f64,
        max_latency_ms: f64,
    },
    /// Moves `alias` to the candidate.
    /// `alias` (the champion's) moves to the candidate (`direct`), or the candidate goes on a
    /// `shadow` or `canary` rollout against it (`share`: the canary's share of requests).
    Deploy {
        alias: String,
        strategy: Strategy,
        share: Option<f64>,
    },
    /// An external program with declared deps and outs.
    Command {
        run: Run,
        deps: Vec<PathBuf>,
        outs: Vec<PathBuf>,
        env: BTreeMap<String, String>,
    },
}

impl Kind {
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Ingest { .. } => "ingest",
            Kind::Validate => "validate",
            Kind::Train { .. } => "train",
            Kind::Import { .. } => "import",
            Kind::Gate { .. } => "gate",
            Kind::Deploy { .. } => "deploy",
            Kind::Command { .. } => "command",
        }
    }

    /// Whether the stage produces a model version (a candidate).
    pub fn makes_model(&self) -> bool {
        matches!(self, Kind::Train { .. } | Kind::Import { .. })
    }
}

pub use crate::rollout::Strategy;

/// A command: through `sh -c`, or an argument vector run as it is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Run {
    Shell(String),
    Argv(Vec<String>),
}

/// The gates a gate stage can check.
pub const GATES: [&str; 3] = ["beats_baseline", "vs_champion", "latency"];

const KINDS: &str = "ingest, validate, train, import, gate, deploy, command";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Section {
    name: Option<String>,
    source: Option<PathBuf>,
    stages: Option<Vec<toml::Table>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IngestKeys {
    dataset: Option<String>,
    path: PathBuf,
    #[serde(default)]
    append: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ValidateKeys {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrainKeys {
    #[serde(default)]
    set: toml::Table,
    register: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportKeys {
    file: PathBuf,
    schema: PathBuf,
    model: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GateKeys {
    gates: Option<Vec<String>>,
    margin: Option<f64>,
    max_latency_ms: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeployKeys {
    alias: Option<String>,
    strategy: Option<String>,
    share: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandKeys {
    run: Run,
    #[serde(default)]
    deps: Vec<PathBuf>,
    #[serde(default)]
    outs: Vec<PathBuf>,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

fn keys_of(kind: &str) -> &'static str {
    match kind {
        "ingest" => "dataset, path, append",
        "validate" => "(none)",
        "train" => "set, register",
        "import" => "file, schema, model",
        "gate" => "gates, margin, max_latency_ms",
        "deploy" => "alias, strategy, share",
        _ => "run, deps, outs, env",
    }
}

/// `[train] dataset` without a version.
fn train_dataset(config: &Config) -> Option<String> {
    config
        .train
        .get("dataset")
        .and_then(|v| v.as_str())
        .map(|d| d.split('@').next().unwrap_or(d).to_owned())
}

impl PipelineConfig {
    /// Reads `[pipeline]` of `config`; without stages, derives the default pipeline.
    pub fn from_config(config: &Config) -> Result<Self, AutomateError> {
        let err = |m: String| AutomateError::Input(m);
        let s: Section = toml::Value::Table(config.pipeline.clone())
            .try_into()
            .map_err(|e: toml::de::Error| err(format!("[pipeline]: {}", e.message().trim())))?;
        let name = s.name.unwrap_or_else(|| "default".into());
        kiln_core::names::validate_name("pipeline", &name)
            .map_err(|e| err(format!("[pipeline] name: {e}")))?;
        let tables = s.stages.unwrap_or_default();
        if tables.is_empty() {
            return Ok(Self {
                name,
                stages: Self::derived(config, s.source)?,
                derived: true,
            });
        }
        if s.source.is_some() {
            return Err(err(
                "[pipeline] source names the default pipeline's data file, but [[pipeline.stages]] are declared\nhint: give the ingest stage its `path` instead".into(),
            ));
        }
        let mut stages = Vec::new();
        let mut names = BTreeSet::new();
        for (i, table) in tables.into_iter().enumerate() {
            let stage = Self::stage(config, i, table)?;
            if !names.insert(stage.name.clone()) {
                return Err(err(format!(
                    "[[pipeline.stages]] #{}: two stages are named `{}`\nhint: stage names are unique; they key the cache",
                    i + 1,
                    stage.name
                )));
            }
            stages.push(stage);
        }
        let p = Self {
            name,
            stages,
            derived: false,
        };
        p.check_order()?;
        Ok(p)
    }

    /// ingest + validate of `source` (when given), train, gate, deploy.
    fn derived(config: &Config, source: Option<PathBuf>) -> Result<Vec<Stage>, AutomateError> {
        let d = AutomateConfig::default();
        let mut stages = Vec::new();
        if let Some(path) = source {
            let dataset = train_dataset(config).ok_or_else(|| {
                AutomateError::Input(
                    "[pipeline] source: which dataset does it go to?\nhint: set `dataset` in [train]".into(),
                )
            })?;
            stages.push(Stage {
                name: "ingest".into(),
                kind: Kind::Ingest {
                    dataset,
                    path,
                    append: false,
                },
            });
            stages.push(Stage {
                name: "validate".into(),
                kind: Kind::Validate,
            });
        }
        stages.extend([
            Stage {
                name: "train".into(),
                kind: Kind::Train {
                    set: toml::Table::new(),
                    register: None,
                },
            },
            Stage {
                name: "gate".into(),
                kind: Kind::Gate {
                    gates: GATES.iter().map(|g| (*g).to_owned()).collect(),
                    margin: d.margin,
                    max_latency_ms: d.max_latency_ms,
                },
            },
            Stage {
                name: "deploy".into(),
                kind: Kind::Deploy {
                    alias: d.alias,
                    strategy: Strategy::Direct,
                    share: None,
                },
            },
        ]);
        Ok(stages)
    }

    fn stage(config: &Config, i: usize, mut table: toml::Table) -> Result<Stage, AutomateError> {
        let at = |name: &str| format!("[[pipeline.stages]] #{} `{name}`", i + 1);
        let name = match table.remove("name") {
            Some(toml::Value::String(n)) => n,
            Some(other) => {
                return Err(AutomateError::Input(format!(
                    "[[pipeline.stages]] #{}: name = {other} is not a string",
                    i + 1
                )));
            }
            None => {
                return Err(AutomateError::Input(format!(
                    "[[pipeline.stages]] #{}: no `name`\nhint: every stage has a unique name, e.g. name = \"train\"",
                    i + 1
                )));
            }
        };
        kiln_core::names::validate_name("stage", &name)
            .map_err(|e| AutomateError::Input(format!("[[pipeline.stages]] #{}: {e}", i + 1)))?;
        let kind = match table.remove("kind") {
            Some(toml::Value::String(k)) => k,
            _ => {
                return Err(AutomateError::Input(format!(
                    "{}: no `kind`\nhint: kind is one of {KINDS}",
                    at(&name)
                )));
            }
        };
        let label = at(&name);
        let parse = |what: &'static str| {
            let kind_keys = keys_of(what);
            let label = label.clone();
            move |e: toml::de::Error| {
                AutomateError::Input(format!(
                    "{label} (kind {what}): {}\nhint: keys of a {what} stage: name, kind, {kind_keys}",
                    e.message().trim()
                ))
            }
        };
        let bad = |m: String| AutomateError::Input(format!("{label} (kind {kind}): {m}"));
        let value = toml::Value::Table(table);
        let kind = match kind.as_str() {
            "ingest" => {
                let k: IngestKeys = value.try_into().map_err(parse("ingest"))?;
                let dataset = k.dataset.or_else(|| train_dataset(config)).ok_or_else(|| {
                    bad("no `dataset`\nhint: name the dataset the file is added to, or set `dataset` in [train]".into())
                })?;
                kiln_core::names::validate_name("dataset", &dataset)
                    .map_err(|e| bad(e.to_string()))?;
                Kind::Ingest {
                    dataset,
                    path: k.path,
                    append: k.append,
                }
            }
            "validate" => {
                let _: ValidateKeys = value.try_into().map_err(parse("validate"))?;
                Kind::Validate
            }
            "train" => {
                let k: TrainKeys = value.try_into().map_err(parse("train"))?;
                // The merged settings must make a training spec now, not halfway through a run.
                kiln_train::spec::TrainSpec::resolve(
                    &crate::controller::merged_train(&config.train, &k.set),
                    &[],
                )
                .map_err(|e| bad(format!("`set` over [train]: {e}")))?;
                if let Some(r) = &k.register {
                    kiln_core::names::validate_name("model", r)
                        .map_err(|e| bad(format!("register: {e}")))?;
                }
                Kind::Train {
                    set: k.set,
                    register: k.register,
                }
            }
            "import" => {
                let k: ImportKeys = value.try_into().map_err(parse("import"))?;
                if let Some(m) = &k.model {
                    kiln_core::names::validate_name("model", m)
                        .map_err(|e| bad(format!("model: {e}")))?;
                }
                Kind::Import {
                    file: k.file,
                    schema: k.schema,
                    model: k.model,
                }
            }
            "gate" => {
                let k: GateKeys = value.try_into().map_err(parse("gate"))?;
                let d = AutomateConfig::default();
                let gates = k
                    .gates
                    .unwrap_or_else(|| GATES.iter().map(|g| (*g).to_owned()).collect());
                for g in &gates {
                    if !GATES.contains(&g.as_str()) {
                        return Err(bad(format!(
                            "gates: unknown gate `{g}`\nhint: gates are {} (data validation is the validate stage)",
                            GATES.join(", ")
                        )));
                    }
                }
                let margin = k.margin.unwrap_or(d.margin);
                if !(margin > -1.0 && margin < 1.0) {
                    return Err(bad(format!(
                        "margin = {margin}: a fraction in (-1, 1): 0.02, the candidate must beat the champion by 2%; -0.05, it may trail it by 5%"
                    )));
                }
                let max_latency_ms = k.max_latency_ms.unwrap_or(d.max_latency_ms);
                if !(max_latency_ms > 0.0 && max_latency_ms.is_finite()) {
                    return Err(bad(format!(
                        "max_latency_ms = {max_latency_ms}: a positive number of milliseconds"
                    )));
                }
                Kind::Gate {
                    gates,
                    margin,
                    max_latency_ms,
                }
            }
            "deploy" => {
                let k: DeployKeys = value.try_into().map_err(parse("deploy"))?;
                let strategy = match k.strategy.as_deref() {
                    None => Strategy::Direct,
                    Some(t) => Strategy::parse(t).ok_or_else(|| {
                        bad(format!("strategy = \"{t}\": use direct, shadow or canary"))
                    })?,
                };
                if let Some(share) = k.share {
                    if strategy != Strategy::Canary {
                        return Err(bad(
                            "share is the canary's share of requests; set strategy = \"canary\" or remove it".into(),
                        ));
                    }
                    if !(share > 0.0 && share < 1.0) {
                        return Err(bad(format!(
                            "share = {share}: a share of requests in (0, 1), e.g. 0.1"
                        )));
                    }
                }
                let alias = k.alias.unwrap_or_else(|| "production".into());
                kiln_core::names::validate_name("alias", &alias)
                    .map_err(|e| bad(format!("alias: {e}")))?;
                Kind::Deploy {
                    alias,
                    strategy,
                    share: k.share,
                }
            }
            "command" => {
                let k: CommandKeys = value.try_into().map_err(parse("command"))?;
                match &k.run {
                    Run::Shell(s) if s.trim().is_empty() => {
                        return Err(bad("run is empty".into()));
                    }
                    Run::Argv(a) if a.first().is_none_or(|p| p.is_empty()) => {
                        return Err(bad(
                            "run = [] names no program\nhint: run = [\"python3\", \"train.py\"]"
                                .into(),
                        ));
                    }
                    _ => {}
                }
                for p in k.deps.iter().chain(&k.outs) {
                    if p.is_absolute()
                        || p.components().any(|c| c == std::path::Component::ParentDir)
                    {
                        return Err(bad(format!(
                            "{}: deps and outs are paths inside the project folder (relative to kiln.toml)",
                            p.display()
                        )));
                    }
                }
                if let Some(p) = k.outs.iter().find(|o| k.deps.contains(o)) {
                    return Err(bad(format!(
                        "{} is both a dep and an out\nhint: a stage that rewrites its own input would never be fresh",
                        p.display()
                    )));
                }
                Kind::Command {
                    run: k.run,
                    deps: k.deps,
                    outs: k.outs,
                    env: k.env,
                }
            }
            other => {
                return Err(AutomateError::Input(format!(
                    "{}: kind = \"{other}\" is not a stage kind\nhint: kind is one of {KINDS}",
                    at(&name)
                )));
            }
        };
        Ok(Stage { name, kind })
    }

    /// Stages that consume an earlier stage's result need one before them.
    fn check_order(&self) -> Result<(), AutomateError> {
        for (i, s) in self.stages.iter().enumerate() {
            let before = &self.stages[..i];
            let need = |what: &str, ok: bool| {
                if ok {
                    Ok(())
                } else {
                    Err(AutomateError::Input(format!(
                        "[[pipeline.stages]] #{} `{}` (kind {}): needs {what} before it\nhint: stages run in the order they are declared",
                        i + 1,
                        s.name,
                        s.kind.name()
                    )))
                }
            };
            match s.kind {
                Kind::Validate => need(
                    "an ingest stage",
                    before.iter().any(|b| matches!(b.kind, Kind::Ingest { .. })),
                )?,
                Kind::Gate { .. } | Kind::Deploy { .. } => need(
                    "a train or import stage (the candidate)",
                    before.iter().any(|b| b.kind.makes_model()),
                )?,
                _ => {}
            }
        }
        Ok(())
    }

    /// The index of the last stage before `i` that `pred` accepts.
    pub fn last_before(&self, i: usize, pred: impl Fn(&Kind) -> bool) -> Option<usize> {
        self.stages[..i].iter().rposition(|s| pred(&s.kind))
    }

    /// The alias a candidate made at stage `i` is compared with and deployed to: that of the
    /// first deploy stage after it, else `production`.
    pub fn champion_alias(&self, i: usize) -> String {
        self.stages[i + 1..]
            .iter()
            .find_map(|s| match &s.kind {
                Kind::Deploy { alias, .. } => Some(alias.clone()),
                _ => None,
            })
            .unwrap_or_else(|| "production".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PipelineConfig, AutomateError> {
        let config = Config::parse(text, std::path::Path::new("kiln.toml")).unwrap();
        PipelineConfig::from_config(&config)
    }

    #[test]
    fn the_default_pipeline_comes_from_kiln_toml() {
        let p =
            parse("[train]\ndataset = \"bikes@2\"\n[pipeline]\nsource = \"data/h.csv\"\n").unwrap();
        assert!(p.derived);
        assert_eq!(p.name, "default");
        let kinds: Vec<&str> = p.stages.iter().map(|s| s.kind.name()).collect();
        assert_eq!(kinds, ["ingest", "validate", "train", "gate", "deploy"]);
        assert_eq!(
            p.stages[0].kind,
            Kind::Ingest {
                dataset: "bikes".into(),
                path: "data/h.csv".into(),
                append: false
            }
        );
        let p = parse("").unwrap();
        let kinds: Vec<&str> = p.stages.iter().map(|s| s.kind.name()).collect();
        assert_eq!(kinds, ["train", "gate", "deploy"]);
        assert_eq!(p.champion_alias(0), "production");
    }

    #[test]
    fn the_template_example_parses() {
        let t = kiln_core::config::TEMPLATE;
        let start = t.find("# [pipeline]\n").unwrap();
        let text: String = t[start..]
            .lines()
            .take_while(|l| l.starts_with('#'))
            .map(|l| format!("{}\n", l.trim_start_matches('#').trim_start()))
            .collect();
        let p = parse(&format!("[train]\ndataset = \"bikes\"\n{text}")).unwrap();
        let kinds: Vec<&str> = p.stages.iter().map(|s| s.kind.name()).collect();
        assert_eq!(
            kinds,
            [
                "ingest", "validate", "train", "command", "import", "gate", "deploy"
            ]
        );
    }

    #[test]
    fn declared_stages_are_parsed_with_their_settings() {
        let p = parse(
            r#"
[pipeline]
name = "nightly"
[[pipeline.stages]]
name = "load"
kind = "ingest"
dataset = "bikes"
path = "a.csv"
[[pipeline.stages]]
name = "check"
kind = "validate"
[[pipeline.stages]]
name = "fit"
kind = "train"
set = { gbdt.iterations = 5 }
[[pipeline.stages]]
name = "py"
kind = "command"
run = ["python3", "t.py"]
deps = ["t.py"]
outs = ["m.onnx"]
env = { SEED = "1" }
[[pipeline.stages]]
name = "judge"
kind = "gate"
gates = ["latency"]
max_latency_ms = 5.0
[[pipeline.stages]]
name = "ship"
kind = "deploy"
alias = "staging"
"#,
        )
        .unwrap();
        assert_eq!(p.name, "nightly");
        assert!(!p.derived);
        match &p.stages[2].kind {
            Kind::Train { set, register } => {
                assert_eq!(set["gbdt"]["iterations"].as_integer(), Some(5));
                assert_eq!(register, &None);
            }
            k => panic!("{k:?}"),
        }
        assert_eq!(
            p.stages[3].kind,
            Kind::Command {
                run: Run::Argv(vec!["python3".into(), "t.py".into()]),
                deps: vec!["t.py".into()],
                outs: vec!["m.onnx".into()],
                env: [("SEED".to_owned(), "1".to_owned())].into(),
            }
        );
        assert_eq!(p.champion_alias(2), "staging");
        assert_eq!(p.last_before(4, Kind::makes_model), Some(2));
        assert_eq!(
            p.last_before(2, |k| matches!(k, Kind::Ingest { .. })),
            Some(0)
        );
    }

    #[test]
    fn mistakes_name_the_stage_and_key() {
        let stage = |body: &str| format!("[[pipeline.stages]]\n{body}\n");
        let train = stage("name = \"t\"\nkind = \"train\"");
        for (text, needles) in [
            (
                "[pipeline]\nstagez = []\n".to_owned(),
                &["[pipeline]", "stagez"][..],
            ),
            (
                "[pipeline]\n".to_owned() + &stage("kind = \"train\""),
                &["#1", "no `name`"],
            ),
            (
                "[pipeline]\n".to_owned() + &stage("name = \"t\""),
                &["`t`", "no `kind`", "ingest, validate"],
            ),
            (
                "[pipeline]\n".to_owned() + &stage("name = \"t\"\nkind = \"bake\""),
                &["`t`", "\"bake\"", "not a stage kind"],
            ),
            (
                "[pipeline]\n".to_owned() + &stage("name = \"t\"\nkind = \"train\"\nsett = 1"),
                &[
                    "`t`",
                    "sett",
                    "keys of a train stage: name, kind, set, register",
                ],
            ),
            (
                "[pipeline]\n".to_owned()
                    + &stage("name = \"t\"\nkind = \"train\"\nset = { gbdt.iterations = 0 }"),
                &["`t`", "`set` over [train]", "gbdt.iterations"],
            ),
            (
                "[pipeline]\n".to_owned() + &train + &train,
                &["#2", "two stages are named `t`"],
            ),
            (
                "[pipeline]\n".to_owned()
                    + &train
                    + &stage("name = \"g\"\nkind = \"gate\"\nmargin = 2.0"),
                &["`g`", "margin = 2", "(-1, 1)"],
            ),
            (
                "[pipeline]\n".to_owned()
                    + &train
                    + &stage("name = \"g\"\nkind = \"gate\"\ngates = [\"speed\"]"),
                &["`g`", "unknown gate `speed`"],
            ),
            (
                "[pipeline]\n".to_owned()
                    + &train
                    + &stage("name = \"d\"\nkind = \"deploy\"\nstrategy = \"blue\""),
                &["`d`", "\"blue\"", "direct, shadow or canary"],
            ),
            (
                "[pipeline]\n".to_owned()
                    + &train
                    + &stage("name = \"d\"\nkind = \"deploy\"\nshare = 0.2"),
                &["`d`", "set strategy = \"canary\""],
            ),
            (
                "[pipeline]\n".to_owned() + &stage("name = \"d\"\nkind = \"deploy\""),
                &["`d`", "needs a train or import stage"],
            ),
            (
                "[pipeline]\n".to_owned() + &stage("name = \"v\"\nkind = \"validate\""),
                &["`v`", "needs an ingest stage"],
            ),
            (
                "[pipeline]\n".to_owned() + &stage("name = \"c\"\nkind = \"command\"\nrun = []"),
                &["`c`", "names no program"],
            ),
            (
                "[pipeline]\n".to_owned()
                    + &stage("name = \"c\"\nkind = \"command\"\nrun = \"x\"\nouts = [\"../o\"]"),
                &["`c`", "../o", "inside the project"],
            ),
            (
                "[pipeline]\n".to_owned()
                    + &stage(
                        "name = \"c\"\nkind = \"command\"\nrun = \"x\"\ndeps = [\"o\"]\nouts = [\"o\"]",
                    ),
                &["`c`", "both a dep and an out"],
            ),
            (
                "[pipeline]\n".to_owned()
                    + &stage("name = \"i\"\nkind = \"ingest\"\npath = \"a.csv\""),
                &["`i`", "no `dataset`"],
            ),
            (
                "[pipeline]\nsource = \"a.csv\"\n".to_owned(),
                &["source", "set `dataset` in [train]"],
            ),
            (
                "[pipeline]\nname = \"../x\"\n".to_owned(),
                &["[pipeline] name"],
            ),
        ] {
            let e = parse(&text).unwrap_err().to_string();
            for n in needles {
                assert!(e.contains(n), "{text}\n-> {e}\n(missing {n})");
            }
        }
    }
}
