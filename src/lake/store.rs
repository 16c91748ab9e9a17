//! `s3://bucket/prefix` URLs and the object store client for them.
//!
//! Credentials come from the environment only (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, or the instance's role):
//! never from a file promptgate reads. Endpoint, region and path-style
//! addressing come from `logging.store_options` when set, else from the
//! environment (`AWS_ENDPOINT_URL`, `AWS_REGION`, ...), as the AWS tools do.

use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;

use super::{LakeError, Result};
use crate::spec::config::StoreOptions;

/// The URL scheme of an S3-compatible store.
pub const S3_SCHEME: &str = "s3://";

/// Whether a `--logs` argument (or `logging.store`) names an object store.
pub fn is_store_url(s: &str) -> bool {
    s.starts_with(S3_SCHEME)
}

/// A parsed `s3://bucket/prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreUrl {
    pub bucket: String,
    /// Key prefix without leading or trailing `/` (may be empty).
    pub prefix: ObjectPath,
}

impl StoreUrl {
    pub fn parse(url: &str) -> Result<StoreUrl> {
        let bad = |message: &str| LakeError::Url {
            url: url.to_string(),
            message: message.to_string(),
        };
        let rest = url
            .strip_prefix(S3_SCHEME)
            .ok_or_else(|| bad("expected s3://bucket/prefix"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("no bucket name"));
        }
        if !bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        {
            return Err(bad(
                "a bucket name has lowercase letters, digits, `-` and `.` only",
            ));
        }
        let prefix = ObjectPath::parse(prefix.trim_matches('/'))
            .map_err(|e| bad(&format!("bad prefix: {e}")))?;
        Ok(StoreUrl {
            bucket: bucket.to_string(),
            prefix,
        })
    }

    /// The key of `parts` (joined by `/`) under the prefix.
    pub fn key<'a>(&self, parts: impl IntoIterator<Item = &'a str>) -> ObjectPath {
        let mut p = self.prefix.clone();
        for part in parts {
            p = p.join(part);
        }
        p
    }
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{S3_SCHEME}{}/{}", self.bucket, self.prefix)
    }
}

/// How hard the client itself retries one request. The uploader retries
/// whole files with its own backoff, so a store that is down makes it wait
/// between rounds instead of holding one PUT for minutes.
#[derive(Debug, Clone, Copy)]
pub enum Patience {
    /// Readers: the client's defaults (10 retries, 3 minutes).
    Reader,
    /// The uploader: 2 retries within 10 s, 15 s per request.
    Uploader,
}

/// A client for `url`'s bucket.
pub fn open(
    url: &StoreUrl,
    opts: &StoreOptions,
    patience: Patience,
) -> Result<Arc<dyn ObjectStore>> {
    let mut b = AmazonS3Builder::from_env().with_bucket_name(&url.bucket);
    let endpoint = opts
        .endpoint
        .clone()
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
    if let Some(endpoint) = &opts.endpoint {
        b = b.with_endpoint(endpoint);
    }
    if let Some(region) = &opts.region {
        b = b.with_region(region);
    }
    if let Some(path_style) = opts.path_style {
        b = b.with_virtual_hosted_style_request(!path_style);
    }
    // One ClientOptions: setting them replaces all of them (allow_http too).
    let mut client = object_store::ClientOptions::new().with_allow_http(
        endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("http://")),
    );
    if let Patience::Uploader = patience {
        b = b.with_retry(object_store::RetryConfig {
            max_retries: 2,
            retry_timeout: Duration::from_secs(10),
            ..Default::default()
        });
        // A store that accepts connections but does not answer ends a
        // round after this, not after the default 30 s.
        client = client
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(15));
    }
    let store = b
        .with_client_options(client)
        .build()
        .map_err(LakeError::store(url))?;
    Ok(Arc::new(store))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bucket_and_prefix() {
        let u = StoreUrl::parse("s3://logs-bucket/fleet/prod/").unwrap();
        assert_eq!(u.bucket, "logs-bucket");
        assert_eq!(u.prefix.as_ref(), "fleet/prod");
        assert_eq!(
            u.key(["requests", "date=2026-01-02", "a.parquet"]).as_ref(),
            "fleet/prod/requests/date=2026-01-02/a.parquet"
        );
        let bare = StoreUrl::parse("s3://b").unwrap();
        assert_eq!(bare.key(["requests"]).as_ref(), "requests");
        assert_eq!(bare.to_string(), "s3://b/");
    }

    proptest::proptest! {
        /// Any bucket and prefix made of valid names parse back to
        /// themselves, however many slashes surround the prefix.
        #[test]
        fn bucket_and_prefix_round_trip(
            bucket in "[a-z0-9][a-z0-9.-]{1,20}",
            segments in proptest::collection::vec("[A-Za-z0-9_=-]{1,12}", 0..4),
            slashes in 0usize..3,
        ) {
            let prefix = segments.join("/");
            let url = format!("s3://{bucket}/{}{prefix}{}", "/".repeat(slashes), "/".repeat(slashes));
            let u = StoreUrl::parse(&url).unwrap();
            proptest::prop_assert_eq!(&u.bucket, &bucket);
            proptest::prop_assert_eq!(u.prefix.as_ref(), prefix.as_str());
            let again = StoreUrl::parse(&u.to_string()).unwrap();
            proptest::prop_assert_eq!(again, u);
        }
    }

    #[test]
    fn refuses_what_is_not_a_bucket_url() {
        for bad in [
            "s3://",
            "s3:///x",
            "http://b/x",
            "s3://Upper/x",
            "s3://b/x/../y",
        ] {
            let e = StoreUrl::parse(bad).unwrap_err().to_string();
            assert!(e.starts_with(bad), "{bad}: {e}");
        }
    }
}
