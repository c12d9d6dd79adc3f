//! What a failed Secrets Manager call means for the chain: absent, not configured, denied,
//! unavailable or invalid. Messages name the secret, the region and the endpoint, never a key,
//! and quote the service's own text only for errors that cannot echo the request.

use std::error::Error as StdError;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use credchain_core::{error_chain, SourceError};

/// Codes meaning the caller is not allowed, or its credentials were refused.
const DENIED_CODES: &[&str] = &[
    "AccessDeniedException",
    "AccessDenied",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "InvalidClientTokenId",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "ExpiredTokenException",
    "ExpiredToken",
];

/// Codes whose message is about permissions only and safe to show. Signature errors are not
/// here: AWS explains them with the canonical request, which holds the session token.
const QUOTABLE_DENIALS: &[&str] = &["AccessDeniedException", "AccessDenied", "DecryptionFailure"];

/// Codes meaning the service asks us to slow down (already retried by the SDK).
const THROTTLING_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
];

/// Where a failed call went, for the messages.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// The secret asked for.
    pub secret_id: &'a str,
    /// The region used.
    pub region: &'a str,
    /// The endpoint, safe to print.
    pub endpoint: &'a str,
    /// The credential provider that answered, if one did.
    pub provider: Option<&'static str>,
}

/// Turns a failed `GetSecretValue` into `Ok(None)` (the secret or version does not exist) or
/// the error the chain should see.
pub fn call_error<T>(
    error: SdkError<GetSecretValueError>,
    call: &Call<'_>,
) -> Result<Option<T>, SourceError> {
    if let Some(credentials) = find_credentials_error(&error) {
        return Err(credentials_error(credentials));
    }
    match &error {
        SdkError::ServiceError(context) => {
            service_error(context.err(), context.raw().status().as_u16(), call)
        }
        SdkError::TimeoutError(_) => Err(SourceError::unavailable(format!(
            "reading secret `{}` from {} timed out",
            call.secret_id, call.endpoint
        ))
        .with_hint("check the network path to Secrets Manager, or raise `timeout`")),
        SdkError::DispatchFailure(failure) => Err(dispatch_error(failure, call)),
        SdkError::ResponseError(context) => Err(SourceError::unavailable(format!(
            "{} sent an answer that is not Secrets Manager's (HTTP {})",
            call.endpoint,
            context.raw().status().as_u16()
        ))),
        _ => Err(SourceError::invalid(format!(
            "could not build the request for secret `{}`: {}",
            call.secret_id,
            error_chain(&error)
        ))),
    }
}

