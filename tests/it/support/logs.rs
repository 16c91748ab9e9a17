//! Request logs written through the real writer (`RequestLogger`), as a
//! replica's proxy would write them.

use std::path::Path;

use promptgate::logstore::{RequestLogRow, RequestLogger};
use promptgate::spec::config::LoggingConfig;

/// Logs `rows` into the log root `dir` with the default settings and
/// shuts the writer down (every row flushed).
pub async fn write_rows_async(dir: &Path, rows: Vec<RequestLogRow>) {
    let (logger, _) = RequestLogger::start(dir, &LoggingConfig::default()).unwrap();
    for r in rows {
        assert!(logger.log(r).await, "the writer took the row");
    }
    logger.shutdown().await.unwrap();
}

/// [`write_rows_async`] for a test without a runtime of its own.
pub fn write_rows(dir: &Path, rows: Vec<RequestLogRow>) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(write_rows_async(dir, rows));
}
