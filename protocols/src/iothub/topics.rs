//! The topics: Azure IoT Hub's MQTT conventions, so that devices written for IoT Hub /
//! IoT Plug and Play work against doppel unchanged, and the conventions of devices
//! behind an external broker. Pure functions: parse what a device sends, format what
//! doppel sends back.
//!
//! ```text
//! device → doppel (publish)
//!   devices/{id}/messages/events/{property bag}          telemetry
//!   $iothub/twin/GET/?$rid={rid}                         get the twin
//!   $iothub/twin/PATCH/properties/reported/?$rid={rid}   patch reported properties
//!   $iothub/methods/res/{status}/?$rid={rid}             direct-method response
//! doppel → device (device subscribes)
//!   $iothub/twin/res/{status}/?$rid={rid}[&$version={v}] response to GET / PATCH   ($iothub/twin/res/#)
//!   $iothub/twin/PATCH/properties/desired/?$version={v}  desired-property update   ($iothub/twin/PATCH/properties/desired/#)
//!   $iothub/methods/POST/{name}/?$rid={rid}              direct-method request     ($iothub/methods/POST/#)
//!   devices/{id}/messages/devicebound/{property bag}     cloud-to-device message   (devices/{id}/messages/devicebound/#)
//! CONNECT
//!   client id = {device id}, username = {hub host}/{device id}/?api-version=…, password = SAS token
//! ```
//!
//!
//! Behind an external broker the connection is the broker's, so the device id is in
//! every topic (the broker confines each device to its own):
//!
//! ```text
//! device → doppel   devices/{id}/messages/events/{property bag}   telemetry
//!                   devices/{id}/twin/reported                    reported properties (Plug and Play acks)
//! doppel → device   devices/{id}/twin/desired                     desired values an app set, with `$version`
//! ```
//!
//! Contract: [`parse_device_topic`] is the publish ACL of an IoT Hub device:
//! it accepts only the topics above, and telemetry only for the device's own
//! id ([`TopicError::OtherDevice`] otherwise). [`subscription_allowed`] is the
//! subscribe ACL. Parsers never panic.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

/// Characters escaped in property-bag keys and values.
const BAG: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'+')
    .add(b'/')
    .add(b'=')
    .add(b'?');

/// A topic a device publishes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceTopic {
    /// Telemetry with its (decoded) application and system properties,
    /// e.g. `$.ct` = content type, `$.ce` = content encoding.
    Telemetry {
        properties: Vec<(String, String)>,
    },
    TwinGet {
        rid: String,
    },
    TwinPatchReported {
        rid: String,
    },
    MethodResponse {
        status: u16,
        rid: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic {0:?} is not an IoT Hub device topic")]
    Unknown(String),
    #[error("topic {topic:?} belongs to device {owner:?}")]
    OtherDevice { topic: String, owner: String },
    #[error("topic {topic:?} lacks {field}")]
    Missing { topic: String, field: &'static str },
    #[error("topic {topic:?} has a malformed {field}")]
    Malformed { topic: String, field: &'static str },
}

/// Parse `a=b&c=d` (URL-encoded) into decoded pairs. A key without `=` has
/// an empty value.
pub fn parse_property_bag(bag: &str) -> Option<Vec<(String, String)>> {
    let decode = |s: &str| {
        percent_decode_str(s)
            .decode_utf8()
            .ok()
            .map(|c| c.into_owned())
    };
    bag.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((decode(k)?, decode(v)?))
        })
        .collect()
}

pub fn format_property_bag(properties: &[(String, String)]) -> String {
    properties
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                utf8_percent_encode(k, BAG),
                utf8_percent_encode(v, BAG)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The `?…` part after a fixed prefix: `$rid`, `$version`.
fn query_params(topic: &str, rest: &str) -> Result<Vec<(String, String)>, TopicError> {
    let query = rest.strip_prefix('?').ok_or_else(|| TopicError::Missing {
        topic: topic.to_string(),
        field: "?$rid=",
    })?;
    parse_property_bag(query).ok_or_else(|| TopicError::Malformed {
        topic: topic.to_string(),
        field: "query",
    })
}

fn rid(topic: &str, rest: &str) -> Result<String, TopicError> {
    query_params(topic, rest)?
        .into_iter()
        .find(|(k, _)| k == "$rid")
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| TopicError::Missing {
            topic: topic.to_string(),
            field: "$rid",
        })
}

