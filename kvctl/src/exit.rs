//! Process exit codes, as documented in `kvctl --help`.

use std::process::ExitCode;

use tonic::Code;

use crate::client;

/// How a kvctl invocation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// 0: success.
    Success,
    /// 1: the key does not exist.
    NotFound,
    /// 2: bad usage, or a request the cluster refused as invalid.
    Usage,
    /// 3: the cluster did not complete the request in time.
    Unavailable,
}

impl Exit {
    /// The numeric code.
    pub fn code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::NotFound => 1,
            Self::Usage => 2,
            Self::Unavailable => 3,
        }
    }

    /// The exit code a client error maps to.
    pub fn for_error(error: &client::Error) -> Self {
        match error {
            client::Error::NoEndpoints | client::Error::InvalidEndpoint { .. } => Self::Usage,
            client::Error::Rejected {
                code: Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange,
                ..
            } => Self::Usage,
            client::Error::Rejected { .. } | client::Error::Unavailable { .. } => Self::Unavailable,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        Self::from(exit.code())
    }
}
