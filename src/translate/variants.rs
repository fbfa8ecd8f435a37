//! Language variants of one template must take the same parameters, or a command that works in one language
//! fails in another (and [`super::locale`] fallback would send mismatched values).
//!
//! For each template name with several languages, the signature of each variant is compared: header kind, header
//! placeholders, body placeholders (for named templates the same names in the same order), and the dynamic URL
//! buttons. The reference is the most common signature; ties go to the signature of the alphabetically-first
//! language. Every variant that differs from it is reported with what differs. All statuses are considered.

use std::collections::BTreeMap;

use super::template::{analyse, HeaderFormat, Shape, TemplateDef};

/// `(name, language, problem)` for each variant that differs from its name's reference, sorted by name and language.
pub fn variant_problems(defs: &[TemplateDef]) -> Vec<(String, String, String)> {
    let mut by_name: BTreeMap<&str, Vec<(&str, Shape)>> = BTreeMap::new();
    for d in defs {
        by_name.entry(&d.name).or_default().push((&d.language, analyse(d)));
    }
    let mut out = Vec::new();
    for (name, mut variants) in by_name {
        variants.sort_by(|a, b| a.0.cmp(b.0));
        if variants.len() < 2 {
            continue;
        }
        // Count each signature; `variants` is sorted, so the first language seen for a signature is its smallest.
        let mut counts: Vec<(&Shape, usize, &str)> = Vec::new();
        for (lang, shape) in &variants {
            match counts.iter_mut().find(|(s, _, _)| *s == shape) {
                Some(entry) => entry.1 += 1,
                None => counts.push((shape, 1, lang)),
            }
        }
        let Some(&(reference, _, ref_lang)) = counts.iter().max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.2.cmp(a.2)))
        else {
            continue;
        };
        for (lang, shape) in &variants {
            if shape != reference {
                out.push((name.to_owned(), lang.to_string(), describe(shape, reference, ref_lang)));
            }
        }
    }
    out
}

fn describe(shape: &Shape, reference: &Shape, ref_lang: &str) -> String {
    let mut diffs: Vec<String> = Vec::new();
    if shape.header != reference.header {
        diffs.push(format!(
            "its header is {} but {ref_lang}'s is {}",
            header_word(&shape.header),
            header_word(&reference.header)
        ));
    }
    for (part, mine, theirs) in [
        ("header", &shape.header_params, &reference.header_params),
        ("body", &shape.body_params, &reference.body_params),
    ] {
        if mine != theirs {
            diffs.push(format!(
                "its {part} takes {} but {ref_lang}'s takes {}",
                params(mine, shape.named),
                params(theirs, reference.named)
            ));
        }
    }
    if shape.url_buttons != reference.url_buttons {
        diffs.push(format!(
            "its link buttons with a variable part are {} but {ref_lang}'s are {}",
            buttons(&shape.url_buttons),
            buttons(&reference.url_buttons)
        ));
    }
    if diffs.is_empty() {
        // Only the kind of parameters differs with the same placeholders (e.g. a one-time-password button).
        diffs.push(format!("its buttons differ from {ref_lang}'s"));
    }
    format!("This language version does not take the same parameters as the {ref_lang} version: {}.", diffs.join("; "))
}

fn header_word(h: &HeaderFormat) -> String {
    match h {
        HeaderFormat::None => "absent".into(),
        HeaderFormat::Text => "text".into(),
        HeaderFormat::Image => "an image".into(),
        HeaderFormat::Video => "a video".into(),
        HeaderFormat::Document => "a document".into(),
        HeaderFormat::Location => "a location".into(),
        HeaderFormat::Other(s) => format!("of kind {s}"),
    }
}

fn params(ps: &[String], named: bool) -> String {
    match ps.len() {
        0 => "no parameters".into(),
        n if named => format!(
            "{n} named parameter{} ({})",
            plural(n),
            ps.iter().map(|p| format!("{{{{{p}}}}}")).collect::<Vec<_>>().join(", ")
        ),
        n => format!("{n} parameter{}", plural(n)),
    }
}

