//! SASL and password pieces: base64, the PLAIN and LOGIN exchanges (RFC 4616,
//! and LOGIN as clients send it), and argon2id password hashes with their
//! working memory kept for the next check. Pure; the limits on logins and
//! the login checks themselves are in [`crate::login`].

use std::sync::Mutex;

use argon2::password_hash::phc::{Output, PasswordHash};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHasher, Version};
use base64ct::{Base64, Encoding as _};

/// Decodes standard base64 (with padding), around any spaces at the ends.
/// `None` for anything else.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    Base64::decode_vec(s.trim()).ok()
}

/// Encodes standard base64 with padding.
pub fn base64_encode(data: &[u8]) -> String {
    Base64::encode_string(data)
}

/// Why a SASL response was not usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaslError {
    /// Not base64: 501.
    Base64,
    /// Base64, but not the shape the mechanism wants: 501.
    Malformed,
}

/// Splits a decoded PLAIN response `authzid NUL authcid NUL password` into
/// (login, password). An authorization identity other than the login is refused.
///
/// # Errors
/// [`SaslError`] when the response is not of that shape.
pub fn parse_plain(response: &str) -> Result<(String, String), SaslError> {
    let bytes = base64_decode(response).ok_or(SaslError::Base64)?;
    let text = String::from_utf8(bytes).map_err(|_| SaslError::Malformed)?;
    let mut parts = text.split('\0');
    let (Some(authz), Some(login), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed);
    };
    if login.is_empty() || (!authz.is_empty() && authz != login) {
        return Err(SaslError::Malformed);
    }
    Ok((login.to_string(), password.to_string()))
}

/// Decodes one LOGIN step (a user name or a password).
///
/// # Errors
/// [`SaslError`] when it is not base64 of UTF-8 text.
pub fn parse_login_step(response: &str) -> Result<String, SaslError> {
    let bytes = base64_decode(response).ok_or(SaslError::Base64)?;
    String::from_utf8(bytes).map_err(|_| SaslError::Malformed)
}

/// Hashes a password into an argon2id PHC string for the config.
///
/// # Errors
/// When the system cannot provide a random salt.
pub fn hash_password(password: &str) -> Result<String, String> {
    Argon2::default().hash_password(password.as_bytes()).map(|h| h.to_string()).map_err(|e| e.to_string())
}

/// Checks `password` against an argon2id PHC string. Slow on purpose: run it
/// off the executor.
pub fn verify_password(password: &str, hash: &str) -> bool {
    let Ok(phc) = PasswordHash::new(hash) else { return false };
    let (Some(salt), Some(expected)) = (&phc.salt, &phc.hash) else { return false };
    let (Ok(params), Ok(algorithm)) = (Params::try_from(&phc), Algorithm::try_from(phc.algorithm.as_str()))
    else {
        return false;
    };
    let Ok(version) = phc.version.map(Version::try_from).transpose() else { return false };
    let blocks = params.block_count();
    let mut memory = WorkMemory::take(blocks);
    let mut out = vec![0u8; expected.len()];
    let hashed = Argon2::new(algorithm, version.unwrap_or_default(), params).hash_password_into_with_memory(
        password.as_bytes(),
        salt,
        &mut out,
        &mut memory.0[..blocks],
    );
    // `Output`'s comparison takes the same time wherever the bytes differ.
    hashed.is_ok() && Output::new(&out).is_ok_and(|o| o == *expected)
}

/// argon2's working memory (`m` KiB a check, 19 MiB by default), kept for
/// the next check instead of handed back to the allocator: glibc's malloc
/// keeps blocks this size once they were freed, and after a burst of wrong
/// passwords the server held hundreds of MiB. There are never more buffers
/// than checks that ran at once, and the server runs at most a few.
struct WorkMemory(Vec<Block>);

static SPARE_MEMORY: Mutex<Vec<Vec<Block>>> = Mutex::new(Vec::new());

impl WorkMemory {
    /// A spare buffer of at least `blocks` blocks, or a new one.
    fn take(blocks: usize) -> WorkMemory {
        let mut spare = SPARE_MEMORY.lock().unwrap_or_else(|p| p.into_inner());
        match spare.iter().position(|b| b.len() >= blocks) {
            Some(i) => WorkMemory(spare.swap_remove(i)),
            None => WorkMemory(vec![Block::default(); blocks]),
        }
    }
}

impl Drop for WorkMemory {
    fn drop(&mut self) {
        let mut spare = SPARE_MEMORY.lock().unwrap_or_else(|p| p.into_inner());
        spare.push(std::mem::take(&mut self.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn base64_round_trips_and_refuses_junk() {
        for (plain, enc) in
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("\0alice\0pw", "AGFsaWNlAHB3")]
        {
            assert_eq!(base64_encode(plain.as_bytes()), enc);
            assert_eq!(base64_decode(enc).as_deref(), Some(plain.as_bytes()));
        }
        // "Zh==" has bits set past its one byte: not what an encoder writes.
        for junk in ["Zg=", "Z===", "Zg==Zg==", "Zm9v!", "****", "Zh=="] {
            assert_eq!(base64_decode(junk), None, "{junk}");
        }
    }

    #[test]
    fn plain_responses_give_login_and_password_and_refuse_other_identities() {
        let enc = |s: &str| base64_encode(s.as_bytes());
        assert_eq!(
            parse_plain(&enc("\0alice@example.com\0pw")),
            Ok(("alice@example.com".into(), "pw".into()))
        );
        assert_eq!(parse_plain(&enc("alice\0alice\0pw")), Ok(("alice".into(), "pw".into())));
        assert_eq!(parse_plain(&enc("bob\0alice\0pw")), Err(SaslError::Malformed));
        assert_eq!(parse_plain(&enc("alice\0pw")), Err(SaslError::Malformed));
        assert_eq!(parse_plain(&enc("\0\0pw")), Err(SaslError::Malformed));
        assert_eq!(parse_plain("not base64!"), Err(SaslError::Base64));
    }

    #[test]
    fn argon2id_hashes_verify_the_right_password_only() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("x", "not a hash"));
        assert!(!verify_password("correct horse", &h.replace("$argon2id$", "$argon2x$")));
        // The digest agrees with the argon2 crate's own check.
        use argon2::PasswordVerifier;
        assert!(Argon2::default().verify_password(b"correct horse", h.as_str()).is_ok());
    }

    #[test]
    fn password_checks_reuse_their_working_memory() {
        let h = hash_password("pw").unwrap();
        for _ in 0..3 {
            assert!(verify_password("pw", &h));
            assert!(!verify_password("wrong", &h));
        }
        // Other tests may check passwords at the same time, each with a buffer.
        let spare = SPARE_MEMORY.lock().unwrap();
        assert!(!spare.is_empty() && spare.len() <= 4, "{} spare buffers", spare.len());
        assert!(spare.iter().all(|b| b.len() >= Params::DEFAULT_M_COST as usize));
    }
}
