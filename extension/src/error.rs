//! The one boundary where typed errors become PostgreSQL errors: SQLSTATE, message, detail and
//! hint. Everything else returns `PgtResult` and lets the SQL entry points call `raise`.

use pg_trickle_core::{CoreError, ErrorKind};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

pub type PgtResult<T> = Result<T, CoreError>;

fn sqlstate(kind: ErrorKind) -> PgSqlErrorCode {
    use PgSqlErrorCode::*;
    match kind {
        ErrorKind::InvalidParameterValue => ERRCODE_INVALID_PARAMETER_VALUE,
        ErrorKind::NullValueNotAllowed => ERRCODE_NULL_VALUE_NOT_ALLOWED,
        ErrorKind::NameTooLong => ERRCODE_NAME_TOO_LONG,
        ErrorKind::InvalidName => ERRCODE_INVALID_NAME,
        ErrorKind::InvalidSchemaName => ERRCODE_INVALID_SCHEMA_NAME,
        ErrorKind::DuplicateTable => ERRCODE_DUPLICATE_TABLE,
        ErrorKind::UndefinedTable => ERRCODE_UNDEFINED_TABLE,
        ErrorKind::WrongObjectType => ERRCODE_WRONG_OBJECT_TYPE,
        ErrorKind::FeatureNotSupported => ERRCODE_FEATURE_NOT_SUPPORTED,
        ErrorKind::InvalidObjectDefinition | ErrorKind::DependencyCycle => {
            ERRCODE_INVALID_OBJECT_DEFINITION
        }
        ErrorKind::SyntaxError => ERRCODE_SYNTAX_ERROR,
        ErrorKind::DependentObjectsStillExist => ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST,
        ErrorKind::InsufficientPrivilege => ERRCODE_INSUFFICIENT_PRIVILEGE,
        ErrorKind::ObjectNotInPrerequisiteState => ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        ErrorKind::Internal => ERRCODE_INTERNAL_ERROR,
    }
}

/// Raise `err` as a PostgreSQL ERROR; does not return.
pub fn raise(err: CoreError) -> ! {
    let mut report = ErrorReport::new(sqlstate(err.kind), err.message, "pg_trickle");
    if let Some(detail) = err.detail {
        report = report.set_detail(detail);
    }
    if let Some(hint) = err.hint {
        report = report.set_hint(hint);
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("ereport(ERROR) returned")
}

/// Unwrap a result at an SQL entry point, raising the error.
pub trait OrRaise<T> {
    fn or_raise(self) -> T;
}

impl<T> OrRaise<T> for PgtResult<T> {
    fn or_raise(self) -> T {
        self.unwrap_or_else(|e| raise(e))
    }
}

/// An SPI failure is never the user's fault: the statements are ours.
pub fn spi_error(err: pgrx::spi::Error) -> CoreError {
    CoreError::internal(format!("pg_trickle internal SPI failure: {err}"))
}

/// A required argument that was NULL.
pub fn null_argument(name: &str) -> CoreError {
    CoreError::new(
        ErrorKind::NullValueNotAllowed,
        format!("{name} must not be NULL"),
    )
    .with_hint(format!("Pass a value for {name}."))
}
