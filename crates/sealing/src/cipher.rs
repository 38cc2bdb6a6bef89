//! The cipher: AES-256-GCM with a fresh random 96-bit nonce per sealed value.
//!
//! A sealed field is stored as `base64url(nonce ‖ ciphertext ‖ tag)`, with the
//! field's name as associated data, so a sealed subject cannot be passed off
//! as a message. Random nonces are safe here: each key seals one customer's
//! fields, far below the 2³² messages per key that NIST SP 800-38D allows
//! for random 96-bit nonces.
//!
//! A data key at rest is either its 32 raw bytes or, under a master key,
//! `nonce ‖ AES-256-GCM(master, data key)` (60 bytes) with the key's id as
//! associated data, so a wrapped key cannot be moved to another id.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

const NONCE_LEN: usize = 12;
const KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;
/// The length of a data key wrapped by a master key.
const WRAPPED_LEN: usize = NONCE_LEN + KEY_LEN + TAG_LEN;

/// Why a value or a key could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CipherError {
    #[error("a sealed value that is not base64url: {0}")]
    NotBase64(String),
    #[error("a sealed value too short to hold a nonce and a tag")]
    TooShort,
    #[error("a sealed value that this key does not open (tampered, or sealed with another key)")]
    Unopenable,
    #[error("a sealed value that is not UTF-8 text")]
    NotText,
    #[error(
        "a stored data key of {0} bytes: neither a raw key ({KEY_LEN}) nor one wrapped by a \
         master key ({WRAPPED_LEN})"
    )]
    BadStoredKey(usize),
    #[error("the data key is wrapped by a master key, and none was given (--master-key-file)")]
    MasterKeyNeeded,
    #[error("a master key must be 32 bytes, as 64 hex digits or base64 (43 or 44 characters)")]
    BadMasterKey,
}

/// The secret bytes of one key. Never printed.
#[derive(Clone, PartialEq, Eq)]
struct Secret([u8; KEY_LEN]);

impl Secret {
    /// The key's AES-256-GCM cipher: its key schedule and GHASH key set up.
    fn cipher(&self) -> LessSafeKey {
        let key = UnboundKey::new(&AES_256_GCM, &self.0)
            // Only a key of the wrong length is refused; this one is 32 bytes.
            .unwrap_or_else(|_| unreachable!("AES-256-GCM takes a 32-byte key"));
        LessSafeKey::new(key)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0; N];
    // The operating system's randomness failing is not a state this
    // process can carry on in: no key or nonce may be made without it.
    getrandom::fill(&mut bytes).unwrap_or_else(|e| panic!("no randomness from the OS: {e}"));
    bytes
}

/// One customer's data key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataKey(Secret);

impl DataKey {
    /// A new random key.
    pub fn generate() -> Self {
        DataKey(Secret(random()))
    }

    /// The key with its cipher set up (the AES key schedule and the GHASH
    /// key), for sealing or opening several values with one setup.
    pub fn cipher(&self) -> KeyCipher {
        KeyCipher(self.0.cipher())
    }

    /// Seals `text` as the value of the field `field`.
    pub fn seal(&self, field: &str, text: &str) -> String {
        self.cipher().seal(field, text)
    }

    /// Opens a value [`DataKey::seal`] made for the field `field`.
    pub fn open(&self, field: &str, sealed: &str) -> Result<String, CipherError> {
        self.cipher().open(field, sealed)
    }
}

/// A data key's cipher, set up once ([`DataKey::cipher`]): what seals and
/// opens values. Never printed.
#[derive(Clone)]
pub struct KeyCipher(LessSafeKey);

impl std::fmt::Debug for KeyCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyCipher(…)")
    }
}

impl KeyCipher {
    /// Seals `text` as the value of the field `field`.
    pub fn seal(&self, field: &str, text: &str) -> String {
        URL_SAFE_NO_PAD.encode(seal(&self.0, field, text.as_bytes()))
    }

