//! Flink's window table functions, read as Weir's.
//!
//! Flink writes `TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10'
//! SECOND))`; sqlparser does not parse that form. Weir's (RisingWave's) form
//! is `tumble(bid, date_time, INTERVAL '10' SECOND)`. Before parsing, this
//! module turns the tokens of the first form into the tokens of the second,
//! matching parentheses; the arguments are not touched. `HOP` keeps Flink's
//! argument order (slide, then size), which is also Weir's. `SESSION(TABLE t
//! PARTITION BY k, DESCRIPTOR(ts), gap)` becomes `session(t, ts, gap, k)`.

use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

/// The window functions with a Flink form.
const FUNCTIONS: &[&str] = &["tumble", "hop", "session"];

/// Rewrites every `TABLE(F(TABLE t, DESCRIPTOR(c), args...))` into
/// `F(t, c, args...)`.
pub fn flink_window_functions(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    if !tokens
        .windows(2)
        .any(|w| is_word(&w[0].token, "table") && w[1].token == Token::LParen)
    {
        return tokens;
    }
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        match rewrite_at(&tokens, i) {
            Some((replacement, next)) => {
                out.extend(replacement);
                i = next;
            }
            None => {
                out.push(tokens[i].clone());
                i += 1;
            }
        }
    }
    out
}

fn is_word(token: &Token, word: &str) -> bool {
    matches!(token, Token::Word(w) if w.value.eq_ignore_ascii_case(word) && w.quote_style.is_none())
}

