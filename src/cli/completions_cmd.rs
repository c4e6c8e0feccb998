//! `sluice completions SHELL`: the script clap writes from the commands' own definition,
//! and, for bash and fish, a layer over it that completes the project's job names, table
//! names and a job's partitions by asking `sluice __complete` (hidden) at each TAB.

use super::context::Context;
use super::{EXIT_OK, Globals, Outcome};
use clap::CommandFactory;
use clap_complete::Shell;

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell the script is for.
    #[arg(value_enum)]
    shell: Shell,
}

/// What `__complete` lists.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Names {
    Jobs,
    Tables,
    Partitions,
}

#[derive(Debug, clap::Args)]
pub struct NamesArgs {
    /// What to list.
    #[arg(value_enum)]
    what: Names,
    /// The job whose partitions to list.
    job: Option<String>,
}

/// The most partitions offered at one TAB (the newest).
const MAX_PARTITIONS: usize = 500;

pub fn completions(args: CompletionsArgs) -> Outcome {
    let mut command = super::Cli::command();
    let mut out = std::io::stdout();
    clap_complete::generate(args.shell, &mut command, "sluice", &mut out);
    match args.shell {
        Shell::Bash => print!("{}", bash_names(&command)),
        Shell::Fish => print!("{FISH_NAMES}"),
        _ => {}
    }
    Ok(EXIT_OK)
}

/// `sluice __complete jobs|tables|partitions [JOB]`: one name per line, nothing (and exit
/// 0) where there is nothing to offer, such as outside a project: a completion never
/// prints an error into the command line.
pub async fn names(g: &Globals, args: NamesArgs) -> Outcome {
    let Ok(project) = Context::load_project(&g.overrides) else {
        return Ok(EXIT_OK);
    };
    let names: Vec<String> = match args.what {
        Names::Jobs => project.jobs.keys().map(|n| n.to_string()).collect(),
        Names::Tables => {
            let mut t: Vec<String> = project.declared.keys().map(|n| n.to_string()).collect();
            t.extend(project.graph.writer.keys().map(|n| n.to_string()));
            t.sort();
            t.dedup();
            t
        }
        Names::Partitions => partitions(g, args.job.as_deref()).await,
    };
    for n in names {
        println!("{n}");
    }
    Ok(EXIT_OK)
}

/// The job's partitions the catalog has, newest first.
async fn partitions(g: &Globals, job: Option<&str>) -> Vec<String> {
    let Some(job) = job else { return Vec::new() };
    let Ok(cx) = Context::open(&g.overrides).await else {
        return Vec::new();
    };
    let Some(j) = cx.project.jobs.get(job) else {
        return Vec::new();
    };
    let rows = cx
        .catalog
        .partitions_of(j.table.as_str(), i64::from(j.version))
        .await
        .unwrap_or_default();
    let mut keys: Vec<String> = rows.into_iter().map(|r| r.partition_key).collect();
    keys.sort_by(|a, b| b.cmp(a));
    keys.truncate(MAX_PARTITIONS);
    cx.close().await;
    keys
}

/// Every option of every command that takes a value: after one, the word being completed
/// is its value, not a name.
fn options_with_values(cmd: &clap::Command, out: &mut Vec<String>) {
    for a in cmd.get_arguments() {
        if a.get_action().takes_values() && !a.is_positional() {
            out.extend(a.get_long().map(|l| format!("--{l}")));
            out.extend(a.get_short().map(|s| format!("-{s}")));
        }
    }
    for sub in cmd.get_subcommands() {
        options_with_values(sub, out);
    }
}

/// The bash layer: the word after `--partition`/`-p` is one of the job's partitions; the
/// first word that is not an option, after a command that takes a job or a table, is a job
/// or a table name; everything else goes to clap's `_sluice`.
fn bash_names(cmd: &clap::Command) -> String {
    let mut with_values = Vec::new();
    options_with_values(cmd, &mut with_values);
    with_values.sort();
    with_values.dedup();
    BASH_NAMES.replace("@WITH_VALUES@", &with_values.join(" "))
}

const BASH_NAMES: &str = r#"
# Names from the project: jobs, tables, a job's partitions (`sluice __complete`).
_sluice_names() {
    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"
    local sub="${COMP_WORDS[1]}" with_values=" @WITH_VALUES@ "
    local i word words=() project=()
    for ((i = 2; i < COMP_CWORD; i++)); do
        word="${COMP_WORDS[i]}"
        if [[ $word == --project ]]; then project=(--project "${COMP_WORDS[i+1]}"); fi
        if [[ $word == -* ]]; then
            [[ $with_values == *" $word "* ]] && ((i++))
            continue
        fi
        words+=("$word")
    done
    [[ $sub == dlq ]] && words=("${words[@]:1}")
    local kind="" job=""
    if [[ $prev == --partition || $prev == -p ]]; then
        kind=partitions
        job="${words[0]}"
    elif [[ $cur != -* && $with_values != *" $prev "* ]]; then
        case "$sub" in
            run|test|backfill) kind=jobs ;;
            status|dlq) [[ ${#words[@]} -eq 0 ]] && kind=jobs ;;
            profile|diff|resolve|history) [[ ${#words[@]} -eq 0 ]] && kind=tables ;;
            promote|rollback) kind=tables ;;
        esac
        [[ $sub == dlq && $COMP_CWORD -lt 3 ]] && kind=""
    fi
    if [[ -n $kind ]]; then
        local names
        names="$("${COMP_WORDS[0]}" "${project[@]}" __complete "$kind" $job 2>/dev/null)"
        COMPREPLY=($(compgen -W "$names" -- "$cur"))
        return 0
    fi
    _sluice "$@"
}
complete -F _sluice_names -o bashdefault -o default sluice
"#;

const FISH_NAMES: &str = r#"
# Names from the project: jobs, tables, a job's partitions (`sluice __complete`).
function __sluice_names
    sluice __complete $argv 2>/dev/null
end
complete -c sluice -n '__fish_seen_subcommand_from run test backfill status list replay' -f -a '(__sluice_names jobs)'
complete -c sluice -n '__fish_seen_subcommand_from profile diff resolve history promote rollback' -f -a '(__sluice_names tables)'
complete -c sluice -n '__fish_seen_subcommand_from run status list replay' -l partition -s p -x -a '(__sluice_names partitions (commandline -opc)[3])'
"#;
