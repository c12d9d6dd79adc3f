//! The pipeline's error: one variant per concern, each forwarding to the concern's own error.

use super::config::ConfigError;
use super::load::LoadError;
use super::observer::Step;
use super::source::ReadError;
use super::target::TargetError;
use super::transform::TransformError;

/// Why a pipeline step failed. Messages never hold a secret: target URLs are printed redacted
/// and database errors are passed on as the server words them (they do not echo passwords).
#[derive(Debug, thiserror::Error)]
pub enum EtlError {
    /// The `[pipeline]` table is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The target URL or its keys are unusable.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// The source could not be opened, downloaded or read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Transform failed: a configured column is missing, too many rows were rejected, or the
    /// rejects or staging file could not be written.
    #[error(transparent)]
    Transform(#[from] TransformError),
    /// The database refused the load; the table is as it was.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A worker thread panicked.
    #[error("the {step} step stopped unexpectedly")]
    JoinWorker {
        /// The step.
        step: Step,
        /// The join error.
        #[source]
        source: tokio::task::JoinError,
    },
    /// The caller dropped the step's future; the worker stopped without committing.
    #[error("the {step} step was cancelled")]
    Cancelled {
        /// The step.
        step: Step,
    },
}

/// What kind of failure an [`EtlError`] is, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtlErrorKind {
    /// The configuration is wrong (exit 2).
    Config,
    /// A server could not be reached (exit 6).
    Unreachable,
    /// The database refused the credentials (exit 4).
    Unauthorized,
    /// The work failed: bad data, too many rejects, a constraint (exit 1).
    Failed,
}

impl EtlError {
    /// The kind of failure.
    pub fn kind(&self) -> EtlErrorKind {
        match self {
            EtlError::Config(_) | EtlError::Target(_) => EtlErrorKind::Config,
            EtlError::Transform(TransformError::FindColumn { .. }) => EtlErrorKind::Config,
            EtlError::Transform(TransformError::WriteRejects(e)) if e.is_config() => {
                EtlErrorKind::Config
            }
            EtlError::Read(ReadError::Download { .. }) => EtlErrorKind::Unreachable,
            // 4xx: the URL (or its signature) is wrong; 5xx is the server's failure.
            EtlError::Read(ReadError::DownloadStatus { status, .. })
                if (400..500).contains(status) =>
            {
                EtlErrorKind::Config
            }
            EtlError::Read(
                ReadError::OpenFile { .. }
                | ReadError::NotAFile { .. }
                | ReadError::FindBuiltin { .. }
                | ReadError::FindColumns { .. },
            ) => EtlErrorKind::Config,
            EtlError::Load(load) => load.kind(),
            _ => EtlErrorKind::Failed,
        }
    }

    /// What to do about this error when it is more specific than its kind's advice: the
    /// database or schema to create, the URL to fix.
    pub fn hint(&self) -> Option<String> {
        use crate::prefect::transport::{find_tls_problem, PLAIN_HTTP};
        match self {
            EtlError::Read(ReadError::Download { source, .. })
                if find_tls_problem(source).as_deref() == Some(PLAIN_HTTP) =>
            {
                Some(
                    "this port serves plain HTTP, not TLS: use http:// in the source URL, or \
                     the port where the server speaks https"
                        .into(),
                )
            }
            EtlError::Read(ReadError::DownloadStatus { status, .. })
                if (400..500).contains(status) =>
            {
                Some(format!(
                    "the server answered {status}: check the source URL (a presigned URL may \
                     have expired)"
                ))
            }
            EtlError::Read(ReadError::FindColumns { .. }) => {
                Some("the source must start with a header row; check pipeline.source".into())
            }
            EtlError::Load(load) => load.hint(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_4xx_answer_or_an_empty_source_is_a_configuration_error() {
        let status = |status| {
            EtlError::Read(ReadError::DownloadStatus {
                url: "http://h/x.csv?tok=***".into(),
                status,
            })
        };
        for code in [400, 403, 404, 410] {
            assert_eq!(status(code).kind(), EtlErrorKind::Config, "{code}");
            assert!(status(code).hint().unwrap().contains("source URL"));
        }
        assert_eq!(status(503).kind(), EtlErrorKind::Failed);
        assert_eq!(status(503).hint(), None);
        let empty = EtlError::Read(ReadError::FindColumns {
            label: "x.csv".into(),
        });
        assert_eq!(empty.kind(), EtlErrorKind::Config);
    }
}
