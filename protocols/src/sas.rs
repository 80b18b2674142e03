//! Azure IoT Hub shared access signature (SAS) tokens, as devices send them in
//! the MQTT password:
//!
//! ```text
//! SharedAccessSignature sr={url-encoded resource}&sig={url-encoded base64 signature}&se={expiry, unix s}[&skn={key name}]
//! signature = base64( HMAC-SHA256( base64-decode(device key), "{sr}\n{se}" ) )
//! ```
//!
//! `{sr}` in the string to sign is the resource exactly as it appears in the
//! token (still URL-encoded): that is what the device signed, whatever
//! encoder it used. The decoded resource must be `{hub host}/devices/{device id}`.
//!
//! Contract: [`verify_device_token`] accepts a token only if the signature
//! matches the device's key (constant-time comparison), it has not expired, and
//! its resource names exactly that device. It never panics on any input.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use ring::hmac;

const PREFIX: &str = "SharedAccessSignature ";

/// What `urllib.parse.quote(s, safe='')` leaves alone: letters, digits, `-_.~`.
const URL_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SasError {
    #[error("not a SharedAccessSignature token")]
    NotASasToken,
    #[error("SAS token lacks the field {0}")]
    MissingField(&'static str),
    #[error("SAS token field {0} is malformed")]
    Malformed(&'static str),
    #[error("SAS token expired at {expiry} (now {now})")]
    Expired { expiry: u64, now: u64 },
    #[error("SAS token is for {resource:?}, not for device {device_id:?}")]
    WrongResource { resource: String, device_id: String },
    #[error("device key is not valid base64")]
    BadKey,
    #[error("SAS token signature does not match the device key")]
    BadSignature,
}

/// A parsed token. `resource_raw` is as sent (URL-encoded), `resource` decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SasToken {
    pub resource_raw: String,
    pub resource: String,
    pub signature: Vec<u8>,
    pub expiry: u64,
    pub key_name: Option<String>,
}

impl SasToken {
    pub fn parse(token: &str) -> Result<SasToken, SasError> {
        let fields = token
            .trim()
            .strip_prefix(PREFIX)
            .ok_or(SasError::NotASasToken)?;
        let (mut sr, mut sig, mut se, mut skn) = (None, None, None, None);
        for pair in fields.split('&') {
            let (k, v) = pair.split_once('=').ok_or(SasError::Malformed("field"))?;
            match k {
                "sr" => sr = Some(v),
                "sig" => sig = Some(v),
                "se" => se = Some(v),
                "skn" => skn = Some(v),
                _ => {} // unknown fields are ignored, as IoT Hub does
            }
        }
        let resource_raw = sr.ok_or(SasError::MissingField("sr"))?;
        let resource = percent_decode_str(resource_raw)
            .decode_utf8()
            .map_err(|_| SasError::Malformed("sr"))?
            .into_owned();
        let sig = percent_decode_str(sig.ok_or(SasError::MissingField("sig"))?)
            .decode_utf8()
            .map_err(|_| SasError::Malformed("sig"))?;
        let signature = BASE64
            .decode(sig.as_bytes())
            .map_err(|_| SasError::Malformed("sig"))?;
        let expiry = se
            .ok_or(SasError::MissingField("se"))?
            .parse::<u64>()
            .map_err(|_| SasError::Malformed("se"))?;
        let key_name = match skn {
            Some(v) => Some(
                percent_decode_str(v)
                    .decode_utf8()
                    .map_err(|_| SasError::Malformed("skn"))?
                    .into_owned(),
            ),
            None => None,
        };
        Ok(SasToken {
            resource_raw: resource_raw.to_string(),
            resource,
            signature,
            expiry,
            key_name,
        })
    }

    /// The hub host of a device resource `{hub}/devices/{device}`, if it is one
    /// for `device_id`.
    pub fn hub_for_device(&self, device_id: &str) -> Option<&str> {
        let resource = self.resource.trim_end_matches('/');
        let (hub, device) = resource.split_once("/devices/")?;
        (!hub.is_empty() && !hub.contains('/') && device == device_id).then_some(hub)
    }
}

fn signing_key(key_base64: &str) -> Result<hmac::Key, SasError> {
    let key = BASE64
        .decode(key_base64.trim())
        .map_err(|_| SasError::BadKey)?;
    Ok(hmac::Key::new(hmac::HMAC_SHA256, &key))
}

fn string_to_sign(resource_raw: &str, expiry: u64) -> String {
    format!("{resource_raw}\n{expiry}")
}

/// Verify a device's SAS token against its base64 symmetric key at time `now`
/// (unix seconds). Returns the parsed token (its hub host is
/// [`SasToken::hub_for_device`]).
pub fn verify_device_token(
    token: &str,
    device_id: &str,
    key_base64: &str,
    now: u64,
) -> Result<SasToken, SasError> {
    let parsed = SasToken::parse(token)?;
    if parsed.hub_for_device(device_id).is_none() {
        return Err(SasError::WrongResource {
            resource: parsed.resource.clone(),
            device_id: device_id.to_string(),
        });
    }
    let key = signing_key(key_base64)?;
    hmac::verify(
        &key,
        string_to_sign(&parsed.resource_raw, parsed.expiry).as_bytes(),
        &parsed.signature,
    )
    .map_err(|_| SasError::BadSignature)?;
    // Checked after the signature, so that an attacker learns nothing about
    // expiry handling from a forged token.
    if parsed.expiry <= now {
        return Err(SasError::Expired {
            expiry: parsed.expiry,
            now,
        });
    }
    Ok(parsed)
}

/// Make a token the way the Azure device SDKs do: `resource` (e.g.
/// `myhub.example/devices/dev-1`) URL-encoded as a component, signed with the
/// base64 key, expiring at `expiry` (unix seconds).
pub fn make_sas_token(
    resource: &str,
    key_base64: &str,
    expiry: u64,
    key_name: Option<&str>,
) -> Result<String, SasError> {
    let key = signing_key(key_base64)?;
    let sr = utf8_percent_encode(resource, URL_COMPONENT).to_string();
    let signature = hmac::sign(&key, string_to_sign(&sr, expiry).as_bytes());
    let sig_b64 = BASE64.encode(signature.as_ref());
    let sig = utf8_percent_encode(&sig_b64, URL_COMPONENT);
    let mut token = format!("{PREFIX}sr={sr}&sig={sig}&se={expiry}");
    if let Some(name) = key_name {
        token.push_str("&skn=");
        token.push_str(&utf8_percent_encode(name, URL_COMPONENT).to_string());
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known vector, computed independently of this code with Python 3's
    /// standard library:
    ///
    /// ```python
    /// import base64, hmac, hashlib, urllib.parse
    /// key = base64.b64encode(b"doppel-test-device-key-0123456789").decode()
    /// sr = urllib.parse.quote("myhub.azure-devices.net/devices/dev-1", safe="")
    /// se = 1900000000
    /// sig = base64.b64encode(hmac.new(base64.b64decode(key),
    ///         f"{sr}\n{se}".encode(), hashlib.sha256).digest()).decode()
    /// token = f"SharedAccessSignature sr={sr}&sig={urllib.parse.quote(sig, safe='')}&se={se}"
    /// ```
    const KEY: &str = "ZG9wcGVsLXRlc3QtZGV2aWNlLWtleS0wMTIzNDU2Nzg5";
    const TOKEN: &str = "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdev-1&sig=dH6gp5L9yoRlRqv4OmFcqra%2F7Zfk%2FVQwN4BbHTzbs4U%3D&se=1900000000";

    #[test]
    fn the_python_vector_verifies_and_is_what_make_sas_token_produces() {
        let made = make_sas_token(
            "myhub.azure-devices.net/devices/dev-1",
            KEY,
            1_900_000_000,
            None,
        )
        .expect("make");
        assert_eq!(made, TOKEN);
        let token = verify_device_token(TOKEN, "dev-1", KEY, 1_800_000_000).expect("valid");
        assert_eq!(
            token.hub_for_device("dev-1"),
            Some("myhub.azure-devices.net")
        );
    }

    #[test]
    fn an_expired_token_is_refused() {
        assert_eq!(
            verify_device_token(TOKEN, "dev-1", KEY, 1_900_000_000),
            Err(SasError::Expired {
                expiry: 1_900_000_000,
                now: 1_900_000_000
            })
        );
    }

    #[test]
    fn a_token_for_another_device_is_refused_even_with_a_valid_signature() {
        assert!(matches!(
            verify_device_token(TOKEN, "dev-2", KEY, 0),
            Err(SasError::WrongResource { .. })
        ));
        let module = make_sas_token("hub/devices/dev-1/modules/m", KEY, 10, None).expect("make");
        assert!(matches!(
            verify_device_token(&module, "dev-1", KEY, 0),
            Err(SasError::WrongResource { .. })
        ));
    }

    #[test]
    fn a_wrong_key_or_tampered_field_is_refused() {
        let other_key = BASE64.encode(b"another key");
        assert_eq!(
            verify_device_token(TOKEN, "dev-1", &other_key, 0),
            Err(SasError::BadSignature)
        );
        let later = TOKEN.replace("se=1900000000", "se=1900000001");
        assert_eq!(
            verify_device_token(&later, "dev-1", KEY, 0),
            Err(SasError::BadSignature)
        );
    }

    #[test]
    fn skn_is_accepted_and_garbage_is_an_error_not_a_panic() {
        let with_skn = make_sas_token("hub/devices/dev-1", KEY, 100, Some("device")).expect("make");
        let parsed = verify_device_token(&with_skn, "dev-1", KEY, 1).expect("valid");
        assert_eq!(parsed.key_name.as_deref(), Some("device"));
        for garbage in [
            "",
            "SharedAccessSignature ",
            "SharedAccessSignature sr",
            "SharedAccessSignature sr=%ff&sig=x&se=1",
            "SharedAccessSignature sr=a&sig=!!!&se=1",
            "SharedAccessSignature sr=a&sig=AAAA&se=-1",
            "SharedAccessSignature sig=AAAA&se=1",
            "password",
        ] {
            assert!(
                verify_device_token(garbage, "dev-1", KEY, 0).is_err(),
                "{garbage:?}"
            );
        }
        assert_eq!(
            verify_device_token(TOKEN, "dev-1", "not base64!", 0),
            Err(SasError::BadKey)
        );
    }
}
