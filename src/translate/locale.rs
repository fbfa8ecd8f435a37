//! Which approved language of a template to send when the customer's language is not among them.
//!
//! Fallback order for a request such as `pt_BR` (codes compared after [`normalize`], so `pt-BR`, `PT_br` and
//! `pt_BR` are the same):
//! 1. the requested code itself (`pt_BR`);
//! 2. its base language (`pt`);
//! 3. any other variant of the same language (`pt_PT`), in the order of `approved`;
//! 4. English: `en`, `en_US`, `en_GB`, then any other `en_*`, in the order of `approved`;
//! 5. the first approved language.
//!
//! For a bare language (`pt`) step 2 is skipped. The answer is spelled as in `approved`.

/// `pt-br` → `pt_BR`, `EN` → `en`, ` fil ` → `fil`. The language is lower-cased, a 2-letter region upper-cased;
/// other suffixes (`zh_Hant`) are kept as written.
pub fn normalize(code: &str) -> String {
    let code = code.trim();
    match code.split_once(['_', '-']) {
        Some((lang, region)) if region.len() == 2 => {
            format!("{}_{}", lang.to_ascii_lowercase(), region.to_ascii_uppercase())
        }
        Some((lang, rest)) => format!("{}_{rest}", lang.to_ascii_lowercase()),
        None => code.to_ascii_lowercase(),
    }
}

/// True when both codes are the same language code after [`normalize`].
pub fn same(a: &str, b: &str) -> bool {
    normalize(a).eq_ignore_ascii_case(&normalize(b))
}

/// The base language of a code: `pt_BR` → `pt`.
pub fn base(code: &str) -> String {
    let n = normalize(code);
    n.split('_').next().unwrap_or_default().to_owned()
}

/// The exact codes tried before the variant and "first approved" steps, for messages such as
/// "no approved version in pt_BR, pt, en, en_US or en_GB". Normalised and without repeats.
pub fn chain(requested: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let requested = normalize(requested);
    let candidates = [requested.clone(), base(&requested), "en".into(), "en_US".into(), "en_GB".into()];
    for c in candidates {
        if !c.is_empty() && !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

/// The approved language to send for `requested` (see the module doc), or `None` if `approved` is empty.
pub fn pick_language(requested: &str, approved: &[&str]) -> Option<String> {
    let find = |code: &str| approved.iter().find(|a| same(a, code));
    let variant_of = |lang: &str| approved.iter().find(|a| base(a) == lang);
    let requested_n = normalize(requested);
    let lang = base(&requested_n);
    let found = find(&requested_n)
        .or_else(|| find(&lang))
        .or_else(|| variant_of(&lang).filter(|_| !lang.is_empty()))
        .or_else(|| find("en"))
        .or_else(|| find("en_US"))
        .or_else(|| find("en_GB"))
        .or_else(|| variant_of("en"))
        .or_else(|| approved.first());
    found.map(|s| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation() {
        assert_eq!(normalize("pt-br"), "pt_BR");
        assert_eq!(normalize(" EN_us "), "en_US");
        assert_eq!(normalize("FIL"), "fil");
        assert_eq!(normalize("zh_Hant"), "zh_Hant");
        assert!(same("pt-BR", "pt_br") && !same("pt_BR", "pt_PT"));
        assert_eq!(base("pt-BR"), "pt");
        assert_eq!(base("fil"), "fil");
    }

    #[test]
    fn fallback_chain() {
        let approved = ["de", "pt_PT", "en_GB", "pt", "pt_BR", "en_US"];
        assert_eq!(pick_language("pt_BR", &approved).as_deref(), Some("pt_BR"));
        assert_eq!(pick_language("pt-br", &approved).as_deref(), Some("pt_BR"));
        assert_eq!(pick_language("pt_AO", &approved).as_deref(), Some("pt"));
        assert_eq!(pick_language("pt_BR", &["pt_PT", "en"]).as_deref(), Some("pt_PT"));
        assert_eq!(pick_language("pt", &["de", "pt_PT", "pt_BR"]).as_deref(), Some("pt_PT"));
        assert_eq!(pick_language("fr", &approved).as_deref(), Some("en_US"));
        assert_eq!(pick_language("fr", &["en_GB", "en"]).as_deref(), Some("en"));
        assert_eq!(pick_language("fr", &["de", "en_GB"]).as_deref(), Some("en_GB"));
        assert_eq!(pick_language("fr", &["de", "en_IN"]).as_deref(), Some("en_IN"));
        assert_eq!(pick_language("fr", &["de", "es"]).as_deref(), Some("de"));
        assert_eq!(pick_language("", &["de", "es"]).as_deref(), Some("de"));
        assert_eq!(pick_language("EN_us", &["en_US"]).as_deref(), Some("en_US"));
        assert_eq!(pick_language("pt_BR", &[]), None);
    }

    #[test]
    fn chain_for_messages() {
        assert_eq!(chain("pt-br"), ["pt_BR", "pt", "en", "en_US", "en_GB"]);
        assert_eq!(chain("en_US"), ["en_US", "en", "en_GB"]);
        assert_eq!(chain("en"), ["en", "en_US", "en_GB"]);
        assert_eq!(chain("fil"), ["fil", "en", "en_US", "en_GB"]);
    }
}
