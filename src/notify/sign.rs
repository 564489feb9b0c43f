//! The webhook signature: `kpistream-signature: t=UNIX_SECONDS,v1=HEX`, where HEX is
//! HMAC-SHA256, keyed with the webhook's secret (its text, as UTF-8 bytes), of the
//! seconds, a dot and the request body exactly as sent. `docs/notifications.md` shows
//! a receiver checking it.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "kpistream-signature";

/// A new webhook secret: `whsec_` and 32 random bytes in URL-safe base64.
pub fn generate_secret() -> SecretString {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    SecretString::from(format!(
        "whsec_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// The signature header's value for `body` sent at `unix_seconds`.
pub fn signature(secret: &SecretString, unix_seconds: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(unix_seconds.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={unix_seconds},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example in docs/notifications.md, computed there with Python's `hmac`.
    #[test]
    fn the_documented_example_signs_as_documented() {
        let secret = SecretString::from("whsec_example".to_owned());
        let body = br#"{"type":"stream.stale"}"#;
        assert_eq!(
            signature(&secret, 1_700_000_000, body),
            "t=1700000000,v1=f0f1b1dc661d096be218724489c02f4d41851094e741d6a40109283808b63ac7"
        );
    }

    #[test]
    fn secrets_differ_and_carry_their_prefix() {
        let (a, b) = (generate_secret(), generate_secret());
        assert!(a.expose_secret().starts_with("whsec_"));
        assert_eq!(a.expose_secret().len(), "whsec_".len() + 43);
        assert_ne!(a.expose_secret(), b.expose_secret());
    }
}
