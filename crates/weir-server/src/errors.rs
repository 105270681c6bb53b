//! Engine errors as Postgres `ErrorResponse` / `NoticeResponse` messages.

use pgwire::error::{ErrorInfo, PgWireError};
use weir_engine::{Notice, WeirError};

/// The error fields of an engine error.
pub fn error_info(e: &WeirError) -> ErrorInfo {
    error_info_with_severity(e, "ERROR")
}

pub fn error_info_with_severity(e: &WeirError, severity: &str) -> ErrorInfo {
    let mut info = ErrorInfo::new(severity.to_string(), e.code.to_string(), e.message.clone());
    info.detail = e.detail.clone();
    info.hint = e.hint.clone();
    info.position = e.position.map(|p| p.to_string());
    info
}

/// An engine error for pgwire to send (the connection stays open).
pub fn user_error(e: WeirError) -> PgWireError {
    PgWireError::UserError(Box::new(error_info(&e)))
}

/// An error that ends the connection (`FATAL`).
pub fn fatal_error(e: WeirError) -> PgWireError {
    PgWireError::UserError(Box::new(error_info_with_severity(&e, "FATAL")))
}

pub fn notice_info(n: &Notice) -> ErrorInfo {
    ErrorInfo::new(
        n.severity.to_string(),
        n.code.to_string(),
        n.message.clone(),
    )
}
