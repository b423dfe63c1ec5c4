//! Typed errors of the core. Each error carries a kind that the extension maps to exactly one
//! SQLSTATE (in `extension/src/error.rs`), plus the message, detail and hint a user sees.

use std::fmt;

/// The class of an error, one per SQLSTATE the extension reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 22023 invalid_parameter_value
    InvalidParameterValue,
    /// 22004 null_value_not_allowed
    NullValueNotAllowed,
    /// 42622 name_too_long
    NameTooLong,
    /// 42602 invalid_name
    InvalidName,
    /// 3F000 invalid_schema_name
    InvalidSchemaName,
    /// 42P07 duplicate_table
    DuplicateTable,
    /// 42P01 undefined_table
    UndefinedTable,
    /// 42809 wrong_object_type
    WrongObjectType,
    /// 0A000 feature_not_supported
    FeatureNotSupported,
    /// 42P17 invalid_object_definition
    InvalidObjectDefinition,
    /// 42601 syntax_error
    SyntaxError,
    /// 42P17 as well: a stream table that would read itself through other stream tables.
    DependencyCycle,
    /// 2BP01 dependent_objects_still_exist
    DependentObjectsStillExist,
    /// 42501 insufficient_privilege
    InsufficientPrivilege,
    /// 55000 object_not_in_prerequisite_state
    ObjectNotInPrerequisiteState,
    /// XX000 internal_error: a bug in pg_trickle, never the user's input.
    Internal,
}

impl ErrorKind {
    /// The five-character SQLSTATE of this kind.
    pub fn sqlstate(self) -> &'static str {
        match self {
            ErrorKind::InvalidParameterValue => "22023",
            ErrorKind::NullValueNotAllowed => "22004",
            ErrorKind::NameTooLong => "42622",
            ErrorKind::InvalidName => "42602",
            ErrorKind::InvalidSchemaName => "3F000",
            ErrorKind::DuplicateTable => "42P07",
            ErrorKind::UndefinedTable => "42P01",
            ErrorKind::WrongObjectType => "42809",
            ErrorKind::FeatureNotSupported => "0A000",
            ErrorKind::InvalidObjectDefinition | ErrorKind::DependencyCycle => "42P17",
            ErrorKind::SyntaxError => "42601",
            ErrorKind::DependentObjectsStillExist => "2BP01",
            ErrorKind::InsufficientPrivilege => "42501",
            ErrorKind::ObjectNotInPrerequisiteState => "55000",
            ErrorKind::Internal => "XX000",
        }
    }
}

/// An error with everything PostgreSQL's `ereport` takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreError {
    pub kind: ErrorKind,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl CoreError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        CoreError {
            kind,
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        CoreError::new(ErrorKind::InvalidParameterValue, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        CoreError::new(ErrorKind::Internal, message)
    }
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        if let Some(detail) = &self.detail {
            write!(f, " (detail: {detail})")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for CoreError {}

pub type CoreResult<T> = Result<T, CoreError>;
