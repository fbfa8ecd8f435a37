//! Phone numbers: validation and normalisation to E.164 (`+<country><number>`).

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("is empty")]
    Empty,
    #[error("must be in international form with the country code, e.g. +5511930001234")]
    NotInternational,
    #[error("is not a valid phone number ({0})")]
    Invalid(String),
}

/// Validates an international number and returns it as `+<digits>`.
/// Spaces, dashes, dots and parentheses are accepted and removed; `00` is read as `+`.
pub fn normalize_e164(input: &str) -> Result<String, PhoneError> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(PhoneError::Empty);
    }
    let compact: String = trimmed.chars().filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')')).collect();
    let compact = match compact.strip_prefix("00") {
        Some(rest) => format!("+{rest}"),
        None => compact,
    };
    if !compact.starts_with('+') {
        return Err(PhoneError::NotInternational);
    }
    if !compact[1..].bytes().all(|b| b.is_ascii_digit()) || compact.len() < 8 || compact.len() > 16 {
        return Err(PhoneError::Invalid("E.164 allows 7 to 15 digits after +".into()));
    }
    let parsed = phonenumber::parse(None, &compact).map_err(|e| PhoneError::Invalid(e.to_string()))?;
    if !phonenumber::is_valid(&parsed) {
        return Err(PhoneError::Invalid("no such number plan for this country code".into()));
    }
    Ok(parsed.format().mode(phonenumber::Mode::E164).to_string())
}

/// The digits of an E.164 number, as Meta writes `display_phone_number` and `wa_id`.
pub fn digits(e164: &str) -> String {
    e164.chars().filter(|c| c.is_ascii_digit()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_common_forms() {
        assert_eq!(normalize_e164("+55 11 93000-1234").unwrap(), "+5511930001234");
        assert_eq!(normalize_e164("0044 20 7946 0018").unwrap(), "+442079460018");
        assert_eq!(normalize_e164("+1 (650) 555-1234").unwrap(), "+16505551234");
    }

    #[test]
    fn rejects_bad_numbers() {
        assert_eq!(normalize_e164(""), Err(PhoneError::Empty));
        assert_eq!(normalize_e164("11 93000 1234"), Err(PhoneError::NotInternational));
        assert!(matches!(normalize_e164("+12"), Err(PhoneError::Invalid(_))));
        assert!(matches!(normalize_e164("+1abc5551234"), Err(PhoneError::Invalid(_))));
        assert!(matches!(normalize_e164("+999123456789"), Err(PhoneError::Invalid(_))));
    }

    #[test]
    fn digits_only() {
        assert_eq!(digits("+5511930001234"), "5511930001234");
    }
}
