//! `sluice init DIR`: a new project.

use super::{EXIT_OK, Globals, Outcome, output};
use crate::scaffold;
use std::path::Path;

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Where the project goes: a new or empty folder (`.` for this one).
    dir: std::path::PathBuf,
    /// What its job reads: a CSV file per day, or a script's output (an extract step).
    #[arg(long, value_enum, default_value_t)]
    template: TemplateArg,
}

/// `--template`, as clap reads it.
#[derive(Debug, Clone, Copy, Default, clap::ValueEnum)]
enum TemplateArg {
    /// One CSV file per day.
    #[default]
    Files,
    /// What a script writes to its standard output (`scripts/fetch_visits.sh`).
    Command,
}

pub fn init(g: &Globals, args: InitArgs) -> Outcome {
    let dir: &Path = &args.dir;
    let template = match args.template {
        TemplateArg::Files => scaffold::Template::Files,
        TemplateArg::Command => scaffold::Template::Command,
    };
    let files = scaffold::init(dir, template)?;
    if g.output == output::Format::Json {
        println!(
            "{}",
            output::json(&serde_json::json!({
                "project": dir.display().to_string(),
                "files": files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
                "job": scaffold::JOB,
            }))
        );
        return Ok(EXIT_OK);
    }
    println!("created a sluice project in {}:", dir.display());
    for f in &files {
        println!("  {}", f.display());
    }
    let shown = dir.display().to_string();
    let cd = if shown.contains(char::is_whitespace) {
        format!("cd '{shown}'")
    } else {
        format!("cd {shown}")
    };
    println!(
        "\nnext:\n  {cd}\n  sluice validate\n  sluice test\n  sluice migrate\n  sluice backfill --from {} --to {}\n  sluice query \"SELECT * FROM {} ORDER BY dt, page\"",
        scaffold::FIRST_DAY,
        scaffold::LAST_DAY,
        scaffold::JOB
    );
    Ok(EXIT_OK)
}
