//! `sluice query "SQL" [--as-of VERSION|TIME]`: results as a text table or JSON rows.

use super::context::Context;
use super::{EXIT_OK, EXIT_UNUSABLE, Globals, Outcome, output};
use crate::query::{self, QueryError};
use deltalake::arrow::util::display::{ArrayFormatter, FormatOptions};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The query: tables by their names (the aliases), e.g. "SELECT * FROM daily_revenue".
    sql: String,
    /// A time (2024-05-01T10:00:00Z or 2024-05-01): each alias and table as they were
    /// then; or a Delta version number of the tables read.
    #[arg(long, value_name = "VERSION|TIME")]
    as_of: Option<String>,
}

pub async fn run(g: &Globals, args: Args) -> Outcome {
    let (sql, as_of) = (args.sql.as_str(), args.as_of.as_deref());
    let as_of = match as_of.map(query::parse_as_of).transpose() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(EXIT_UNUSABLE);
        }
    };
    let cx = Context::open(&g.overrides).await?;
    let batches = match query::query(&cx.catalog, &cx.engine()?, sql, as_of).await {
        Ok(b) => b,
        Err(QueryError::Catalog(e)) => return Err(e.into()),
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(EXIT_UNUSABLE);
        }
    };
    if g.output == output::Format::Json {
        // Nulls are written out: a reader of the JSON sees every column of every row.
        let mut w = deltalake::arrow::json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, deltalake::arrow::json::writer::JsonArray>(Vec::new());
        let refs: Vec<_> = batches.iter().collect();
        w.write_batches(&refs)?;
        w.finish()?;
        let bytes = w.into_inner();
        let text = if bytes.is_empty() {
            "[]".to_string()
        } else {
            String::from_utf8_lossy(&bytes).into_owned()
        };
        let v: serde_json::Value = serde_json::from_str(&text)?;
        println!("{}", output::json(&v));
        return Ok(EXIT_OK);
    }
    let Some(first) = batches.first() else {
        println!("(no rows)");
        return Ok(EXIT_OK);
    };
    let schema = first.schema();
    let headers: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let fmt = FormatOptions::default().with_null("null");
    let mut rows = Vec::new();
    for b in &batches {
        let cols: Vec<_> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &fmt))
            .collect::<Result<_, _>>()?;
        for r in 0..b.num_rows() {
            rows.push(cols.iter().map(|c| c.value(r).to_string()).collect());
        }
    }
    print!("{}", output::table(&headers, &rows));
    println!("({} rows)", rows.len());
    Ok(EXIT_OK)
}
