//! Numeric literals with an exponent (`1e10`, `1.5E-3`), read as Postgres
//! reads them: exact `numeric` values.
//!
//! DataFusion reads them as decimals of negative scale (`1e10` as 1 with
//! scale -10), which some of its kernels cannot handle (an `avg` over one
//! divides by zero and panics). Before parsing, this module writes such a
//! literal out in plain digits (`10000000000`, `0.0015`). A literal too long
//! for a decimal (more than 38 digits, such as `1e300`) becomes a `double
//! precision` constant instead (`'1e300'::float8`), since Weir's `numeric`
//! holds 38 digits.

use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Word};

/// The most digits of a decimal.
const MAX_DIGITS: usize = 38;

/// Rewrites every numeric literal with an exponent.
pub fn exponent_literals(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    if !tokens.iter().any(|t| has_exponent(&t.token)) {
        return tokens;
    }
    let mut out = Vec::with_capacity(tokens.len());
    for token in tokens {
        let Token::Number(text, long) = &token.token else {
            out.push(token);
            continue;
        };
        if !has_exponent(&token.token) {
            out.push(token);
            continue;
        }
        let span = token.span;
        if !is_plain_number(text) {
            out.push(token);
            continue;
        }
        match plain_digits(text) {
            Some(digits) => out.push(TokenWithSpan::new(Token::Number(digits, *long), span)),
            None => {
                out.push(TokenWithSpan::new(
                    Token::SingleQuotedString(text.clone()),
                    span,
                ));
                out.push(TokenWithSpan::new(Token::DoubleColon, span));
                out.push(TokenWithSpan::new(
                    Token::Word(Word {
                        value: "float8".into(),
                        quote_style: None,
                        keyword: datafusion::sql::sqlparser::keywords::Keyword::NoKeyword,
                    }),
                    span,
                ));
            }
        }
    }
    out
}

/// Digits, maybe a point, `e`, maybe a sign, digits: nothing else (no
/// underscores, no hexadecimal), which is left as written.
fn is_plain_number(text: &str) -> bool {
    let Some((mantissa, exponent)) = text.split_once(['e', 'E']) else {
        return false;
    };
    let exponent = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    int_part.len() + frac_part.len() > 0
        && !exponent.is_empty()
        && int_part
            .bytes()
            .chain(frac_part.bytes())
            .chain(exponent.bytes())
            .all(|b| b.is_ascii_digit())
}

fn has_exponent(token: &Token) -> bool {
    matches!(token, Token::Number(text, _) if text.contains(['e', 'E']))
}

/// `text` (digits, maybe a point, an exponent) in plain digits; `None` when
/// it is not such a number or needs more than [`MAX_DIGITS`] digits.
fn plain_digits(text: &str) -> Option<String> {
    let (mantissa, exponent) = text.split_once(['e', 'E'])?;
    let exponent: i64 = exponent.parse().ok()?;
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if !int_part
        .bytes()
        .chain(frac_part.bytes())
        .all(|b| b.is_ascii_digit())
        || int_part.len() + frac_part.len() == 0
    {
        return None;
    }
    let digits = format!("{int_part}{frac_part}");
    // Where the point goes in `digits`, after the exponent moved it.
    let point = (int_part.len() as i64).checked_add(exponent)?;
    if point.unsigned_abs() > (MAX_DIGITS * 2) as u64 {
        return None;
    }
    let (int_digits, frac_digits) = if point <= 0 {
        (
            String::new(),
            format!("{}{digits}", "0".repeat(point.unsigned_abs() as usize)),
        )
    } else if point as usize >= digits.len() {
        (
            format!("{digits}{}", "0".repeat(point as usize - digits.len())),
            String::new(),
        )
    } else {
        let (i, f) = digits.split_at(point as usize);
        (i.to_string(), f.to_string())
    };
    let int_digits = int_digits.trim_start_matches('0');
    let int_digits = if int_digits.is_empty() {
        "0"
    } else {
        int_digits
    };
    let significant = int_digits.trim_start_matches('0').len() + frac_digits.len();
    if significant > MAX_DIGITS || frac_digits.len() > MAX_DIGITS {
        return None;
    }
    Some(if frac_digits.is_empty() {
        int_digits.to_string()
    } else {
        format!("{int_digits}.{frac_digits}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponents_are_written_out() {
        assert_eq!(plain_digits("1e10").as_deref(), Some("10000000000"));
        assert_eq!(plain_digits("1.5E-3").as_deref(), Some("0.0015"));
        assert_eq!(plain_digits("12.34e1").as_deref(), Some("123.4"));
        assert_eq!(plain_digits("12.34e2").as_deref(), Some("1234"));
        assert_eq!(plain_digits("5e0").as_deref(), Some("5"));
        assert_eq!(plain_digits(".5e1").as_deref(), Some("5"));
        assert_eq!(plain_digits("1e-5").as_deref(), Some("0.00001"));
        assert_eq!(plain_digits("1e+2").as_deref(), Some("100"));
    }

    #[test]
    fn too_long_for_a_decimal() {
        assert_eq!(plain_digits("1e300"), None);
        assert_eq!(plain_digits("1e-300"), None);
        assert_eq!(plain_digits("1e38"), None);
        assert_eq!(plain_digits("1e37").map(|d| d.len()), Some(38));
        assert_eq!(plain_digits("1e99999999999999999999"), None);
        assert_eq!(plain_digits("1e9223372036854775807"), None);
        assert!(is_plain_number("1.5E-3") && is_plain_number("2e+2"));
        assert!(!is_plain_number("1_000e3") && !is_plain_number("1e") && !is_plain_number("e5"));
    }
}
