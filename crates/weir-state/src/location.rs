//! Where checkpoints live: the `--state-url` of an instance.
//!
//! - `file:///some/dir` (or a plain path): a local directory;
//! - `s3://bucket/prefix`: an S3 bucket (or any S3-compatible server), with
//!   the standard AWS settings taken from the environment: `AWS_ENDPOINT_URL`,
//!   `AWS_DEFAULT_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//!   `AWS_SESSION_TOKEN`, `AWS_ALLOW_HTTP` (for a plain-http endpoint).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ObjectStore, RetryConfig};

/// A parsed `--state-url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateLocation {
    /// A local directory.
    Local(PathBuf),
    /// A bucket and a key prefix in it (without leading or trailing `/`;
    /// empty for the bucket's root).
    S3 { bucket: String, prefix: String },
}

impl FromStr for StateLocation {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(format!(
                    "'{text}' names no bucket: expected s3://bucket/prefix"
                ));
            }
            return Ok(StateLocation::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            });
        }
        if let Some(path) = text.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(format!(
                    "'{text}' is not an absolute file URL: expected file:///path/to/dir"
                ));
            }
            return Ok(StateLocation::Local(PathBuf::from(path)));
        }
        match text.split_once("://") {
            Some((scheme, _)) => Err(format!(
                "unsupported state URL scheme '{scheme}': expected file:// or s3://"
            )),
            None if text.is_empty() => Err("the state URL is empty".into()),
            None => Ok(StateLocation::Local(PathBuf::from(text))),
        }
    }
}

impl fmt::Display for StateLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateLocation::Local(path) => write!(f, "file://{}", path.display()),
            StateLocation::S3 { bucket, prefix } if prefix.is_empty() => {
                write!(f, "s3://{bucket}")
            }
            StateLocation::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// An S3 store for `bucket`, configured from the environment, under `prefix`.
///
/// Requests that fail for a transient reason are retried for up to 30
/// seconds; a wrong endpoint or bucket shows up as an error, not a hang.
pub fn s3_store(bucket: &str, prefix: &str) -> Result<Arc<dyn ObjectStore>, object_store::Error> {
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_retry(RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 4,
            retry_timeout: Duration::from_secs(30),
        });
    if std::env::var_os("AWS_DEFAULT_REGION").is_none() && std::env::var_os("AWS_REGION").is_none()
    {
        builder = builder.with_region("us-east-1");
    }
    let store = builder.build()?;
    Ok(if prefix.is_empty() {
        Arc::new(store)
    } else {
        Arc::new(PrefixStore::new(store, prefix))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_urls_parse() {
        assert_eq!(
            "s3://bucket/a/b/".parse(),
            Ok(StateLocation::S3 {
                bucket: "bucket".into(),
                prefix: "a/b".into()
            })
        );
        assert_eq!(
            "s3://bucket".parse(),
            Ok(StateLocation::S3 {
                bucket: "bucket".into(),
                prefix: String::new()
            })
        );
        assert_eq!(
            "file:///var/weir".parse(),
            Ok(StateLocation::Local("/var/weir".into()))
        );
        assert_eq!(
            "relative/dir".parse(),
            Ok(StateLocation::Local("relative/dir".into()))
        );
        let wrong = |text: &str| text.parse::<StateLocation>().expect_err(text);
        assert!(wrong("gs://bucket").contains("unsupported state URL scheme 'gs'"));
        assert!(wrong("s3:///prefix").contains("names no bucket"));
        assert!(wrong("file://relative").contains("not an absolute file URL"));
        assert_eq!(
            "s3://b/p".parse::<StateLocation>().map(|l| l.to_string()),
            Ok("s3://b/p".to_string())
        );
    }
}