/// The credential chain's error, wherever the SDK wrapped it.
fn find_credentials_error<'e>(error: &'e (dyn StdError + 'static)) -> Option<&'e CredentialsError> {
    let mut next = Some(error);
    while let Some(current) = next {
        if let Some(found) = current.downcast_ref::<CredentialsError>() {
            return Some(found);
        }
        next = current.source();
    }
    None
}

/// No credentials anywhere is "not configured"; a provider that failed is another matter.
pub fn credentials_error(error: &CredentialsError) -> SourceError {
    let detail = error_chain(error);
    match error {
        CredentialsError::CredentialsNotLoaded(_) => SourceError::not_configured(
            "no AWS credentials found (environment, profile, web identity, ECS, instance metadata)",
        )
        .with_hint(
            "set AWS_PROFILE or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or attach a role",
        ),
        CredentialsError::ProviderTimedOut(_) => {
            SourceError::unavailable(format!("the AWS credential provider timed out: {detail}"))
        }
        CredentialsError::InvalidConfiguration(_) => SourceError::invalid(format!(
            "the AWS credential configuration is invalid: {detail}"
        )),
        _ => SourceError::unavailable(format!("the AWS credential provider failed: {detail}")),
    }
}

fn service_error<T>(
    error: &GetSecretValueError,
    status: u16,
    call: &Call<'_>,
) -> Result<Option<T>, SourceError> {
    let code = error.code().unwrap_or_default();
    let message = error.message().unwrap_or_default();
    if error.is_resource_not_found_exception() || status == 404 {
        tracing::debug!(secret_id = call.secret_id, "secret or version not found");
        return Ok(None);
    }
    if error.is_invalid_request_exception() && message.contains("marked for deletion") {
        tracing::debug!(
            secret_id = call.secret_id,
            "secret is scheduled for deletion; absent"
        );
        return Ok(None);
    }
    if DENIED_CODES.contains(&code) || error.is_decryption_failure() || matches!(status, 401 | 403)
    {
        return Err(denied(code, message, status, call));
    }
    if THROTTLING_CODES.contains(&code)
        || error.is_internal_service_error()
        || status == 429
        || status >= 500
    {
        return Err(SourceError::unavailable(format!(
            "Secrets Manager at {} kept failing ({}) while reading secret `{}`",
            call.endpoint,
            code_or_status(code, status),
            call.secret_id
        )));
    }
    Err(SourceError::invalid(format!(
        "Secrets Manager refused reading secret `{}` ({}): {message}",
        call.secret_id,
        code_or_status(code, status)
    )))
}

fn denied(code: &str, message: &str, status: u16, call: &Call<'_>) -> SourceError {
    let mut text = format!(
        "AWS Secrets Manager denied reading secret `{}` in region {} ({})",
        call.secret_id,
        call.region,
        code_or_status(code, status)
    );
    if QUOTABLE_DENIALS.contains(&code) && !message.is_empty() {
        text = format!("{text}: {message}");
    }
    let who = call.provider.unwrap_or("the credential chain");
    let hint = if QUOTABLE_DENIALS.contains(&code) {
        format!(
            "allow secretsmanager:GetSecretValue on the secret (and kms:Decrypt on its key) \
             for the identity whose credentials came from {who}"
        )
    } else {
        format!(
            "the credentials from {who} were refused: check the access key, secret key or session"
        )
    };
    SourceError::denied(text).with_hint(hint)
}

fn dispatch_error(
    failure: &aws_smithy_runtime_api::client::result::DispatchFailure,
    call: &Call<'_>,
) -> SourceError {
    let what = if failure.is_timeout() {
        "timed out"
    } else if failure.is_io() {
        "could not connect"
    } else {
        "failed"
    };
    let message = format!(
        "reading secret `{}`: the request to {} {what}",
        call.secret_id, call.endpoint
    );
    match failure.as_connector_error() {
        Some(cause) => SourceError::unavailable(format!("{message}: {}", error_chain(cause))),
        None => SourceError::unavailable(message),
    }
}

fn code_or_status(code: &str, status: u16) -> String {
    if code.is_empty() {
        format!("HTTP {status}")
    } else {
        code.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_secretsmanager::error::ErrorMetadata;
    use aws_sdk_secretsmanager::types::error::ResourceNotFoundException;
    use aws_smithy_runtime_api::http::{Response, StatusCode};
    use aws_smithy_types::body::SdkBody;
    use credchain_core::ErrorKind;

    const CALL: Call<'static> = Call {
        secret_id: "prod/etl",
        region: "us-east-1",
        endpoint: "http://127.0.0.1:5000",
        provider: Some("Environment"),
    };

    fn service(error: GetSecretValueError, status: u16) -> SdkError<GetSecretValueError> {
        let raw = Response::new(StatusCode::try_from(status).unwrap(), SdkBody::empty());
        SdkError::service_error(error, raw)
    }

    fn coded(code: &str, message: &str) -> GetSecretValueError {
        GetSecretValueError::generic(ErrorMetadata::builder().code(code).message(message).build())
    }

    fn kind_of(error: SdkError<GetSecretValueError>) -> Option<ErrorKind> {
        call_error::<()>(error, &CALL).err().map(|e| e.kind())
    }

    #[test]
    fn not_found_is_absent() {
        let error = GetSecretValueError::ResourceNotFoundException(
            ResourceNotFoundException::builder()
                .message("no such secret")
                .build(),
        );
        assert!(call_error::<()>(service(error, 400), &CALL)
            .unwrap()
            .is_none());
    }

    #[test]
    fn refusals_are_denied_and_name_the_secret_and_region() {
        for code in [
            "AccessDeniedException",
            "UnrecognizedClientException",
            "InvalidSignatureException",
        ] {
            let err = call_error::<()>(service(coded(code, "m"), 400), &CALL).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Denied, "{code}");
            assert!(
                err.to_string().contains("`prod/etl` in region us-east-1"),
                "{err}"
            );
        }
        assert_eq!(
            kind_of(service(coded("", ""), 403)),
            Some(ErrorKind::Denied)
        );
    }

    #[test]
    fn signature_errors_do_not_quote_the_canonical_request() {
        let leaky = "canonical request: x-amz-security-token:FAKEsessionTOKEN";
        let err = call_error::<()>(service(coded("SignatureDoesNotMatch", leaky), 403), &CALL)
            .unwrap_err();
        assert!(
            !format!("{err} {:?}", err.hint()).contains("FAKEsession"),
            "{err}"
        );
    }

    #[test]
    fn throttling_and_server_errors_are_unavailable() {
        assert_eq!(
            kind_of(service(coded("ThrottlingException", ""), 400)),
            Some(ErrorKind::Unavailable)
        );
        assert_eq!(
            kind_of(service(coded("", ""), 503)),
            Some(ErrorKind::Unavailable)
        );
    }

    #[test]
    fn bad_requests_are_invalid() {
        let err = call_error::<()>(
            service(coded("InvalidParameterException", "bad id"), 400),
            &CALL,
        );
        assert_eq!(err.unwrap_err().kind(), ErrorKind::Invalid);
    }

    #[test]
    fn missing_credentials_are_not_configured() {
        let inner = CredentialsError::not_loaded("no providers in chain provided credentials");
        let error: SdkError<GetSecretValueError> = SdkError::dispatch_failure(
            aws_sdk_secretsmanager::error::ConnectorError::other(inner.into(), None),
        );
        assert_eq!(kind_of(error), Some(ErrorKind::NotConfigured));
    }

    #[test]
    fn connect_errors_are_unavailable_and_name_the_endpoint() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let error: SdkError<GetSecretValueError> = SdkError::dispatch_failure(
            aws_sdk_secretsmanager::error::ConnectorError::io(io.into()),
        );
        let err = call_error::<()>(error, &CALL).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        assert!(
            err.to_string()
                .contains("http://127.0.0.1:5000 could not connect"),
            "{err}"
        );
    }
}
