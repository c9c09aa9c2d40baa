//! `kiln doctor`: checks the whole store and says what to repair.

use clap::Args;
use kiln_store::doctor::{Severity, check};

use crate::GlobalArgs;
use crate::context::open;
use crate::output::{CliError, Spinner, count, mebibytes, print_json, table};

#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// Print the checkup as JSON
    #[arg(long)]
    pub json: bool,
}

pub async fn run(global: &GlobalArgs, a: DoctorArgs) -> Result<(), CliError> {
    let project = open(global).await?;
    let spinner = Spinner::new(global, a.json);
    let shown = spinner.clone();
    let checkup = check(&project.store, &project.scratch(), &move |done, total| {
        kiln_train::train::Steps::step(&shown, &format!("verifying artifacts {done}/{total}"));
    })
    .await?;
    spinner.finish();
    let errors = checkup.has_errors();
    if a.json {
        print_json(&checkup)?;
    } else {
        println!(
            "schema v{}; {} artifacts ({}) hashed; {} dataset versions, {} runs, {} model versions, {} aliases, {} log archives checked",
            checkup.schema_version,
            count(checkup.artifacts),
            mebibytes(checkup.artifact_bytes),
            count(checkup.dataset_versions),
            count(checkup.runs),
            count(checkup.model_versions),
            count(checkup.aliases),
            count(checkup.log_archives),
        );
        if !checkup.findings.is_empty() {
            let rows: Vec<Vec<String>> = checkup
                .findings
                .iter()
                .map(|f| {
                    vec![
                        match f.severity {
                            Severity::Error => "error".into(),
                            Severity::Note => "note".into(),
                        },
                        f.check.to_owned(),
                        f.subject.clone(),
                        f.message.clone(),
                        f.hint.clone(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(&["", "check", "subject", "finding", "what to do"], &rows)
            );
        }
        let notes = checkup.findings.len()
            - checkup
                .findings
                .iter()
                .filter(|f| f.severity == Severity::Error)
                .count();
        println!(
            "{}",
            if errors {
                "the store has errors (see above)".to_owned()
            } else if notes > 0 {
                format!("the store is consistent ({notes} note(s): nothing to repair)")
            } else {
                "the store is consistent".to_owned()
            }
        );
    }
    if errors {
        // The findings are printed; the exit code says the store needs repair.
        return Err(CliError {
            code: 1,
            message: "kiln doctor found errors".into(),
        });
    }
    Ok(())
}