/// Parse a topic that device `device_id` publishes to.
pub fn parse_device_topic(device_id: &str, topic: &str) -> Result<DeviceTopic, TopicError> {
    if let Some(rest) = topic.strip_prefix("devices/") {
        let (owner, rest) = rest
            .split_once('/')
            .ok_or_else(|| TopicError::Unknown(topic.to_string()))?;
        let bag = match rest.strip_prefix("messages/events") {
            Some("") => "",
            Some(after) => after
                .strip_prefix('/')
                .ok_or_else(|| TopicError::Unknown(topic.to_string()))?,
            None => return Err(TopicError::Unknown(topic.to_string())),
        };
        if owner != device_id {
            return Err(TopicError::OtherDevice {
                topic: topic.to_string(),
                owner: owner.to_string(),
            });
        }
        let properties = parse_property_bag(bag).ok_or_else(|| TopicError::Malformed {
            topic: topic.to_string(),
            field: "property bag",
        })?;
        return Ok(DeviceTopic::Telemetry { properties });
    }
    if let Some(rest) = topic.strip_prefix("$iothub/twin/GET/") {
        return Ok(DeviceTopic::TwinGet {
            rid: rid(topic, rest)?,
        });
    }
    if let Some(rest) = topic.strip_prefix("$iothub/twin/PATCH/properties/reported/") {
        return Ok(DeviceTopic::TwinPatchReported {
            rid: rid(topic, rest)?,
        });
    }
    if let Some(rest) = topic.strip_prefix("$iothub/methods/res/") {
        let (status, rest) = rest.split_once('/').ok_or_else(|| TopicError::Missing {
            topic: topic.to_string(),
            field: "status",
        })?;
        let status = status.parse::<u16>().map_err(|_| TopicError::Malformed {
            topic: topic.to_string(),
            field: "status",
        })?;
        return Ok(DeviceTopic::MethodResponse {
            status,
            rid: rid(topic, rest)?,
        });
    }
    Err(TopicError::Unknown(topic.to_string()))
}

/// The topic filters an IoT Hub device may subscribe to.
pub fn subscription_allowed(device_id: &str, filter: &str) -> bool {
    matches!(
        filter,
        "$iothub/twin/res/#" | "$iothub/twin/PATCH/properties/desired/#" | "$iothub/methods/POST/#"
    ) || filter
        .strip_prefix("devices/")
        .and_then(|r| r.strip_prefix(device_id))
        .is_some_and(|r| r == "/messages/devicebound/#")
}

pub fn telemetry_topic(device_id: &str, properties: &[(String, String)]) -> String {
    format!(
        "devices/{device_id}/messages/events/{}",
        format_property_bag(properties)
    )
}

pub fn twin_get_topic(rid: &str) -> String {
    format!("$iothub/twin/GET/?$rid={}", utf8_percent_encode(rid, BAG))
}

pub fn twin_patch_reported_topic(rid: &str) -> String {
    format!(
        "$iothub/twin/PATCH/properties/reported/?$rid={}",
        utf8_percent_encode(rid, BAG)
    )
}

/// Response to a twin GET (200, no version) or reported PATCH (204 with the
/// new reported version), or an error status.
pub fn twin_response_topic(status: u16, rid: &str, version: Option<u64>) -> String {
    let mut topic = format!(
        "$iothub/twin/res/{status}/?$rid={}",
        utf8_percent_encode(rid, BAG)
    );
    if let Some(v) = version {
        topic.push_str(&format!("&$version={v}"));
    }
    topic
}

pub fn desired_update_topic(version: u64) -> String {
    format!("$iothub/twin/PATCH/properties/desired/?$version={version}")
}

pub fn method_request_topic(method: &str, rid: &str) -> String {
    format!(
        "$iothub/methods/POST/{}/?$rid={}",
        utf8_percent_encode(method, BAG),
        utf8_percent_encode(rid, BAG)
    )
}