/// The index of the next token that is not whitespace, from `i`.
fn next_significant(tokens: &[TokenWithSpan], mut i: usize) -> Option<usize> {
    while i < tokens.len() {
        if !matches!(tokens[i].token, Token::Whitespace(_)) {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// The index of the parenthesis closing the one at `open`.
fn closing(tokens: &[TokenWithSpan], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, t) in tokens.iter().enumerate().skip(open) {
        match t.token {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Splits `tokens[from..to]` at the commas outside parentheses.
fn split_arguments(tokens: &[TokenWithSpan], from: usize, to: usize) -> Vec<(usize, usize)> {
    let mut args = Vec::new();
    let mut depth = 0usize;
    let mut start = from;
    for (i, t) in tokens.iter().enumerate().take(to).skip(from) {
        match t.token {
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            Token::Comma if depth == 0 => {
                args.push((start, i));
                start = i + 1;
            }
            _ => {}
        }
    }
    args.push((start, to));
    args
}

/// If a Flink window call starts at `i`: its replacement and the index after it.
fn rewrite_at(tokens: &[TokenWithSpan], i: usize) -> Option<(Vec<TokenWithSpan>, usize)> {
    if !is_word(&tokens[i].token, "table") {
        return None;
    }
    let outer_open = next_significant(tokens, i + 1)?;
    if tokens[outer_open].token != Token::LParen {
        return None;
    }
    let function = next_significant(tokens, outer_open + 1)?;
    if !FUNCTIONS
        .iter()
        .any(|f| is_word(&tokens[function].token, f))
    {
        return None;
    }
    let inner_open = next_significant(tokens, function + 1)?;
    if tokens[inner_open].token != Token::LParen {
        return None;
    }
    let inner_close = closing(tokens, inner_open)?;
    let outer_close = closing(tokens, outer_open)?;
    if next_significant(tokens, inner_close + 1)? != outer_close {
        return None;
    }
    let args = split_arguments(tokens, inner_open + 1, inner_close);
    let (relation_from, relation_to) = *args.first()?;
    let table = next_significant(tokens, relation_from)?;
    if !is_word(&tokens[table].token, "table") || table >= relation_to {
        return None;
    }
    // The relation, and the partition columns after `PARTITION BY` (which
    // may run over several arguments when not in parentheses).
    let descriptor_arg = args.iter().position(|&(from, _)| {
        next_significant(tokens, from).is_some_and(|t| is_word(&tokens[t].token, "descriptor"))
    })?;
    let partition_at = (table + 1..relation_to).find(|&t| is_word(&tokens[t].token, "partition"));
    let mut partition: Vec<(usize, usize)> = Vec::new();
    let relation_end = match partition_at {
        Some(at) => {
            if !is_word(&tokens[function].token, "session") {
                return None;
            }
            let by = next_significant(tokens, at + 1)?;
            if !is_word(&tokens[by].token, "by") {
                return None;
            }
            let (mut from, mut to) = (by + 1, relation_to);
            let open = next_significant(tokens, from)?;
            if tokens[open].token == Token::LParen
                && closing(tokens, open)? + 1 >= relation_to
                && descriptor_arg == 1
            {
                from = open + 1;
                to = closing(tokens, open)?;
            }
            partition.push((from, to));
            partition.extend_from_slice(&args[1..descriptor_arg]);
            at
        }
        None if descriptor_arg == 1 => relation_to,
        None => return None,
    };
    let (descriptor_from, descriptor_to) = args[descriptor_arg];
    let descriptor = next_significant(tokens, descriptor_from)?;
    let column_open = next_significant(tokens, descriptor + 1)?;
    if tokens[column_open].token != Token::LParen {
        return None;
    }
    let column_close = closing(tokens, column_open)?;
    if column_close >= descriptor_to {
        return None;
    }
    let comma = |at: &TokenWithSpan| TokenWithSpan {
        token: Token::Comma,
        span: at.span,
    };
    let mut out = vec![tokens[function].clone(), tokens[inner_open].clone()];
    out.extend_from_slice(&tokens[table + 1..relation_end]);
    out.push(comma(&tokens[descriptor]));
    out.extend_from_slice(&tokens[column_open + 1..column_close]);
    for &(from, to) in args[descriptor_arg + 1..].iter().chain(&partition) {
        out.push(comma(&tokens[from.saturating_sub(1)]));
        out.extend_from_slice(&tokens[from..to]);
    }
    out.push(tokens[inner_close].clone());
    Some((out, outer_close + 1))
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::tokenizer::Tokenizer;

    use super::*;

    fn rewrite(sql: &str) -> String {
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
            .tokenize_with_location()
            .expect("tokenize");
        flink_window_functions(tokens)
            .iter()
            .map(|t| t.token.to_string())
            .collect()
    }

    /// Without whitespace, which the rewrite does not keep exactly.
    fn compact(sql: &str) -> String {
        sql.chars().filter(|c| !c.is_whitespace()).collect()
    }

    #[test]
    fn flink_calls_become_weir_calls() {
        assert_eq!(
            compact(&rewrite(
                "SELECT * FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) w"
            )),
            compact("SELECT * FROM TUMBLE(bid, date_time, INTERVAL '10' SECOND) w")
        );
        assert_eq!(
            compact(&rewrite(
                "FROM TABLE( HOP( TABLE s.bid , DESCRIPTOR( ts ), INTERVAL '2' SECOND, INTERVAL '10' SECOND ) )"
            )),
            compact("FROM HOP(s.bid, ts, INTERVAL '2' SECOND, INTERVAL '10' SECOND)")
        );
    }

    #[test]
    fn flink_sessions_keep_their_partition_columns() {
        assert_eq!(
            compact(&rewrite(
                "FROM TABLE(SESSION(TABLE bid PARTITION BY bidder, DESCRIPTOR(ts), INTERVAL '5' MINUTE))"
            )),
            compact("FROM SESSION(bid, ts, INTERVAL '5' MINUTE, bidder)")
        );
        assert_eq!(
            compact(&rewrite(
                "FROM TABLE(SESSION(TABLE bid PARTITION BY (bidder, auction), DESCRIPTOR(ts), INTERVAL '5' MINUTE))"
            )),
            compact("FROM SESSION(bid, ts, INTERVAL '5' MINUTE, bidder, auction)")
        );
        assert_eq!(
            compact(&rewrite(
                "FROM TABLE(SESSION(TABLE bid PARTITION BY bidder, auction, DESCRIPTOR(ts), INTERVAL '5' MINUTE))"
            )),
            compact("FROM SESSION(bid, ts, INTERVAL '5' MINUTE, bidder, auction)")
        );
        assert_eq!(
            compact(&rewrite(
                "FROM TABLE(SESSION(TABLE bid, DESCRIPTOR(ts), INTERVAL '5' MINUTE))"
            )),
            compact("FROM SESSION(bid, ts, INTERVAL '5' MINUTE)")
        );
    }

    #[test]
    fn other_uses_of_table_are_left_alone() {
        let sql = "CREATE TABLE t (a int); SELECT * FROM TABLE(generate_series(1, 3))";
        assert_eq!(rewrite(sql), sql);
    }
}