    /// Opens a value [`KeyCipher::seal`] made for the field `field`.
    pub fn open(&self, field: &str, sealed: &str) -> Result<String, CipherError> {
        let mut buffer = Vec::new();
        self.open_in(field, sealed, &mut buffer).map(str::to_owned)
    }

    /// Opens a value [`KeyCipher::seal`] made for the field `field`, in
    /// `buffer` (cleared first; reused across values, it spares an
    /// allocation or two per value): the text, borrowed from it.
    pub fn open_in<'b>(
        &self,
        field: &str,
        sealed: &str,
        buffer: &'b mut Vec<u8>,
    ) -> Result<&'b str, CipherError> {
        buffer.clear();
        URL_SAFE_NO_PAD
            .decode_vec(sealed, buffer)
            .map_err(|e| CipherError::NotBase64(e.to_string()))?;
        let text = open(&self.0, field, buffer)?;
        std::str::from_utf8(text).map_err(|_| CipherError::NotText)
    }
}

/// `nonce ‖ ciphertext ‖ tag` of `plain` under `cipher`, with a fresh random
/// nonce and `aad` as associated data: a sealed field's bytes, and a wrapped
/// key's.
fn seal(cipher: &LessSafeKey, aad: &str, plain: &[u8]) -> Vec<u8> {
    let nonce: [u8; NONCE_LEN] = random();
    let mut bytes = Vec::with_capacity(NONCE_LEN + plain.len() + TAG_LEN);
    bytes.extend_from_slice(&nonce);
    bytes.extend_from_slice(plain);
    let tag = cipher
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad.as_bytes()),
            &mut bytes[NONCE_LEN..],
        )
        // Sealing fails only past GCM's message length limit (64 GiB).
        .unwrap_or_else(|_| unreachable!("AES-GCM seals a value"));
    bytes.extend_from_slice(tag.as_ref());
    bytes
}

/// Opens, in place, what [`seal`] made with the same `aad`: the plain bytes,
/// borrowed from `sealed`.
fn open<'s>(
    cipher: &LessSafeKey,
    aad: &str,
    sealed: &'s mut [u8],
) -> Result<&'s [u8], CipherError> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(CipherError::TooShort);
    }
    let (nonce, rest) = sealed.split_at_mut(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = (&*nonce).try_into().map_err(|_| CipherError::TooShort)?;
    let plain = cipher
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad.as_bytes()),
            rest,
        )
        .map_err(|_| CipherError::Unopenable)?;
    Ok(plain)
}

/// The key that wraps data keys at rest (`--master-key-file`).
#[derive(Debug, Clone)]
pub struct MasterKey(Secret);

impl MasterKey {
    /// Reads a master key from its text: 32 bytes as 64 hex digits or as
    /// base64 (standard or URL-safe, padded or not), surrounding whitespace
    /// ignored.
    pub fn parse(text: &str) -> Result<Self, CipherError> {
        let text = text.trim();
        let bytes = if text.len() == 2 * KEY_LEN && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..KEY_LEN)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| CipherError::BadMasterKey)?
        } else {
            let unpadded = text.trim_end_matches('=');
            base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(unpadded)
                .or_else(|_| URL_SAFE_NO_PAD.decode(unpadded))
                .map_err(|_| CipherError::BadMasterKey)?
        };
        let bytes: [u8; KEY_LEN] = bytes.try_into().map_err(|_| CipherError::BadMasterKey)?;
        Ok(MasterKey(Secret(bytes)))
    }
}

/// A data key as it is stored: wrapped when there is a master key.
pub(crate) fn store(key: &DataKey, master: Option<&MasterKey>, key_id: &str) -> Vec<u8> {
    let Some(master) = master else {
        return key.0.0.to_vec();
    };
    seal(&master.0.cipher(), key_id, &key.0.0)
}