pub fn method_response_topic(status: u16, rid: &str) -> String {
    format!(
        "$iothub/methods/res/{status}/?$rid={}",
        utf8_percent_encode(rid, BAG)
    )
}

pub fn cloud_to_device_topic(device_id: &str, properties: &[(String, String)]) -> String {
    format!(
        "devices/{device_id}/messages/devicebound/{}",
        format_property_bag(properties)
    )
}

/// A topic doppel sends to a device, parsed (for tests and the external-broker
/// bridge).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloudTopic {
    TwinResponse {
        status: u16,
        rid: String,
        version: Option<u64>,
    },
    DesiredUpdate {
        version: u64,
    },
    MethodRequest {
        method: String,
        rid: String,
    },
}

pub fn parse_cloud_topic(topic: &str) -> Result<CloudTopic, TopicError> {
    let malformed = |field| TopicError::Malformed {
        topic: topic.to_string(),
        field,
    };
    let version_of = |params: &[(String, String)]| -> Result<Option<u64>, TopicError> {
        params
            .iter()
            .find(|(k, _)| k == "$version")
            .map(|(_, v)| v.parse::<u64>().map_err(|_| malformed("$version")))
            .transpose()
    };
    if let Some(rest) = topic.strip_prefix("$iothub/twin/res/") {
        let (status, rest) = rest.split_once('/').ok_or_else(|| malformed("status"))?;
        let status = status.parse().map_err(|_| malformed("status"))?;
        let params = query_params(topic, rest)?;
        return Ok(CloudTopic::TwinResponse {
            status,
            rid: rid(topic, rest)?,
            version: version_of(&params)?,
        });
    }
    if let Some(rest) = topic.strip_prefix("$iothub/twin/PATCH/properties/desired/") {
        let params = query_params(topic, rest)?;
        return Ok(CloudTopic::DesiredUpdate {
            version: version_of(&params)?.ok_or_else(|| TopicError::Missing {
                topic: topic.to_string(),
                field: "$version",
            })?,
        });
    }
    if let Some(rest) = topic.strip_prefix("$iothub/methods/POST/") {
        let (method, rest) = rest.split_once('/').ok_or_else(|| malformed("method"))?;
        let method = percent_decode_str(method)
            .decode_utf8()
            .map_err(|_| malformed("method"))?
            .into_owned();
        return Ok(CloudTopic::MethodRequest {
            method,
            rid: rid(topic, rest)?,
        });
    }
    Err(TopicError::Unknown(topic.to_string()))
}

/// A topic a device behind an external broker publishes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerTopic {
    /// Telemetry, with its property bag as on IoT Hub.
    Telemetry {
        device_id: String,
        properties: Vec<(String, String)>,
    },
    /// A reported-properties patch.
    Reported { device_id: String },
}

/// Parse a topic of a device behind an external broker (the device id is the topic's).
pub fn parse_broker_topic(topic: &str) -> Result<BrokerTopic, TopicError> {
    let unknown = || TopicError::Unknown(topic.to_string());
    let (device_id, tail) = topic
        .strip_prefix("devices/")
        .and_then(|rest| rest.split_once('/'))
        .filter(|(id, _)| !id.is_empty())
        .ok_or_else(unknown)?;
    if tail == "twin/reported" {
        return Ok(BrokerTopic::Reported {
            device_id: device_id.to_string(),
        });
    }
    match parse_device_topic(device_id, topic)? {
        DeviceTopic::Telemetry { properties } => Ok(BrokerTopic::Telemetry {
            device_id: device_id.to_string(),
            properties,
        }),
        _ => Err(unknown()),
    }
}

/// The filters doppel subscribes to on an external broker, through shared
/// subscription `group` (nodes of one group split the messages).
pub fn broker_subscriptions(group: &str) -> [String; 2] {
    [
        format!("$share/{group}/devices/+/messages/events/#"),
        format!("$share/{group}/devices/+/twin/reported"),
    ]
}

/// Where doppel publishes a device's desired values on an external broker.
pub fn broker_desired_topic(device_id: &str) -> String {
    format!("devices/{device_id}/twin/desired")
}

