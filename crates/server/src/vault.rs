//! Secrets in settings (analytics keys, later channel tokens) are stored sealed:
//! XChaCha20-Poly1305 under the deployment's key, with the bot and the field as
//! associated data, so a sealed value cannot be moved to another bot or field.
//!
//! The key: `BOTWATCH_SECRET_KEY` (32 bytes, base64url or hex) on every node; without
//! it, the embedded store makes `secret.key` in its data directory (mode 0600; keep it
//! out of backups of the data), and a Redis deployment refuses to store secrets.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use axum::http::StatusCode;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::error::ApiError;

/// Sealed values start with this (a later scheme gets another).
const SCHEME: &str = "v1:";

pub struct Vault {
    cipher: Option<XChaCha20Poly1305>,
}

/// A 32-byte key from its text form: base64url (43 characters, padding optional) or hex.
pub fn parse_key(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    let bytes = if text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit()) {
        (0..32)
            .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok())
            .collect::<Option<Vec<u8>>>()?
    } else {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text.trim_end_matches('='))
            .ok()?
    };
    bytes.try_into().ok()
}

impl Vault {
    /// A vault that cannot seal: secrets are refused.
    pub fn closed() -> Vault {
        Vault { cipher: None }
    }

    pub fn with_key(key: &[u8; 32]) -> Vault {
        Vault {
            cipher: Some(XChaCha20Poly1305::new(key.into())),
        }
    }

    /// The key in `dir/secret.key`, made on first use.
    pub fn in_dir(dir: &Path) -> std::io::Result<Vault> {
        let path = dir.join("secret.key");
        match std::fs::read_to_string(&path) {
            Ok(text) => parse_key(&text)
                .map(|k| Vault::with_key(&k))
                .ok_or_else(|| {
                    std::io::Error::other(format!("{} does not hold a 32-byte key", path.display()))
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir)?;
                let mut key = [0u8; 32];
                getrandom::fill(&mut key).map_err(|e| std::io::Error::other(e.to_string()))?;
                let mut file = std::fs::OpenOptions::new()
                    .create_new(true)
                    .write(true)
                    .mode(0o600)
                    .open(&path)?;
                file.write_all(
                    base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .encode(key)
                        .as_bytes(),
                )?;
                file.sync_all()?;
                Ok(Vault::with_key(&key))
            }
            Err(e) => Err(e),
        }
    }

    /// `plain` sealed for `bot`'s `field`.
    pub fn seal(&self, bot: &str, field: &str, plain: &str) -> Result<String, ApiError> {
        let Some(cipher) = &self.cipher else {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "no_secret_key",
                format!(
                    "{field} is a secret: set BOTWATCH_SECRET_KEY (32 bytes, base64url or hex) on every node to store secrets"
                ),
            ));
        };
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).map_err(|_| ApiError::internal("random nonce"))?;
        let aad = format!("{bot}\0{field}");
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plain.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| ApiError::internal("sealing a secret"))?;
        let mut bytes = nonce.to_vec();
        bytes.extend(sealed);
        Ok(format!(
            "{SCHEME}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        ))
    }

    /// The secret sealed for `bot`'s `field`; `None` when it cannot be opened (another
    /// key, another place, damaged).
    pub fn open(&self, bot: &str, field: &str, sealed: &str) -> Option<String> {
        let cipher = self.cipher.as_ref()?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(sealed.strip_prefix(SCHEME)?)
            .ok()?;
        if bytes.len() < 24 {
            return None;
        }
        let (nonce, body) = bytes.split_at(24);
        let aad = format!("{bot}\0{field}");
        let plain = cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: aad.as_bytes(),
                },
            )
            .ok()?;
        String::from_utf8(plain).ok()
    }

    /// How the API shows a secret: never whole, at most its last four characters.
    pub fn masked(&self, bot: &str, field: &str, sealed: &str) -> String {
        match self.open(bot, field, sealed) {
            // Short secrets show nothing: four characters of them would be too many.
            Some(plain) if plain.chars().count() >= 12 => {
                let tail: String = plain.chars().skip(plain.chars().count() - 4).collect();
                format!("{MASK}{tail}")
            }
            _ => MASK.to_string(),
        }
    }
}

/// The start of every masked secret; a PUT that sends a masked value back keeps the
/// secret as it is.
pub const MASK: &str = "********";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_only_in_its_place_and_under_its_key() {
        let vault = Vault::with_key(&[7; 32]);
        let sealed = vault
            .seal("shop", "api_secret", "s3cr3t-value-1234")
            .expect("seal");
        assert!(!sealed.contains("s3cr3t"));
        assert_eq!(
            vault.open("shop", "api_secret", &sealed).as_deref(),
            Some("s3cr3t-value-1234")
        );
        assert_eq!(vault.open("other", "api_secret", &sealed), None);
        assert_eq!(vault.open("shop", "token", &sealed), None);
        assert_eq!(
            Vault::with_key(&[8; 32]).open("shop", "api_secret", &sealed),
            None
        );
        assert_eq!(vault.masked("shop", "api_secret", &sealed), "********1234");
        assert_ne!(
            sealed,
            vault
                .seal("shop", "api_secret", "s3cr3t-value-1234")
                .expect("seal")
        );
        assert!(Vault::closed().seal("shop", "api_secret", "x").is_err());
    }

    #[test]
    fn keys_read_as_base64url_or_hex() {
        assert_eq!(parse_key(&"ab".repeat(32)), Some([0xab; 32]));
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([5u8; 32]);
        assert_eq!(parse_key(&b64), Some([5; 32]));
        assert_eq!(parse_key("short"), None);
    }
}
