//! Classifies SQS SDK errors: transient ones (throttling, 5xx, timeouts,
//! connection failures) become `Unavailable`, the rest keep AWS's error code
//! and message.

use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};

use crate::backend::BackendError;

/// AWS error codes that mean "try again later".
const TRANSIENT_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "RequestThrottled",
    "ServiceUnavailable",
    "InternalError",
    "InternalFailure",
    "KmsThrottled",
    "RequestTimeout",
];

/// Receipt errors that mean the message was already deleted or redelivered.
pub(crate) const STALE_RECEIPT_CODES: &[&str] = &[
    "ReceiptHandleIsInvalid",
    "AWS.SimpleQueueService.ReceiptHandleIsInvalid",
    "MessageNotInflight",
    "AWS.SimpleQueueService.MessageNotInflight",
];

/// Whether an error code is a transient one.
pub(crate) fn is_transient_code(code: &str) -> bool {
    TRANSIENT_CODES.contains(&code) || code.ends_with(".ServiceUnavailable")
}

/// The AWS error code of a failed call, if the service answered one.
pub(crate) fn code<E, R>(err: &SdkError<E, R>) -> Option<&str>
where
    E: ProvideErrorMetadata,
{
    match err {
        SdkError::ServiceError(e) => e.err().code(),
        _ => None,
    }
}

/// Maps a failed SQS call (`op` names it) to a backend error.
pub(crate) fn classify<E>(
    op: &str,
    err: SdkError<E, aws_sdk_sqs::config::http::HttpResponse>,
) -> BackendError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            BackendError::Unavailable(format!("sqs {op}: {}", crate::error_chain(&err)))
        }
        SdkError::ResponseError(_) => {
            BackendError::Unavailable(format!("sqs {op}: {}", crate::error_chain(&err)))
        }
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = service.err().code().unwrap_or("Unknown");
            let message = service.err().message().unwrap_or("no message");
            let text = format!("sqs {op}: {code}: {message} (HTTP {status})");
            if status >= 500 || status == 429 || is_transient_code(code) {
                BackendError::Unavailable(text)
            } else {
                BackendError::Other(text)
            }
        }
        _ => BackendError::Other(format!("sqs {op}: {}", crate::error_chain(&err))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_codes() {
        assert!(is_transient_code("ThrottlingException"));
        assert!(is_transient_code(
            "AWS.SimpleQueueService.ServiceUnavailable"
        ));
        assert!(!is_transient_code(
            "AWS.SimpleQueueService.NonExistentQueue"
        ));
        assert!(!is_transient_code("InvalidParameterValue"));
    }
}