/// The MQTT user name of an IoT Hub device: `{hub}/{device_id}/?api-version=…`
/// (modules: `{hub}/{device_id}/{module_id}/?…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IotHubUsername {
    pub hub: String,
    pub device_id: String,
    pub module_id: Option<String>,
    pub api_version: Option<String>,
    /// Other query parameters (e.g. `DeviceClientType`, `model-id`).
    pub params: Vec<(String, String)>,
}

impl IotHubUsername {
    pub fn parse(username: &str) -> Option<IotHubUsername> {
        let (path, query) = username.split_once('?').unwrap_or((username, ""));
        let mut segments = path.trim_end_matches('/').split('/');
        let hub = segments.next().filter(|s| !s.is_empty())?.to_string();
        let device_id = segments.next().filter(|s| !s.is_empty())?.to_string();
        let module_id = segments
            .next()
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        if segments.next().is_some() {
            return None;
        }
        let mut params = parse_property_bag(query)?;
        let api_version = params
            .iter()
            .position(|(k, _)| k == "api-version")
            .map(|i| params.remove(i).1);
        Some(IotHubUsername {
            hub,
            device_id,
            module_id,
            api_version,
            params,
        })
    }

    pub fn format(hub: &str, device_id: &str, api_version: &str) -> String {
        format!("{hub}/{device_id}/?api-version={api_version}")
    }

