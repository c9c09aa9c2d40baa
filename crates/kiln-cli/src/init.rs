//! `kiln init [DIR]`: a commented kiln.toml and the home folder.

use std::path::PathBuf;

use clap::Args;
use kiln_core::config::{CONFIG_FILE, TEMPLATE};

use crate::GlobalArgs;
use crate::output::CliError;

/// The admin token's file in the home folder (what `kiln serve` reads by default).
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

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
    let token_path = home.join(ADMIN_TOKEN_FILE);
    let token_created = write_admin_token(&token_path)?;
    if !global.quiet {
        println!("created {}", config.display());
        println!("created home {}", home.display());
        if token_created {
            println!(
                "created admin token {} (readable by you only; `kiln serve` admin routes need it)",
                token_path.display()
            );
        }
        println!("next: kiln data add FILE --dataset NAME");
    }
    Ok(())
}

/// Writes a new random admin token to `path` with mode 0600, unless one exists (an existing
/// token is never replaced: clients may hold it). Returns whether it wrote one.
pub fn write_admin_token(path: &std::path::Path) -> Result<bool, CliError> {
    use std::io::{Read, Write};
    if path.exists() {
        return Ok(false);
    }
    let mut random = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut random))
        .map_err(|e| {
            CliError::system(format!("cannot read random bytes for the admin token: {e}"))
        })?;
    let token: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Created with owner-only permissions: never readable by others, not even briefly.
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| CliError::system(format!("cannot create {}: {e}", path.display())))?;
    file.write_all(format!("{token}\n").as_bytes())
        .and_then(|_| file.sync_all())
        .map_err(|e| CliError::system(format!("cannot write {}: {e}", path.display())))?;
    Ok(true)
}
