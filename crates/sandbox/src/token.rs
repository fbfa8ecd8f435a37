//! Random identifiers the emulators hand out (client secrets, media hashes, SIP passwords, …).

use rand::Rng;

/// `len` characters drawn uniformly from `[A-Za-z0-9]`, from the operating system's generator.
pub fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rngs::OsRng;
    (0..len).map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_and_alphabet() {
        for len in [0, 1, 22, 50] {
            let t = random_token(len);
            assert_eq!(t.len(), len);
            assert!(t.bytes().all(|b| b.is_ascii_alphanumeric()), "{t}");
        }
        assert_ne!(random_token(32), random_token(32));
    }
}
