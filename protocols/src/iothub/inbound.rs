//! What a device's message means to its twin: the one mapping from a message (its
//! kind, read from the topic by each transport, and its payload) to a
//! `doppel_twins::Command`, and from a refused command to the refusal the device is
//! told (or, behind an external broker, the log is told).
//!
//! ```text
//!  embedded broker: parse_device_topic ─┐                      ┌─▶ CommandSink::submit
//!                                       ├─▶ telemetry/reported ┤
//!  external broker: parse_broker_topic ─┘   (payload → Command)└─▶ refusal(CommandError) → PublishRefusal
//! ```
//!
//! | message | command |
//! | --- | --- |
//! | telemetry (JSON object; `iothub-creation-time-utc` in its property bag is its source time) | `RecordTelemetry` |
//! | reported properties (JSON object; Plug and Play acks as `{"value", "ac", "av", "ad"}`) | `ReportProperties` |
//!
//! Contract: both transports refuse the same message with the same reason text — a
//! payload that is not JSON here, one that breaks the model in the state machine
//! (whose message is passed through unchanged); the reason code is
//! [`PublishReason::PayloadFormatInvalid`] for both, which MQTT 5 sends back in the
//! PUBACK. Nothing here does I/O.

use super::topics::TopicError;
use crate::edge::{PublishReason, PublishRefusal};
use crate::sink::CommandError;
use doppel_twins::{Command, Disposition, ErrorKind};
use serde_json::Value;

/// The IoT Hub property that gives a telemetry message's source time.
pub const CREATION_TIME: &str = "iothub-creation-time-utc";

/// The payload as JSON, or the refusal every transport gives for one that is not.
pub fn json(payload: &[u8]) -> Result<Value, PublishRefusal> {
    serde_json::from_slice(payload).map_err(|e| {
        PublishRefusal::new(
            PublishReason::PayloadFormatInvalid,
            format!("the payload is not JSON: {e}"),
        )
    })
}

/// The `RecordTelemetry` a telemetry message of twin `twin_id` stands for.
pub fn telemetry(
    tenant: &str,
    twin_id: &str,
    properties: &[(String, String)],
    payload: &[u8],
) -> Result<Command, PublishRefusal> {
    let source_time = properties
        .iter()
        .find(|(k, _)| k == CREATION_TIME)
        .map(|(_, v)| v.clone());
    Ok(Command::RecordTelemetry {
        tenant: tenant.to_owned(),
        twin_id: twin_id.to_owned(),
        body: json(payload)?,
        source_time,
    })
}

/// The `ReportProperties` a reported-properties patch of twin `twin_id` stands for.
pub fn reported(tenant: &str, twin_id: &str, payload: &[u8]) -> Result<Command, PublishRefusal> {
    Ok(Command::ReportProperties {
        tenant: tenant.to_owned(),
        twin_id: twin_id.to_owned(),
        reported: json(payload)?,
    })
}

/// The refusal of a message on a topic that is not the device's to publish on.
pub fn topic_refusal(e: &TopicError) -> PublishRefusal {
    let code = match e {
        TopicError::OtherDevice { .. } => PublishReason::NotAuthorized,
        _ => PublishReason::TopicNameInvalid,
    };
    PublishRefusal::new(code, e.to_string())
}

/// The refusal of a message whose command failed: a rejection is the device's fault
/// (0x99 for a payload that breaks the model), a refusal that may pass later is a
/// quota (0x97), anything else unspecified (0x80). The reason is the command's.
pub fn refusal(e: &CommandError) -> PublishRefusal {
    let reason = match e.disposition {
        Disposition::Rejected if e.kind == ErrorKind::Invalid => {
            PublishReason::PayloadFormatInvalid
        }
        Disposition::Rejected => PublishReason::ImplementationSpecificError,
        Disposition::Retry => PublishReason::QuotaExceeded,
        Disposition::Unknown | Disposition::Internal => PublishReason::UnspecifiedError,
    };
    PublishRefusal::new(reason, e.message.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use doppel_twins::ErrorCode;
    use serde_json::json;

    #[test]
    fn telemetry_takes_its_source_time_from_the_property_bag() {
        let props = [(
            CREATION_TIME.to_string(),
            "2024-01-01T00:00:00Z".to_string(),
        )];
        let cmd = telemetry("t", "d", &props, br#"{"temp": 1}"#).unwrap();
        assert_eq!(
            cmd,
            Command::RecordTelemetry {
                tenant: "t".into(),
                twin_id: "d".into(),
                body: json!({"temp": 1}),
                source_time: Some("2024-01-01T00:00:00Z".into()),
            }
        );
    }

    #[test]
    fn a_payload_that_is_not_json_is_refused_with_its_parse_error() {
        for r in [
            telemetry("t", "d", &[], b"{nope").unwrap_err(),
            reported("t", "d", b"{nope").unwrap_err(),
        ] {
            assert_eq!(r.reason_code, PublishReason::PayloadFormatInvalid);
            assert!(r.message.starts_with("the payload is not JSON: "), "{r}");
        }
    }

    #[test]
    fn a_rejection_keeps_its_reason_and_a_passing_failure_is_a_quota() {
        let invalid = CommandError {
            code: ErrorCode::ValidationFailed,
            kind: ErrorKind::Invalid,
            disposition: Disposition::Rejected,
            message: "twin 'd' does not conform".into(),
        };
        assert_eq!(
            refusal(&invalid),
            PublishRefusal::new(
                PublishReason::PayloadFormatInvalid,
                "twin 'd' does not conform"
            )
        );
        let busy = CommandError {
            code: ErrorCode::TooManyRequests,
            kind: ErrorKind::Internal,
            disposition: Disposition::Retry,
            message: "busy".into(),
        };
        assert_eq!(refusal(&busy).reason_code, PublishReason::QuotaExceeded);
        assert_eq!(
            refusal(&CommandError::internal("disk")).reason_code,
            PublishReason::UnspecifiedError
        );
    }
}
