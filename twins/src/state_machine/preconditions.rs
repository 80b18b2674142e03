//! What every command checks before it looks at its subject: that the ids it names
//! are well formed ([`check_id`]) and that its HTTP precondition holds
//! ([`check_condition`]: `If-Match` / `If-None-Match: *` against the current etag).
//!
//! Contract: both are pure functions of their arguments, and their errors name what
//! was wrong (`InvalidId` with the id and rule; `PreconditionFailed` with both etags),
//! so a client can act on them.

use crate::command::Condition;
use crate::error::TwinError;

pub(super) fn check_id(
    what: &'static str,
    id: &str,
    rule: fn(&str) -> Result<(), String>,
) -> Result<(), TwinError> {
    rule(id).map_err(|reason| TwinError::InvalidId {
        what,
        id: id.to_owned(),
        reason,
    })
}

pub(super) fn check_condition(
    current: Option<&str>,
    condition: &Condition,
    what: &str,
) -> Result<(), TwinError> {
    match (condition, current) {
        (Condition::Always, _) => Ok(()),
        (Condition::IfNoneMatchAny, None) => Ok(()),
        (Condition::IfNoneMatchAny, Some(_)) => Err(TwinError::PreconditionFailed(format!(
            "If-None-Match: * was given but the {what} already exists"
        ))),
        (Condition::IfMatch(tag), Some(cur)) if tag == "*" || tag == cur => Ok(()),
        (Condition::IfMatch(tag), Some(cur)) => Err(TwinError::PreconditionFailed(format!(
            "If-Match {tag} does not match the {what}'s current etag {cur}"
        ))),
        (Condition::IfMatch(tag), None) => Err(TwinError::PreconditionFailed(format!(
            "If-Match {tag} was given but the {what} does not exist"
        ))),
    }
}
