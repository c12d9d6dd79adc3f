//! The client assertion of a workload identity: the federated token file, read again on every
//! login so a token the kubelet has rotated is used at once.

use std::path::PathBuf;

use azure_core::http::ClientMethodOptions;
use azure_identity::ClientAssertion;

use super::{LoginFailure, LoginFailureKind};

/// The file `AZURE_FEDERATED_TOKEN_FILE` names. `Debug` shows the path only.
#[derive(Debug)]
pub struct FederatedTokenFile {
    path: PathBuf,
}

impl FederatedTokenFile {
    /// The assertion held in `path`.
    pub fn new(path: PathBuf) -> Self {
        FederatedTokenFile { path }
    }
}

#[async_trait::async_trait]
impl ClientAssertion for FederatedTokenFile {
    async fn secret(
        &self,
        _options: Option<ClientMethodOptions<'_>>,
    ) -> azure_core::Result<String> {
        let shown = self.path.display();
        match tokio::fs::read_to_string(&self.path).await {
            Ok(token) if !token.trim().is_empty() => Ok(token.trim().to_string()),
            Ok(_) => Err(LoginFailure::new(
                LoginFailureKind::Refused,
                format!("the federated token file {shown} is empty"),
            )
            .into_sdk()),
            Err(err) => {
                let kind = match err.kind() {
                    std::io::ErrorKind::NotFound => LoginFailureKind::NotSetUp,
                    _ => LoginFailureKind::Unreachable,
                };
                let message = format!("cannot read the federated token file {shown}: {err}");
                Err(LoginFailure::new(kind, message).into_sdk())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_is_read_on_every_call() {
        let dir = std::env::temp_dir().join(format!("credchain-azure-fed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "FAKE_assertion_one\n").unwrap();
        let file = FederatedTokenFile::new(path.clone());
        assert_eq!(file.secret(None).await.unwrap(), "FAKE_assertion_one");
        std::fs::write(&path, "FAKE_assertion_two").unwrap();
        assert_eq!(file.secret(None).await.unwrap(), "FAKE_assertion_two");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn missing_file_is_not_set_up() {
        let file = FederatedTokenFile::new("/nonexistent/credchain/token".into());
        let err = file.secret(None).await.unwrap_err();
        let failure = LoginFailure::find(&err).unwrap();
        assert_eq!(failure.kind, LoginFailureKind::NotSetUp);
    }
}
