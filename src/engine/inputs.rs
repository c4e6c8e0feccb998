//! Registering a partition's inputs in its session: a template's files (without their
//! bad rows when a scan found some), a command's output, an upstream table, or the rows a
//! job test gives in their place.

use super::scratch::{self, Scratch};
use super::upstream::register_upstream;
use super::{
    Engine, EngineError, FileFixture, FilesAt, PartitionQuery, TextFile, columns_schema, input_err,
};
use crate::config::EngineKind;
use crate::job::{CsvOptions, Extract, FileFormat, InputSource, Job};
use crate::names::Name;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::datafusion::prelude::{
    CsvReadOptions, JsonReadOptions, ParquetReadOptions, SessionContext,
};
use std::path::{Path, PathBuf};

/// The inputs registered for a partition's query.
pub(super) struct Registered {
    pub text_files: Vec<TextFile>,
    pub scratch: Scratch,
}

/// Where an extract's rows are (a command's output, a query's rows, or the file a job test
/// gives in their place: a database input's read by its extension), how they are named in
/// dead letters, and their format; `None` once the rows a job test gives are registered.
fn extracted(
    ctx: &SessionContext,
    q: &PartitionQuery<'_>,
    input: &crate::job::Input,
    extract: &Extract<'_>,
) -> Result<Option<(PathBuf, Option<String>, FileFormat)>, EngineError> {
    let name = &input.name;
    match q.file_fixtures.get(name) {
        Some(FileFixture::Rows(rows)) => {
            ctx.register_table(name.as_str(), rows.clone())
                .map_err(|e| input_err(name, e))?;
            Ok(None)
        }
        Some(FileFixture::File(p)) => {
            let format = match input.source {
                InputSource::Database(_) => fixture_format(p),
                _ => extract.format,
            };
            Ok(Some((p.clone(), None, format)))
        }
        None => {
            let out = q
                .command_outputs
                .get(name)
                .ok_or_else(|| EngineError::Input {
                    input: name.to_string(),
                    message: "its rows have not been fetched (a job test never runs an extract: give its rows in [test.inputs.NAME])".into(),
                })?;
            Ok(Some((
                out.path.to_path_buf(),
                Some(out.shown.clone()),
                extract.format,
            )))
        }
    }
}

/// A job test's file, read by its extension.
fn fixture_format(path: &Path) -> FileFormat {
    match super::file_extension(path).to_ascii_lowercase().as_str() {
        ".parquet" => FileFormat::Parquet,
        ".json" | ".jsonl" | ".ndjson" => FileFormat::Json,
        ".arrow" | ".arrows" | ".ipc" => FileFormat::Arrow,
        _ => FileFormat::Csv,
    }
}

/// One file input to register: where it is, how it is named, how it is read.
struct InputFile<'q> {
    name: &'q Name,
    path: PathBuf,
    shown: Option<String>,
    format: FileFormat,
    schema: Option<SchemaRef>,
    csv: &'q CsvOptions,
    is_glob: bool,
}

/// Registers an Arrow or Parquet file (a command's output) as `name`, its columns cast to
/// the declared ones: a program's types need only cast to them (checked before: see
/// `command_input::check_schema`), and the query sees the declared schema.
async fn register_cast(
    ctx: &SessionContext,
    name: &Name,
    path: &Path,
    format: FileFormat,
    schema: &SchemaRef,
) -> Result<(), EngineError> {
    use deltalake::datafusion::common::Column;
    use deltalake::datafusion::datasource::file_format::options::ArrowReadOptions;
    use deltalake::datafusion::prelude::{cast, col};
    let at = path.display().to_string();
    let ext = crate::command_input::extension(format);
    let df = match format {
        FileFormat::Arrow => {
            let o = ArrowReadOptions {
                file_extension: ext,
                ..Default::default()
            };
            ctx.read_arrow(at, o).await
        }
        _ => {
            ctx.read_parquet(at, ParquetReadOptions::default().file_extension(ext))
                .await
        }
    }
    .map_err(|e| input_err(name, e))?;
    let columns = schema.fields().iter().map(|f| {
        cast(
            col(Column::new_unqualified(f.name())),
            f.data_type().clone(),
        )
        .alias(f.name())
    });
    let df = df.select(columns).map_err(|e| input_err(name, e))?;
    ctx.register_table(name.as_str(), df.into_view())
        .map_err(|e| input_err(name, e))?;
    Ok(())
}

