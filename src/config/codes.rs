//! gRPC status codes by name, as written in [`FailureConfig::codes`](super::FailureConfig).
//!
//! A config file names codes the way people say them (`unavailable`, `deadline_exceeded`),
//! not by number, so a typo must be caught at load time rather than silently never matching.

use tonic::Code;

/// Every gRPC code with its config name (the snake case of its [`tonic::Code`] variant).
pub const GRPC_CODES: [(&str, Code); 17] = [
    ("ok", Code::Ok),
    ("cancelled", Code::Cancelled),
    ("unknown", Code::Unknown),
    ("invalid_argument", Code::InvalidArgument),
    ("deadline_exceeded", Code::DeadlineExceeded),
    ("not_found", Code::NotFound),
    ("already_exists", Code::AlreadyExists),
    ("permission_denied", Code::PermissionDenied),
    ("resource_exhausted", Code::ResourceExhausted),
    ("failed_precondition", Code::FailedPrecondition),
    ("aborted", Code::Aborted),
    ("out_of_range", Code::OutOfRange),
    ("unimplemented", Code::Unimplemented),
    ("internal", Code::Internal),
    ("unavailable", Code::Unavailable),
    ("data_loss", Code::DataLoss),
    ("unauthenticated", Code::Unauthenticated),
];

/// The code a config name stands for (`"unavailable"` → [`Code::Unavailable`]); `None` for
/// an unknown name. Exact, case-sensitive match.
pub fn grpc_code_from_name(name: &str) -> Option<Code> {
    GRPC_CODES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, code)| *code)
}

/// The config name of a code ([`Code::DeadlineExceeded`] → `"deadline_exceeded"`): the
/// inverse of [`grpc_code_from_name`], which the round-trip test checks.
#[cfg(test)]
fn grpc_code_name(code: Code) -> &'static str {
    GRPC_CODES
        .iter()
        .find(|(_, c)| *c == code)
        .map_or("unknown", |(n, _)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_cover_every_code() {
        for i in 0..=16 {
            let code = Code::from_i32(i);
            assert_eq!(grpc_code_from_name(grpc_code_name(code)), Some(code));
        }
        assert_eq!(grpc_code_from_name("Unavailable"), None);
        assert_eq!(grpc_code_from_name(""), None);
    }
}