    /// The IoT Plug and Play model id the device announced (`model-id=dtmi:…`).
    pub fn model_id(&self) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == "model-id")
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(a: &str, b: &str) -> (String, String) {
        (a.to_string(), b.to_string())
    }

    #[test]
    fn telemetry_with_a_property_bag_round_trips() {
        let props = vec![
            s("$.ct", "application/json"),
            s("$.ce", "utf-8"),
            s("alarm", "a b&c"),
        ];
        let topic = telemetry_topic("dev-1", &props);
        assert_eq!(
            topic,
            "devices/dev-1/messages/events/$.ct=application%2Fjson&$.ce=utf-8&alarm=a%20b%26c"
        );
        assert_eq!(
            parse_device_topic("dev-1", &topic),
            Ok(DeviceTopic::Telemetry { properties: props })
        );
        assert_eq!(
            parse_device_topic("dev-1", "devices/dev-1/messages/events"),
            Ok(DeviceTopic::Telemetry { properties: vec![] })
        );
        assert_eq!(
            parse_device_topic("dev-1", "devices/dev-1/messages/events/"),
            Ok(DeviceTopic::Telemetry { properties: vec![] })
        );
    }

    #[test]
    fn another_devices_telemetry_topic_is_refused() {
        assert_eq!(
            parse_device_topic("dev-1", "devices/dev-2/messages/events/"),
            Err(TopicError::OtherDevice {
                topic: "devices/dev-2/messages/events/".into(),
                owner: "dev-2".into()
            })
        );
        for bad in [
            "devices/dev-1/messages/eventsX",
            "devices/dev-1/messages/devicebound/",
            "devices/dev-1",
            "$iothub/twin/GET/",
            "$iothub/twin/GET/?foo=1",
            "$iothub/methods/res/abc/?$rid=1",
            "$iothub/twin/PATCH/properties/desired/?$version=1",
            "other/topic",
            "",
        ] {
            assert!(parse_device_topic("dev-1", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn twin_and_method_topics_parse_and_format() {
        assert_eq!(
            parse_device_topic("d", &twin_get_topic("42")),
            Ok(DeviceTopic::TwinGet { rid: "42".into() })
        );
        assert_eq!(
            twin_patch_reported_topic("7"),
            "$iothub/twin/PATCH/properties/reported/?$rid=7"
        );
        assert_eq!(
            parse_device_topic("d", "$iothub/twin/PATCH/properties/reported/?$rid=7"),
            Ok(DeviceTopic::TwinPatchReported { rid: "7".into() })
        );
        assert_eq!(
            parse_device_topic("d", "$iothub/methods/res/200/?$rid=9"),
            Ok(DeviceTopic::MethodResponse {
                status: 200,
                rid: "9".into()
            })
        );
        assert_eq!(
            method_response_topic(200, "9"),
            "$iothub/methods/res/200/?$rid=9"
        );
        assert_eq!(
            twin_response_topic(204, "7", Some(5)),
            "$iothub/twin/res/204/?$rid=7&$version=5"
        );
        assert_eq!(
            parse_cloud_topic("$iothub/twin/res/204/?$rid=7&$version=5"),
            Ok(CloudTopic::TwinResponse {
                status: 204,
                rid: "7".into(),
                version: Some(5)
            })
        );
        assert_eq!(
            twin_response_topic(200, "1", None),
            "$iothub/twin/res/200/?$rid=1"
        );
        assert_eq!(
            desired_update_topic(3),
            "$iothub/twin/PATCH/properties/desired/?$version=3"
        );
        assert_eq!(
            parse_cloud_topic(&desired_update_topic(3)),
            Ok(CloudTopic::DesiredUpdate { version: 3 })
        );
        assert_eq!(
            method_request_topic("reboot", "11"),
            "$iothub/methods/POST/reboot/?$rid=11"
        );
        assert_eq!(
            parse_cloud_topic("$iothub/methods/POST/reboot/?$rid=11"),
            Ok(CloudTopic::MethodRequest {
                method: "reboot".into(),
                rid: "11".into()
            })
        );
    }

    #[test]
    fn usernames_parse_with_api_version_modules_and_model_id() {
        let u = IotHubUsername::parse(
            "myhub.azure-devices.net/dev-1/?api-version=2021-04-12&DeviceClientType=py&model-id=dtmi%3Acom%3Aexample%3AThermostat%3B1",
        )
        .expect("parse");
        assert_eq!(u.hub, "myhub.azure-devices.net");
        assert_eq!(u.device_id, "dev-1");
        assert_eq!(u.module_id, None);
        assert_eq!(u.api_version.as_deref(), Some("2021-04-12"));
        assert_eq!(u.model_id(), Some("dtmi:com:example:Thermostat;1"));
        let m = IotHubUsername::parse("hub/dev/mod/?api-version=1").expect("module");
        assert_eq!(m.module_id.as_deref(), Some("mod"));
        assert_eq!(
            IotHubUsername::format("hub", "dev", "2021-04-12"),
            "hub/dev/?api-version=2021-04-12"
        );
        for bad in ["", "hub", "hub/", "/dev", "a/b/c/d/?x", "hub/dev/?%ff"] {
            assert_eq!(IotHubUsername::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn broker_topics_name_the_device_and_the_kind() {
        assert_eq!(
            parse_broker_topic("devices/pump-1/messages/events/"),
            Ok(BrokerTopic::Telemetry {
                device_id: "pump-1".into(),
                properties: vec![]
            })
        );
        assert_eq!(
            parse_broker_topic("devices/pump-1/messages/events/$.ct=application%2Fjson"),
            Ok(BrokerTopic::Telemetry {
                device_id: "pump-1".into(),
                properties: vec![s("$.ct", "application/json")]
            })
        );
        assert_eq!(
            parse_broker_topic("devices/pump-1/twin/reported"),
            Ok(BrokerTopic::Reported {
                device_id: "pump-1".into()
            })
        );
        for bad in [
            "devices//twin/reported",
            "devices/pump-1/twin/desired",
            "devices/pump-1/messages/eventsX",
            "other/pump-1",
            "",
        ] {
            assert!(parse_broker_topic(bad).is_err(), "{bad:?}");
        }
        assert_eq!(broker_desired_topic("p"), "devices/p/twin/desired");
    }

    #[test]
    fn subscriptions_are_confined_to_the_device() {
        assert!(subscription_allowed("d1", "$iothub/twin/res/#"));
        assert!(subscription_allowed("d1", "$iothub/methods/POST/#"));
        assert!(subscription_allowed(
            "d1",
            "$iothub/twin/PATCH/properties/desired/#"
        ));
        assert!(subscription_allowed(
            "d1",
            "devices/d1/messages/devicebound/#"
        ));
        assert!(!subscription_allowed(
            "d1",
            "devices/d2/messages/devicebound/#"
        ));
        assert!(!subscription_allowed(
            "d1",
            "devices/+/messages/devicebound/#"
        ));
        assert!(!subscription_allowed("d1", "#"));
        assert!(!subscription_allowed(
            "d1",
            "devices/d1x/messages/devicebound/#"
        ));
    }
}