fn buttons(indices: &[usize]) -> String {
    if indices.is_empty() {
        return "none".into();
    }
    let ns: Vec<String> = indices.iter().map(|i| (i + 1).to_string()).collect();
    format!("button {}", ns.join(", "))
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn def(name: &str, language: &str, components: Value) -> TemplateDef {
        TemplateDef {
            name: name.into(),
            language: language.into(),
            status: "APPROVED".into(),
            category: None,
            components,
            parameter_format: None,
        }
    }

    fn body(text: &str) -> Value {
        json!([{"type":"BODY","text":text}])
    }

    #[test]
    fn consistent_variants_are_fine() {
        let defs = vec![
            def("order", "en_US", body("Hi {{1}}, order {{2}}")),
            def("order", "pt_BR", body("Olá {{1}}, pedido {{2}}")),
            def("single", "de", body("{{1}} {{2}} {{3}}")),
        ];
        assert!(variant_problems(&defs).is_empty());
    }

    #[test]
    fn majority_is_the_reference() {
        let defs = vec![
            def("order", "pt_BR", body("Olá {{1}}")),
            def("order", "en_US", body("Hi {{1}}, order {{2}}")),
            def("order", "de", body("Hallo {{1}}, Bestellung {{2}}")),
        ];
        assert_eq!(
            variant_problems(&defs),
            vec![(
                "order".into(),
                "pt_BR".into(),
                "This language version does not take the same parameters as the de version: its body takes 1 parameter but de's takes 2 parameters.".into()
            )]
        );
    }

    #[test]
    fn tie_goes_to_alphabetically_first_language() {
        let defs = vec![def("t", "pt_BR", body("{{1}}")), def("t", "es", body("none"))];
        assert_eq!(
            variant_problems(&defs),
            vec![(
                "t".into(),
                "pt_BR".into(),
                "This language version does not take the same parameters as the es version: its body takes 1 parameter but es's takes no parameters.".into()
            )]
        );
    }

    #[test]
    fn header_named_and_button_differences() {
        let named = |lang: &str, body_text: &str| {
            let mut d = def("welcome", lang, json!([{"type":"BODY","text":body_text}]));
            d.parameter_format = Some("named".into());
            d
        };
        let defs = vec![
            named("en", "Hi {{first_name}} {{order}}"),
            named("de", "Hallo {{first_name}} {{order}}"),
            named("fr", "Salut {{order}} {{first_name}}"),
            def(
                "promo",
                "en",
                json!([{"type":"HEADER","format":"IMAGE"},{"type":"BODY","text":"x"},
                {"type":"BUTTONS","buttons":[{"type":"URL","url":"https://a.example/{{1}}"}]}]),
            ),
            def(
                "promo",
                "es",
                json!([{"type":"HEADER","format":"IMAGE"},{"type":"BODY","text":"x"},
                {"type":"BUTTONS","buttons":[{"type":"URL","url":"https://a.example/{{1}}"}]}]),
            ),
            def(
                "promo",
                "it",
                json!([{"type":"HEADER","format":"TEXT","text":"Ciao {{1}}"},{"type":"BODY","text":"x"},
                {"type":"BUTTONS","buttons":[{"type":"QUICK_REPLY","text":"No"},{"type":"URL","url":"https://a.example/x"}]}]),
            ),
        ];
        let problems = variant_problems(&defs);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(
            problems[0],
            (
                "promo".into(),
                "it".into(),
                "This language version does not take the same parameters as the en version: its header is text but en's is an image; its header takes 1 parameter but en's takes no parameters; its link buttons with a variable part are none but en's are button 1.".into()
            )
        );
        assert_eq!(
            problems[1],
            (
                "welcome".into(),
                "fr".into(),
                "This language version does not take the same parameters as the de version: its body takes 2 named parameters ({{order}}, {{first_name}}) but de's takes 2 named parameters ({{first_name}}, {{order}}).".into()
            )
        );
    }

    #[test]
    fn otp_only_difference() {
        let defs = vec![
            def(
                "code",
                "en",
                json!([{"type":"BODY","text":"{{1}}"},{"type":"BUTTONS","buttons":[{"type":"OTP","otp_type":"COPY_CODE"}]}]),
            ),
            def(
                "code",
                "es",
                json!([{"type":"BODY","text":"{{1}}"},{"type":"BUTTONS","buttons":[{"type":"OTP","otp_type":"COPY_CODE"}]}]),
            ),
            def("code", "de", json!([{"type":"BODY","text":"{{1}}"}])),
        ];
        assert_eq!(
            variant_problems(&defs),
            vec![(
                "code".into(),
                "de".into(),
                "This language version does not take the same parameters as the en version: its buttons differ from en's.".into()
            )]
        );
    }
}
