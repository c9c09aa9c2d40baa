//! `kiln init [DIR]`: a commented kiln.toml and the home folder.

use std::path::PathBuf;

use clap::Args;
use kiln_core::config::{CONFIG_FILE, TEMPLATE};

use crate::GlobalArgs;
use crate::output::CliError;

#[derive(Args, Debug)]
pub struct InitArgs {
    /// Project folder (created if missing)
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Overwrite an existing kiln.toml
    #[arg(long)]
    pub force: bool,
}

pub fn run(global: &GlobalArgs, args: InitArgs) -> Result<(), CliError> {
    let dir = &args.dir;
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::system(format!("cannot create {}: {e}", dir.display())))?;
    let config = dir.join(CONFIG_FILE);
    if config.exists() && !args.force {
        return Err(CliError::input(format!(
            "{} already exists\nhint: pass --force to overwrite it",
            config.display()
        )));
    }
    let home = global.home.clone().unwrap_or_else(|| dir.join(".kiln"));
    std::fs::create_dir_all(&home)
        .map_err(|e| CliError::system(format!("cannot create {}: {e}", home.display())))?;
    // Write then rename: an interrupted init never leaves half a config file.
    let tmp = dir.join(format!(".{CONFIG_FILE}.tmp"));
    std::fs::write(&tmp, TEMPLATE)
        .and_then(|_| std::fs::rename(&tmp, &config))
        .map_err(|e| CliError::system(format!("cannot write {}: {e}", config.display())))?;
    if !global.quiet {
        println!("created {}", config.display());
        println!("created home {}", home.display());
        println!("next: kiln data add FILE --dataset NAME");
    }
    Ok(())
}
