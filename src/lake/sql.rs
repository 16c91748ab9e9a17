//! SQL over the log lake with DataFusion (feature `sql`).
//!
//! Tables, over every source at once (local log roots and `s3://` prefixes):
//! - `requests`: the request rows ([`crate::logstore::request_schema`]) plus
//!   the partition column `date` (Utf8 `YYYY-MM-DD`, from `date=` folders);
//!   a filter on `date` prunes whole partitions before any file is opened;
//! - `feedback`: the converted feedback ([`crate::logstore::feedback_schema`])
//!   plus `date`. The live journal of a local root is not a table: run
//!   `logs compact` first (a store holds Parquet only).
//!
//! Files are listed by DataFusion: a local root's temporaries (`.tmp-*`) and
//! `quarantine/` are not under the table folders or not `*.parquet`; files a
//! crashed compaction left beside their merged file are read twice until
//! `logs compact` runs again.

use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, SchemaRef};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::prelude::{SessionConfig, SessionContext};

use super::source::{LogSource, block_on};
use super::store::{self, Patience};
use super::{FEEDBACK_DIR, LakeError, REQUESTS_DIR, Result};
use crate::spec::config::StoreOptions;

/// The partition column of both tables.
pub const PARTITION_COLUMN: &str = "date";

/// How `logs query` prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Csv,
    /// A JSON array of objects.
    Json,
    /// A Parquet file (zstd).
    Parquet,
}

fn sql_err(e: impl std::fmt::Display) -> LakeError {
    LakeError::Sql(e.to_string())
}

/// Runs `sql` over `sources`; the result's schema and batches.
pub fn query(
    sources: &[PathBuf],
    opts: &StoreOptions,
    sql: &str,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let parsed = sources
        .iter()
        .map(|s| LogSource::parse(s))
        .collect::<Result<Vec<_>>>()?;
    let opts = opts.clone();
    let sql = sql.to_string();
    block_on(async move { run(parsed, &opts, &sql).await })?
}

async fn run(
    sources: Vec<LogSource>,
    opts: &StoreOptions,
    sql: &str,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_information_schema(true));
    let mut requests = Vec::new();
    let mut feedback = Vec::new();
    for src in &sources {
        match src {
            LogSource::Store(url) => {
                let client = store::open(url, opts, Patience::Reader)?;
                let bucket =
                    ObjectStoreUrl::parse(format!("s3://{}", url.bucket)).map_err(sql_err)?;
                ctx.register_object_store(bucket.as_ref(), client);
                for (dir, out) in [(REQUESTS_DIR, &mut requests), (FEEDBACK_DIR, &mut feedback)] {
                    let u = format!("s3://{}/{}/", url.bucket, url.key([dir]));
                    out.push(ListingTableUrl::parse(&u).map_err(sql_err)?);
                }
            }
            LogSource::Local(path) => {
                let path = std::fs::canonicalize(path).map_err(LakeError::io(path))?;
                let requests_dir = if path.join(REQUESTS_DIR).is_dir() {
                    path.join(REQUESTS_DIR)
                } else {
                    path.clone()
                };
                requests.push(local_url(&requests_dir)?);
                let fdir = path.join(FEEDBACK_DIR);
                if fdir.is_dir() {
                    feedback.push(local_url(&fdir)?);
                }
            }
        }
    }
    register(
        &ctx,
        "requests",
        requests,
        crate::logstore::request_schema(),
    )
    .await?;
    register(
        &ctx,
        "feedback",
        feedback,
        crate::logstore::feedback_schema(),
    )
    .await?;
    let df = ctx.sql(sql).await.map_err(sql_err)?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await.map_err(sql_err)?;
    Ok((schema, batches))
}

fn local_url(dir: &std::path::Path) -> Result<ListingTableUrl> {
    let mut s = dir.to_string_lossy().into_owned();
    if dir.is_dir() && !s.ends_with('/') {
        s.push('/');
    }
    ListingTableUrl::parse(&s).map_err(sql_err)
}

async fn register(
    ctx: &SessionContext,
    name: &str,
    paths: Vec<ListingTableUrl>,
    schema: SchemaRef,
) -> Result<()> {
    if paths.is_empty() {
        // No source has this table: an empty one, so queries still plan.
        let empty = datafusion::datasource::MemTable::try_new(with_date(&schema), vec![vec![]])
            .map_err(sql_err)?;
        ctx.register_table(name, Arc::new(empty)).map_err(sql_err)?;
        return Ok(());
    }
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(vec![(PARTITION_COLUMN.to_string(), DataType::Utf8)]);
    let config = ListingTableConfig::new_with_multi_paths(paths)
        .with_listing_options(options)
        .with_schema(schema);
    let table = ListingTable::try_new(config).map_err(sql_err)?;
    ctx.register_table(name, Arc::new(table)).map_err(sql_err)?;
    Ok(())
}

/// `schema` with the partition column appended (as a listing table shows it).
fn with_date(schema: &SchemaRef) -> SchemaRef {
    let mut fields: Vec<_> = schema.fields().iter().cloned().collect();
    fields.push(Arc::new(arrow_schema::Field::new(
        PARTITION_COLUMN,
        DataType::Utf8,
        false,
    )));
    Arc::new(arrow_schema::Schema::new(fields))
}

/// The result as `format`.
pub fn render(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    format: OutputFormat,
) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    match format {
        OutputFormat::Table => {
            let t =
                datafusion::arrow::util::pretty::pretty_format_batches(batches).map_err(sql_err)?;
            out = format!("{t}\n").into_bytes();
        }
        OutputFormat::Csv => {
            let mut w = datafusion::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut out);
            if batches.is_empty() {
                w.write(&RecordBatch::new_empty(schema.clone()))
                    .map_err(sql_err)?;
            }
            for b in batches {
                w.write(b).map_err(sql_err)?;
            }
        }
        OutputFormat::Json => {
            let mut w = datafusion::arrow::json::ArrayWriter::new(&mut out);
            for b in batches {
                w.write(b).map_err(sql_err)?;
            }
            w.finish().map_err(sql_err)?;
            if out.is_empty() {
                out.extend_from_slice(b"[]");
            }
            out.push(b'\n');
        }
        OutputFormat::Parquet => {
            let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, schema.clone(), None)
                .map_err(sql_err)?;
            for b in batches {
                w.write(b).map_err(sql_err)?;
            }
            w.close().map_err(sql_err)?;
        }
    }
    Ok(out)
}