/// The data key from its stored bytes.
pub(crate) fn load(
    stored: &[u8],
    master: Option<&MasterKey>,
    key_id: &str,
) -> Result<DataKey, CipherError> {
    match (stored.len(), master) {
        (KEY_LEN, _) => {
            // A raw key (made before a master key was configured) still opens.
            let bytes: [u8; KEY_LEN] = stored
                .try_into()
                .map_err(|_| CipherError::BadStoredKey(stored.len()))?;
            Ok(DataKey(Secret(bytes)))
        }
        (WRAPPED_LEN, None) => Err(CipherError::MasterKeyNeeded),
        (WRAPPED_LEN, Some(master)) => {
            let mut wrapped = stored.to_vec();
            let bytes: [u8; KEY_LEN] = open(&master.0.cipher(), key_id, &mut wrapped)?
                .try_into()
                .map_err(|_| CipherError::BadStoredKey(WRAPPED_LEN))?;
            Ok(DataKey(Secret(bytes)))
        }
        (other, _) => Err(CipherError::BadStoredKey(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_with_its_key_and_field_only() {
        let key = DataKey::generate();
        let sealed = key.seal("subject", "Printer on fire 🔥");
        assert!(!sealed.contains("Printer"));
        assert_eq!(
            key.open("subject", &sealed).as_deref(),
            Ok("Printer on fire 🔥")
        );
        assert_ne!(
            sealed,
            key.seal("subject", "Printer on fire 🔥"),
            "a fresh nonce each time"
        );
        assert_eq!(key.open("message", &sealed), Err(CipherError::Unopenable));
        assert_eq!(
            DataKey::generate().open("subject", &sealed),
            Err(CipherError::Unopenable)
        );
        let mut tampered = sealed.into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).expect("ascii");
        assert_eq!(key.open("subject", &tampered), Err(CipherError::Unopenable));
        assert_eq!(key.open("subject", "AAAA"), Err(CipherError::TooShort));
    }

    #[test]
    fn values_sealed_by_the_earlier_cipher_crate_still_open() {
        // Sealed with RustCrypto's `aes-gcm` (the crate before ring): key
        // bytes 0..32, nonce 9 × 12, field `subject`. Stores keep such
        // values; whichever crate does AES-256-GCM must open them.
        let key = DataKey(Secret(std::array::from_fn(|i| i as u8)));
        let sealed = "CQkJCQkJCQkJCQkJ42phVfP6MYS-ZxCfwuTe78mNS4v_d_U583hCcRmkdq9MmWRJ";
        assert_eq!(
            key.open("subject", sealed).as_deref(),
            Ok("Printer on fire 🔥")
        );
    }

    #[test]
    fn a_wrapped_key_needs_its_master_key_and_its_id() {
        let master = MasterKey::parse(&"ab".repeat(32)).expect("hex");
        let key = DataKey::generate();
        let wrapped = store(&key, Some(&master), "k1");
        assert_eq!(wrapped.len(), WRAPPED_LEN);
        assert_eq!(load(&wrapped, Some(&master), "k1"), Ok(key.clone()));
        assert_eq!(
            load(&wrapped, None, "k1"),
            Err(CipherError::MasterKeyNeeded)
        );
        assert_eq!(
            load(&wrapped, Some(&master), "k2"),
            Err(CipherError::Unopenable)
        );
        let other = MasterKey::parse(&"cd".repeat(32)).expect("hex");
        assert_eq!(
            load(&wrapped, Some(&other), "k1"),
            Err(CipherError::Unopenable)
        );
        // A raw key made before the master key still loads.
        let raw = store(&key, None, "k1");
        assert_eq!(load(&raw, Some(&master), "k1"), Ok(key));
        assert_eq!(load(&[0; 7], None, "k1"), Err(CipherError::BadStoredKey(7)));
    }

    #[test]
    fn a_master_key_reads_from_hex_or_base64_and_nothing_else() {
        let hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert!(MasterKey::parse(hex).is_ok());
        assert!(MasterKey::parse(&format!("  {b64}\n")).is_ok());
        assert!(MasterKey::parse(b64.trim_end_matches('=')).is_ok());
        for bad in ["", "short", &"ab".repeat(31), &"zz".repeat(32)] {
            assert!(MasterKey::parse(bad).is_err(), "{bad:?}");
        }
    }
}