impl Engine {
    /// Registers each input of the partition in `ctx` under its name; returns the CSV and
    /// JSON files registered (for the bad-row scan) and the scratch files made.
    pub(super) async fn register_inputs(
        &self,
        ctx: &SessionContext,
        q: &PartitionQuery<'_>,
    ) -> Result<Registered, EngineError> {
        let mut text_files = Vec::new();
        let mut scratch = Scratch::default();
        let on_cluster = self.kind_of(q.job) == EngineKind::Ballista;
        for input in &q.job.inputs {
            match &input.source {
                InputSource::Files {
                    template,
                    format,
                    schema,
                    csv,
                } => {
                    if let Some(FileFixture::Rows(rows)) = q.file_fixtures.get(&input.name) {
                        ctx.register_table(input.name.as_str(), rows.clone())
                            .map_err(|e| input_err(&input.name, e))?;
                        continue;
                    }
                    let (rel, path) = self.file_location(q, &input.name, template)?;
                    let is_glob = rel.contains(['*', '?', '[']);
                    if !is_glob && !path.exists() {
                        return Err(EngineError::InputMissing {
                            input: input.name.to_string(),
                            path: rel,
                            template: template.clone(),
                        });
                    }
                    let file = InputFile {
                        name: &input.name,
                        path,
                        shown: None,
                        format: *format,
                        schema: schema.as_ref().map(|cols| columns_schema(cols)),
                        csv,
                        is_glob,
                    };
                    self.register_file_input(ctx, q, file, &mut text_files, &mut scratch)
                        .await?;
                }
                InputSource::Command(_) | InputSource::Database(_) => {
                    let Some(extract) = input.source.extract() else {
                        continue;
                    };
                    let Some((path, shown, format)) = extracted(ctx, q, input, &extract)? else {
                        continue;
                    };
                    let schema = columns_schema(extract.schema);
                    if matches!(format, FileFormat::Arrow | FileFormat::Parquet) {
                        register_cast(ctx, &input.name, &path, format, &schema).await?;
                        continue;
                    }
                    let file = InputFile {
                        name: &input.name,
                        path,
                        shown,
                        format,
                        schema: Some(schema),
                        csv: &extract.csv,
                        is_glob: false,
                    };
                    self.register_file_input(ctx, q, file, &mut text_files, &mut scratch)
                        .await?;
                }
                InputSource::Table { .. } => {
                    let up = q
                        .upstream
                        .iter()
                        .find(|u| u.name == input.name)
                        .ok_or_else(|| EngineError::Input {
                            input: input.name.to_string(),
                            message: "the upstream table was not resolved (this is likely a bug)"
                                .into(),
                        })?;
                    register_upstream(ctx, up, on_cluster).await?;
                }
            }
        }
        Ok(Registered {
            text_files,
            scratch,
        })
    }

    /// Registers one file input (a template's files, or a command's output): read with its
    /// declared schema, without its bad rows when a scan found some; a CSV or JSON file
    /// with a schema is listed for that scan.
    async fn register_file_input(
        &self,
        ctx: &SessionContext,
        q: &PartitionQuery<'_>,
        file: InputFile<'_>,
        text_files: &mut Vec<TextFile>,
        scratch: &mut Scratch,
    ) -> Result<(), EngineError> {
        let on_cluster = self.kind_of(q.job) == EngineKind::Ballista;
        let InputFile {
            name,
            path,
            shown,
            format,
            schema: arrow_schema,
            csv,
            is_glob,
        } = file;
        if let Some(bad) = q
            .without_bad_rows
            .as_ref()
            .filter(|b| b.of_input(name.as_str()) > 0)
        {
            let Some(s) = &arrow_schema else {
                return Err(EngineError::Input {
                    input: name.to_string(),
                    message: "bad rows can be left out only of an input with a declared `schema`"
                        .into(),
                });
            };
            // A copy without them, read like the original. It lives as long as
            // the query (`scratch`).
            let original = scratch::Original {
                path: &path,
                format,
                csv,
                input: name,
            };
            let shared = self.shared_scratch.as_ref().filter(|_| on_cluster);
            let at = scratch.without_bad_rows(ctx, shared, original, bad).await?;
            self.register_files(ctx, name, at, format, Some(s), csv)
                .await?;
            return Ok(());
        }
        self.register_files(
            ctx,
            name,
            FilesAt::path(&path),
            format,
            arrow_schema.as_ref(),
            csv,
        )
        .await?;
        if matches!(format, FileFormat::Csv | FileFormat::Json)
            && !is_glob
            && let Some(s) = arrow_schema
        {
            text_files.push(TextFile {
                input: name.clone(),
                path,
                shown,
                schema: s,
                format,
                options: csv.clone(),
            });
        }
        Ok(())
    }

    /// Where a file input of the partition is: the file a job test gives in its place, or
    /// its template resolved for the key; as written (relative) and as a path.
    fn file_location(
        &self,
        q: &PartitionQuery<'_>,
        name: &Name,
        template: &str,
    ) -> Result<(String, PathBuf), EngineError> {
        if let Some(FileFixture::File(p)) = q.file_fixtures.get(name) {
            return Ok((p.display().to_string(), p.clone()));
        }
        let rel = Job::resolve_template(template, &q.key).map_err(|m| EngineError::Input {
            input: name.to_string(),
            message: m,
        })?;
        let path = self.root.join(&rel);
        Ok((rel, path))
    }

    async fn register_files(
        &self,
        ctx: &SessionContext,
        name: &Name,
        at: FilesAt,
        format: FileFormat,
        schema: Option<&SchemaRef>,
        csv: &CsvOptions,
    ) -> Result<(), EngineError> {
        let FilesAt {
            location: path_str,
            extension: ext,
        } = at;
        let r = match format {
            FileFormat::Csv => {
                let mut o = CsvReadOptions::new()
                    .has_header(csv.header)
                    .delimiter(csv.delimiter)
                    .file_extension(&ext);
                if let Some(s) = schema {
                    o = o.schema(s);
                }
                ctx.register_csv(name.as_str(), &path_str, o).await
            }
            FileFormat::Parquet => {
                let mut o = ParquetReadOptions::default().file_extension(&ext);
                if let Some(s) = schema {
                    o = o.schema(s);
                }
                ctx.register_parquet(name.as_str(), &path_str, o).await
            }
            FileFormat::Json => {
                let mut o = JsonReadOptions::default().file_extension(&ext);
                if let Some(s) = schema {
                    o = o.schema(s);
                }
                ctx.register_json(name.as_str(), &path_str, o).await
            }
            FileFormat::Arrow => {
                let o = deltalake::datafusion::datasource::file_format::options::ArrowReadOptions {
                    file_extension: &ext,
                    schema: schema.map(|s| s.as_ref()),
                    ..Default::default()
                };
                ctx.register_arrow(name.as_str(), &path_str, o).await
            }
        };
        r.map_err(|e| input_err(name, e))
    }
}
