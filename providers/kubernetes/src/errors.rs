//! What a failed Secret read means: kube's errors and the API's `Status` answers turned into
//! credchain's categories, with a hint where the fix is known (RBAC for a 403).

use std::time::Duration;

use credchain_core::SourceError;

/// What the failed request was, for messages.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The namespace read.
    pub namespace: &'a str,
    /// The Secret read.
    pub secret: &'a str,
    /// The API server, safe to print.
    pub server: &'a str,
    /// Whether the token came from the pod's service account.
    pub in_cluster: bool,
}

/// A 404 is not a failure: the Secret (or its namespace) does not exist.
pub fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 404)
}

/// The category and message for a failed read. Causes are attached only where their text
/// cannot hold a credential: the API's `Status` and transport errors, not auth-plugin output.
pub fn read_failure(req: Request<'_>, err: kube::Error) -> SourceError {
    let Request {
        namespace,
        secret,
        server,
        ..
    } = req;
    let what = format!("Secret {namespace}/{secret}");
    match err {
        kube::Error::Api(status) => status_failure(req, *status),
        kube::Error::Auth(_) => SourceError::denied(format!(
            "cannot get credentials for the kubeconfig user to read {what}"
        ))
        .with_hint("check the user of the kubeconfig context (token file, exec plugin)"),
        err
        @ (kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::RustlsTls(_)) => {
            SourceError::unavailable(format!(
                "cannot reach the Kubernetes API server at {server} to read {what}"
            ))
            .with_cause(err)
            .with_hint(
                "check that the API server is up at that address and that its certificate is \
                 signed by the configured CA (ca.crt, or the kubeconfig's certificate-authority)",
            )
        }
        other => SourceError::unavailable(format!("reading {what} from {server} failed"))
            .with_cause(other),
    }
}

/// A request that did not finish in time.
pub fn timed_out(req: Request<'_>, timeout: Duration) -> SourceError {
    SourceError::unavailable(format!(
        "the Kubernetes API server at {} did not answer within {} reading Secret {}/{}",
        req.server,
        humantime::format_duration(timeout),
        req.namespace,
        req.secret
    ))
    .with_hint("raise the source's `timeout`, or check the API server's health")
}

/// An error answer of the API server, by its HTTP code.
fn status_failure(req: Request<'_>, status: kube::core::Status) -> SourceError {
    let Request {
        namespace, secret, ..
    } = req;
    let code = status.code;
    let what = format!("Secret {namespace}/{secret}");
    let error = match code {
        401 => SourceError::denied(format!(
            "the Kubernetes API server rejected the credentials (401) reading {what}"
        ))
        .with_hint(if req.in_cluster {
            "the service account token is expired or not valid for this cluster".to_string()
        } else {
            "log in again, or check the user of the kubeconfig context".to_string()
        }),
        403 => SourceError::denied(format!("not allowed to read {what} (403 Forbidden)"))
            .with_hint(format!(
                "RBAC: the service account (or user) needs `get` on `secrets` in namespace \
             `{namespace}`: a Role with that rule and a RoleBinding to the account (see \
             docs/kubernetes.md)"
            )),
        429 | 500..=599 => SourceError::unavailable(format!(
            "the Kubernetes API server failed ({code}) reading {what}"
        )),
        _ => SourceError::invalid(format!(
            "the Kubernetes API server refused to read {what} ({code})"
        )),
    };
    error.with_cause(status)
}

#[cfg(test)]
mod tests {
    use credchain_core::ErrorKind;

    use super::*;

    fn request() -> Request<'static> {
        Request {
            namespace: "etl",
            secret: "prefect",
            server: "https://x",
            in_cluster: true,
        }
    }

    fn api(code: u16, message: &str) -> kube::Error {
        let status = kube::core::Status::failure(message, "Reason").with_code(code);
        kube::Error::Api(status.boxed())
    }

    #[test]
    fn forbidden_is_denied_with_an_rbac_hint() {
        let err = read_failure(request(), api(403, "secrets \"prefect\" is forbidden"));
        assert_eq!(err.kind(), ErrorKind::Denied);
        let hint = err.hint().unwrap();
        assert!(
            hint.contains("`get` on `secrets`") && hint.contains("`etl`"),
            "{hint}"
        );
    }

    #[test]
    fn codes_map_to_categories() {
        assert_eq!(
            read_failure(request(), api(401, "Unauthorized")).kind(),
            ErrorKind::Denied
        );
        assert_eq!(
            read_failure(request(), api(500, "boom")).kind(),
            ErrorKind::Unavailable
        );
        assert_eq!(
            read_failure(request(), api(429, "slow down")).kind(),
            ErrorKind::Unavailable
        );
        assert_eq!(
            read_failure(request(), api(400, "bad")).kind(),
            ErrorKind::Invalid
        );
        assert!(is_not_found(&api(404, "not found")));
        assert!(!is_not_found(&api(403, "forbidden")));
    }
}
