//! The statement parser: Postgres' dialect with Weir's statements added.
//!
//! Built the way DataFusion's `DFParser` is: look at the leading keywords, parse
//! Weir's own statements with sqlparser's `Parser` primitives, and hand every
//! other statement to sqlparser. No SQL text is rewritten; two token
//! rewrites come first (Flink's window table functions, numbers with an
//! exponent).
//!
//! Queries that clients send against the system catalogs (psql's `\d`,
//! driver type lookups) go through `datafusion-pg-catalog`'s compatibility
//! rewrites, which turn Postgres-only constructs (`OPERATOR(pg_catalog.~)`,
//! `'t'::regclass`, ...) into forms DataFusion can plan. A query is taken for
//! one when a word of it starts with `pg_` or is `information_schema`; other
//! queries are left as written.

use std::sync::LazyLock;

use datafusion::sql::sqlparser::ast;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;

use crate::statement::{
    CreateMaterializedView, CreateSink, CreateStream, DeclareSubscribe, DropStream, Emit,
    ObjectKind, ShowObjects, SinkInput, Statement, StreamKind, Subscribe, WatermarkDef,
};

/// A statement that could not be parsed, worded as Postgres words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// `syntax error at or near "x"`, as Postgres says it.
    pub message: String,
    /// What the parser expected instead.
    pub detail: Option<String>,
    /// 1-based character offset of the offending token in the query text, as in
    /// the `P` field of a Postgres error.
    pub position: Option<usize>,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ParseError {}

static DIALECT: PostgreSqlDialect = PostgreSqlDialect {};

static PG_COMPAT: LazyLock<PostgresCompatibilityParser> =
    LazyLock::new(PostgresCompatibilityParser::new);

/// Parses a query string into its statements (empty for an empty query).
pub fn parse_sql(sql: &str) -> Result<Vec<Statement>, ParseError> {
    let tokens = Tokenizer::new(&DIALECT, sql)
        .tokenize_with_location()
        .map_err(|e| syntax_error(sql, &ParserError::TokenizerError(e.to_string())))?;
    let mentions_catalog = tokens.iter().any(|t| is_system_catalog_word(&t.token));
    let tokens = crate::window_syntax::flink_window_functions(tokens);
    let tokens = crate::number_literals::exponent_literals(tokens);
    let mut parser = WeirParser {
        parser: Parser::new(&DIALECT).with_tokens_with_locations(tokens),
    };
    let statements = parser
        .parse_statements()
        .map_err(|e| syntax_error(sql, &e))?;
    if mentions_catalog
        && statements
            .iter()
            .all(|s| matches!(s, Statement::Standard(_)))
    {
        // A client's catalog query: apply the pg_catalog compatibility rewrites.
        if let Ok(rewritten) = PG_COMPAT.parse(sql)
            && rewritten.len() == statements.len()
        {
            return Ok(rewritten
                .into_iter()
                .map(|s| Statement::Standard(Box::new(s)))
                .collect());
        }
    }
    Ok(statements)
}

/// Parses a single SQL expression (a column default, a `SET` value).
pub fn parse_expr(sql: &str) -> Result<ast::Expr, ParseError> {
    Parser::new(&DIALECT)
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| syntax_error(sql, &e))
}

fn is_system_catalog_word(token: &Token) -> bool {
    match token {
        Token::Word(w) => {
            let v = w.value.to_ascii_lowercase();
            v.starts_with("pg_") || v == "information_schema"
        }
        _ => false,
    }
}

struct WeirParser<'a> {
    parser: Parser<'a>,
}

impl WeirParser<'_> {
    fn parse_statements(&mut self) -> Result<Vec<Statement>, ParserError> {
        let mut statements = Vec::new();
        let mut expecting_delimiter = false;
        loop {
            while self.parser.consume_token(&Token::SemiColon) {
                expecting_delimiter = false;
            }
            if self.parser.peek_token_ref().token == Token::EOF {
                return Ok(statements);
            }
            if expecting_delimiter {
                return self
                    .parser
                    .expected("end of statement", self.parser.peek_token());
            }
            statements.push(self.parse_statement()?);
            expecting_delimiter = true;
        }
    }

    fn parse_statement(&mut self) -> Result<Statement, ParserError> {
        if self.peek_keyword(0, Keyword::SHOW)
            && let Some((kind, words)) = self.peek_object_kind(1)
        {
            return self.parse_show_objects(kind, words);
        }
        if self.peek_keyword(0, Keyword::CREATE) {
            if self.peek_words(1, &["materialized", "view"]) {
                self.parser.next_token();
                return Ok(Statement::CreateMaterializedView(Box::new(
                    self.parse_create_materialized_view()?,
                )));
            }
            if self.peek_words(1, &["stream"]) || self.peek_words(1, &["source"]) {
                let kind = if self.peek_words(1, &["source"]) {
                    StreamKind::Source
                } else {
                    StreamKind::Stream
                };
                self.parser.next_token();
                self.parser.next_token();
                return Ok(Statement::CreateStream(Box::new(
                    self.parse_create_stream(kind)?,
                )));
            }
            if self.peek_words(1, &["sink"]) {
                self.parser.next_token();
                self.parser.next_token();
                return Ok(Statement::CreateSink(Box::new(self.parse_create_sink()?)));
            }
            if self.peek_words(1, &["table"]) && self.table_has_event_time() {
                self.parser.next_token();
                self.parser.next_token();
                return Ok(Statement::CreateStream(Box::new(
                    self.parse_create_stream(StreamKind::Table)?,
                )));
            }
        }
        if self.peek_keyword(0, Keyword::EXPLAIN)
            && self.peek_words(1, &["create", "materialized", "view"])
        {
            self.parser.next_token();
            self.parser.next_token();
            return Ok(Statement::ExplainMaterializedView(Box::new(
                self.parse_create_materialized_view()?,
            )));
        }
        if self.peek_keyword(0, Keyword::DROP)
            && (self.peek_words(1, &["stream"]) || self.peek_words(1, &["source"]))
        {
            self.parser.next_token();
            self.parser.next_token();
            return Ok(Statement::DropStream(self.parse_drop_stream()?));
        }
        if self.peek_keyword(0, Keyword::DROP) && self.peek_words(1, &["sink"]) {
            self.parser.next_token();
            self.parser.next_token();
            return Ok(Statement::DropSink(self.parse_drop_stream()?));
        }
        if self.peek_words(0, &["flush"]) {
            self.parser.next_token();
            return Ok(Statement::Flush);
        }
        if self.peek_words(0, &["checkpoint"]) {
            self.parser.next_token();
            return Ok(Statement::Checkpoint);
        }
        if self.peek_words(0, &["fetch"]) {
            return self.parse_fetch();
        }
        if self.parse_words(&["subscribe"]) {
            return Ok(Statement::Subscribe(Box::new(self.parse_subscribe()?)));
        }
        if self.peek_keyword(0, Keyword::DECLARE) && self.declares_subscribe() {
            return self.parse_declare_subscribe();
        }
        Ok(Statement::Standard(Box::new(
            self.parser.parse_statement()?,
        )))
    }

    /// `MATERIALIZED VIEW [IF NOT EXISTS] name AS query [EMIT ON WINDOW CLOSE]`
    /// (after `CREATE`).
    fn parse_create_materialized_view(&mut self) -> Result<CreateMaterializedView, ParserError> {
        self.parser.next_token(); // MATERIALIZED
        self.parser.next_token(); // VIEW
        let if_not_exists =
            self.parser
                .parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
        let name = self.parser.parse_object_name(false)?;
        self.parser.expect_keyword_is(Keyword::AS)?;
        let query = self.parser.parse_query()?;
        let emit = if self.parse_words(&["emit", "on", "window", "close"]) {
            Emit::OnWindowClose
        } else if self.parse_words(&["emit", "on", "update"]) {
            Emit::OnUpdate
        } else if self.peek_words(0, &["emit"]) {
            return self.parser.expected(
                "ON WINDOW CLOSE or ON UPDATE after EMIT",
                self.parser.peek_nth_token(1),
            );
        } else {
            Emit::OnUpdate
        };
        Ok(CreateMaterializedView {
            name,
            if_not_exists,
            query,
            emit,
        })
    }

    /// `[IF NOT EXISTS] name FROM relation | AS query [EMIT ON WINDOW CLOSE]
    /// WITH (key = value, ...)` (after `CREATE SINK`).
    fn parse_create_sink(&mut self) -> Result<CreateSink, ParserError> {
        let if_not_exists =
            self.parser
                .parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
        let name = self.parser.parse_object_name(false)?;
        let input = if self.parser.parse_keyword(Keyword::FROM) {
            SinkInput::From(self.parser.parse_object_name(false)?)
        } else if self.parser.parse_keyword(Keyword::AS) {
            SinkInput::Query(self.parse_query_before_options()?)
        } else {
            return self.parser.expected(
                "FROM relation or AS query after the sink's name",
                self.parser.peek_token(),
            );
        };
        let emit = if self.parse_words(&["emit", "on", "window", "close"]) {
            Emit::OnWindowClose
        } else {
            let _ = self.parse_words(&["emit", "on", "update"]);
            Emit::OnUpdate
        };
        if !self.parser.parse_keyword(Keyword::WITH) {
            return self.parser.expected(
                "WITH (connector = ...) after the sink's input",
                self.parser.peek_token(),
            );
        }
        let options = self.parse_with_options()?;
        Ok(CreateSink {
            name,
            if_not_exists,
            input,
            emit,
            options,
        })
    }

    /// A query followed by `[EMIT ...] WITH (options)`: parsed on its own,
    /// up to the last `WITH` outside parentheses, since sqlparser would read
    /// `FROM t WITH (...)` as table hints.
    fn parse_query_before_options(&mut self) -> Result<Box<ast::Query>, ParserError> {
        let mut tokens = Vec::new();
        let mut depth = 0usize;
        let mut options_at = None;
        loop {
            let token = self.parser.peek_nth_token(tokens.len());
            match &token.token {
                Token::EOF => break,
                Token::SemiColon if depth == 0 => break,
                Token::LParen => depth += 1,
                Token::RParen => depth = depth.saturating_sub(1),
                Token::Word(w) if w.keyword == Keyword::WITH && depth == 0 => {
                    options_at = Some(tokens.len());
                }
                _ => {}
            }
            tokens.push(token);
        }
        let mut end = options_at.unwrap_or(tokens.len());
        // `EMIT ON ...` before the options belongs to the sink.
        let words: Vec<String> = tokens[..end]
            .iter()
            .map(|t| match &t.token {
                Token::Word(w) => w.value.to_lowercase(),
                _ => String::new(),
            })
            .collect();
        if let Some(emit) = words.iter().rposition(|w| w == "emit")
            && words.get(emit + 1).is_some_and(|w| w == "on")
        {
            end = emit;
        }
        let mut query_tokens: Vec<_> = tokens[..end].to_vec();
        query_tokens.push(datafusion::sql::sqlparser::tokenizer::TokenWithSpan::wrap(
            Token::EOF,
        ));
        let mut sub = Parser::new(&DIALECT).with_tokens_with_locations(query_tokens);
        let query = sub.parse_query()?;
        if sub.peek_token_ref().token != Token::EOF {
            return sub.expected("the end of the sink's query", sub.peek_token());
        }
        for _ in 0..end {
            self.parser.next_token();
        }
        Ok(query)
    }

    /// `[IF NOT EXISTS] name (column type ..., [PRIMARY KEY (...)],
    /// [WATERMARK FOR column AS expr]) [APPEND ONLY] [WITH (key = value, ...)]`
    /// (after `CREATE STREAM | SOURCE | TABLE`).
    fn parse_create_stream(&mut self, kind: StreamKind) -> Result<CreateStream, ParserError> {
        let if_not_exists =
            self.parser
                .parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
        let name = self.parser.parse_object_name(false)?;
        let mut columns = Vec::new();
        let mut constraints = Vec::new();
        let mut watermark = None;
        self.parser.expect_token(&Token::LParen)?;
        loop {
            if self.parse_words(&["watermark"]) {
                if watermark.is_some() {
                    return Err(ParserError::ParserError(
                        "only one WATERMARK clause is allowed".into(),
                    ));
                }
                self.parser.expect_keyword_is(Keyword::FOR)?;
                let column = self.parser.parse_identifier()?;
                self.parser.expect_keyword_is(Keyword::AS)?;
                let expr = self.parser.parse_expr()?;
                watermark = Some(WatermarkDef { column, expr });
            } else if let Some(constraint) = self.parser.parse_optional_table_constraint()? {
                constraints.push(constraint);
            } else {
                columns.push(self.parser.parse_column_def()?);
            }
            if self.parser.consume_token(&Token::Comma) {
                continue;
            }
            self.parser.expect_token(&Token::RParen)?;
            break;
        }
        let append_only = self.parse_words(&["append", "only"]);
        let options = if self.parser.parse_keyword(Keyword::WITH) {
            self.parse_with_options()?
        } else {
            Vec::new()
        };
        Ok(CreateStream {
            kind,
            name,
            if_not_exists,
            columns,
            constraints,
            watermark,
            append_only,
            options,
        })
    }

    /// `FETCH ... [WITH (timeout = 'duration')]`.
    fn parse_fetch(&mut self) -> Result<Statement, ParserError> {
        let fetch = self.parser.parse_statement()?;
        if !self.parser.parse_keyword(Keyword::WITH) {
            return Ok(Statement::Standard(Box::new(fetch)));
        }
        let mut timeout = None;
        for (key, value) in self.parse_with_options()? {
            if key != "timeout" {
                return Err(ParserError::ParserError(format!(
                    "unknown FETCH option \"{key}\" (the one option is timeout)"
                )));
            }
            timeout = Some(crate::duration::parse_duration(&value).ok_or_else(|| {
                ParserError::ParserError(format!(
                    "invalid FETCH timeout \"{value}\": expected a duration such as '1s' or '500ms'"
                ))
            })?);
        }
        match timeout {
            Some(timeout) => Ok(Statement::FetchWithTimeout(Box::new(fetch), timeout)),
            None => Ok(Statement::Standard(Box::new(fetch))),
        }
    }

    /// `[TO] relation | (query) [WITH (snapshot = true | false)]` (after
    /// `SUBSCRIBE`).
    fn parse_subscribe(&mut self) -> Result<Subscribe, ParserError> {
        let _ = self.parser.parse_keyword(Keyword::TO);
        let input = if self.parser.consume_token(&Token::LParen) {
            let query = self.parser.parse_query()?;
            self.parser.expect_token(&Token::RParen)?;
            SinkInput::Query(query)
        } else {
            SinkInput::From(self.parser.parse_object_name(false)?)
        };
        let mut snapshot = true;
        if self.parser.parse_keyword(Keyword::WITH) {
            for (key, value) in self.parse_with_options()? {
                if key != "snapshot" {
                    return Err(ParserError::ParserError(format!(
                        "unknown SUBSCRIBE option \"{key}\" (the one option is snapshot)"
                    )));
                }
                snapshot = match value.to_ascii_lowercase().as_str() {
                    "true" | "on" | "1" => true,
                    "false" | "off" | "0" => false,
                    _ => {
                        return Err(ParserError::ParserError(format!(
                            "invalid SUBSCRIBE snapshot \"{value}\": expected true or false"
                        )));
                    }
                };
            }
        }
        Ok(Subscribe { input, snapshot })
    }

    /// Whether a `DECLARE` is of a cursor for `SUBSCRIBE`: `DECLARE name
    /// [NO SCROLL] CURSOR [WITH | WITHOUT HOLD] FOR SUBSCRIBE`.
    fn declares_subscribe(&self) -> bool {
        (2..8).any(|n| self.peek_keyword(n, Keyword::FOR) && self.peek_words(n + 1, &["subscribe"]))
    }

    fn parse_declare_subscribe(&mut self) -> Result<Statement, ParserError> {
        self.parser.expect_keyword_is(Keyword::DECLARE)?;
        let cursor = self.parser.parse_identifier()?;
        let _ = self.parser.parse_keywords(&[Keyword::NO, Keyword::SCROLL]);
        self.parser.expect_keyword_is(Keyword::CURSOR)?;
        let hold = if self.parser.parse_keywords(&[Keyword::WITH, Keyword::HOLD]) {
            true
        } else {
            let _ = self
                .parser
                .parse_keywords(&[Keyword::WITHOUT, Keyword::HOLD]);
            false
        };
        self.parser.expect_keyword_is(Keyword::FOR)?;
        if !self.parse_words(&["subscribe"]) {
            return self.parser.expected("SUBSCRIBE", self.parser.peek_token());
        }
        let subscribe = self.parse_subscribe()?;
        Ok(Statement::DeclareSubscribe(Box::new(DeclareSubscribe {
            cursor,
            hold,
            subscribe,
        })))
    }

    /// `(key = value, ...)`, keys dotted (`nexmark.event_rate`), values
    /// literals or words.
    fn parse_with_options(&mut self) -> Result<Vec<(String, String)>, ParserError> {
        self.parser.expect_token(&Token::LParen)?;
        let mut options = Vec::new();
        loop {
            let mut key = self.parser.parse_identifier()?.value.to_lowercase();
            while self.parser.consume_token(&Token::Period) {
                key.push('.');
                key.push_str(&self.parser.parse_identifier()?.value.to_lowercase());
            }
            self.parser.expect_token(&Token::Eq)?;
            let token = self.parser.next_token();
            let value = match &token.token {
                Token::SingleQuotedString(v) | Token::DoubleQuotedString(v) => v.clone(),
                Token::Number(v, _) => v.clone(),
                Token::Word(w) => w.value.clone(),
                _ => return self.parser.expected("an option value", token),
            };
            options.push((key, value));
            if self.parser.consume_token(&Token::Comma) {
                continue;
            }
            self.parser.expect_token(&Token::RParen)?;
            return Ok(options);
        }
    }

    /// `[IF EXISTS] name, ... [CASCADE | RESTRICT]` (after `DROP STREAM`).
    fn parse_drop_stream(&mut self) -> Result<DropStream, ParserError> {
        let if_exists = self.parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let names = self
            .parser
            .parse_comma_separated(|p| p.parse_object_name(false))?;
        let cascade = self.parser.parse_keyword(Keyword::CASCADE);
        if !cascade {
            let _ = self.parser.parse_keyword(Keyword::RESTRICT);
        }
        Ok(DropStream {
            names,
            if_exists,
            cascade,
        })
    }

    /// Whether the `CREATE TABLE` ahead declares event time or is append-only
    /// (Weir's form); otherwise it is sqlparser's.
    /// `WATERMARK FOR` among the columns, or `APPEND ONLY` after them (a
    /// column may be named `watermark`).
    fn table_has_event_time(&self) -> bool {
        let mut n = 2;
        let mut depth = 0usize;
        loop {
            match &self.parser.peek_nth_token_ref(n).token {
                Token::EOF | Token::SemiColon => return false,
                Token::LParen => depth += 1,
                Token::RParen => depth = depth.saturating_sub(1),
                Token::Word(w)
                    if depth == 1
                        && w.value.eq_ignore_ascii_case("watermark")
                        && self.peek_words(n + 1, &["for"]) =>
                {
                    return true;
                }
                Token::Word(w) if depth == 0 && w.value.eq_ignore_ascii_case("append") => {
                    return self.peek_words(n + 1, &["only"]);
                }
                Token::Word(w) if depth == 0 && w.value.eq_ignore_ascii_case("as") => return false,
                _ => {}
            }
            n += 1;
        }
    }

    /// Whether the words ahead (from the `n`th token) are `words`,
    /// case-insensitively.
    fn peek_words(&self, n: usize, words: &[&str]) -> bool {
        words.iter().enumerate().all(|(i, word)| {
            matches!(&self.parser.peek_nth_token_ref(n + i).token,
                Token::Word(w) if w.value.eq_ignore_ascii_case(word))
        })
    }

    /// Consumes `words` if they come next.
    fn parse_words(&mut self, words: &[&str]) -> bool {
        if !self.peek_words(0, words) {
            return false;
        }
        for _ in words {
            self.parser.next_token();
        }
        true
    }

    /// `SHOW TABLES | VIEWS | DATABASES | STREAMS | SOURCES | MATERIALIZED
    /// VIEWS [LIKE 'pattern']`
    fn parse_show_objects(
        &mut self,
        kind: ObjectKind,
        words: usize,
    ) -> Result<Statement, ParserError> {
        self.parser.expect_keyword_is(Keyword::SHOW)?;
        for _ in 0..words {
            self.parser.next_token();
        }
        let like = if self.parser.parse_keyword(Keyword::LIKE) {
            Some(self.parser.parse_literal_string()?)
        } else {
            None
        };
        Ok(Statement::ShowObjects(ShowObjects { kind, like }))
    }

    /// The kind of objects `SHOW` lists, and how many words name it.
    fn peek_object_kind(&self, n: usize) -> Option<(ObjectKind, usize)> {
        if self.peek_words(n, &["materialized", "views"]) {
            return Some((ObjectKind::MaterializedView, 2));
        }
        let Token::Word(w) = &self.parser.peek_nth_token_ref(n).token else {
            return None;
        };
        let kind = match w.value.to_ascii_lowercase().as_str() {
            "tables" => ObjectKind::Table,
            "views" => ObjectKind::View,
            "databases" => ObjectKind::Database,
            "streams" | "sources" => ObjectKind::Stream,
            _ => return None,
        };
        Some((kind, 1))
    }

    fn peek_keyword(&self, n: usize, keyword: Keyword) -> bool {
        matches!(&self.parser.peek_nth_token_ref(n).token, Token::Word(w) if w.keyword == keyword)
    }
}

/// Words a sqlparser error the way Postgres words a syntax error, keeping the
/// parser's expectation as the rest of the message.
fn syntax_error(sql: &str, err: &ParserError) -> ParseError {
    let raw = match err {
        ParserError::ParserError(m) | ParserError::TokenizerError(m) => m.as_str(),
        ParserError::RecursionLimitExceeded => {
            return ParseError {
                message: "statement is too deeply nested".into(),
                detail: None,
                position: None,
            };
        }
    };
    // sqlparser reports "Expected: X, found: Y at Line: L, Column: C".
    let (body, location) = match raw.rsplit_once(" at Line: ") {
        Some((body, loc)) => (body, Some(loc)),
        None => (raw, None),
    };
    let position = location.and_then(|loc| {
        let (line, column) = loc.split_once(", Column: ")?;
        char_offset(sql, line.trim().parse().ok()?, column.trim().parse().ok()?)
    });
    let (expected, found) = match body.rsplit_once(", found: ") {
        Some((expected, found)) => (
            Some(expected.trim_start_matches("Expected: ").to_string()),
            Some(found.trim()),
        ),
        None => (None, None),
    };
    let message = match found {
        // Weir's own errors: a sentence, without a token or a place.
        None if location.is_none() && !body.contains("EOF") => format!("syntax error: {body}"),
        Some("EOF") | None if position.is_none_or(|p| p > sql.chars().count()) => {
            "syntax error at end of input".to_string()
        }
        Some(token) => format!("syntax error at or near \"{token}\""),
        None => format!("syntax error: {body}"),
    };
    let detail = expected.map(|e| format!("Expected {e}."));
    ParseError {
        message,
        detail,
        position,
    }
}

/// 1-based character offset of a 1-based line and column.
fn char_offset(sql: &str, line: usize, column: usize) -> Option<usize> {
    if line == 0 || column == 0 {
        return None;
    }
    let mut offset = 0;
    for (i, text) in sql.split('\n').enumerate() {
        if i + 1 == line {
            return Some(offset + column);
        }
        offset += text.chars().count() + 1;
    }
    None
}

/// The tokens of one statement, as sqlparser produced them (for tests).
#[cfg(test)]
fn tokens(sql: &str) -> Vec<datafusion::sql::sqlparser::tokenizer::TokenWithSpan> {
    Tokenizer::new(&DIALECT, sql)
        .tokenize_with_location()
        .expect("tokenize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_statements_go_to_sqlparser() {
        let stmts = parse_sql("SELECT 1; CREATE TABLE t (a int);; INSERT INTO t VALUES (1)")
            .expect("parse");
        assert_eq!(stmts.len(), 3);
        assert!(stmts.iter().all(|s| matches!(s, Statement::Standard(_))));
        assert!(parse_sql("  ;; ").expect("empty").is_empty());
    }

    #[test]
    fn subscribe_takes_a_relation_or_a_query_and_a_snapshot_option() {
        let stmts = parse_sql(
            "SUBSCRIBE TO totals; SUBSCRIBE s.totals WITH (snapshot = false);
             SUBSCRIBE (SELECT k, count(*) FROM t GROUP BY k) WITH (SNAPSHOT = 'true');
             DECLARE c NO SCROLL CURSOR WITH HOLD FOR SUBSCRIBE totals WITH (snapshot = off);
             DECLARE d CURSOR FOR SELECT 1",
        )
        .expect("parse");
        let subscribe = |s: &Statement| match s {
            Statement::Subscribe(s) => (s.input.clone(), s.snapshot),
            other => panic!("{other:?}"),
        };
        let (input, snapshot) = subscribe(&stmts[0]);
        assert!(matches!(input, SinkInput::From(name) if name.to_string() == "totals"));
        assert!(snapshot);
        let (input, snapshot) = subscribe(&stmts[1]);
        assert!(matches!(input, SinkInput::From(name) if name.to_string() == "s.totals"));
        assert!(!snapshot);
        let (input, snapshot) = subscribe(&stmts[2]);
        assert!(matches!(input, SinkInput::Query(q) if q.to_string().contains("GROUP BY k")));
        assert!(snapshot);
        match &stmts[3] {
            Statement::DeclareSubscribe(d) => {
                assert_eq!(d.cursor.value, "c");
                assert!(d.hold);
                assert!(!d.subscribe.snapshot);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&stmts[4], Statement::Standard(_)));
        for wrong in [
            "SUBSCRIBE totals WITH (snapshot = maybe)",
            "SUBSCRIBE totals WITH (lag = 1)",
            "SUBSCRIBE (SELECT 1",
        ] {
            assert!(parse_sql(wrong).is_err(), "{wrong}");
        }
    }

    #[test]
    fn fetch_takes_a_timeout() {
        let stmts = parse_sql(
            "FETCH 10 FROM c WITH (timeout = '1s'); FETCH FORWARD 2 FROM c; fetch next from c with (TIMEOUT = '250ms')",
        )
        .expect("parse");
        match &stmts[0] {
            Statement::FetchWithTimeout(fetch, timeout) => {
                assert!(matches!(fetch.as_ref(), ast::Statement::Fetch { .. }));
                assert_eq!(*timeout, std::time::Duration::from_secs(1));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(&stmts[1], Statement::Standard(s) if matches!(s.as_ref(), ast::Statement::Fetch { .. }))
        );
        assert!(matches!(&stmts[2], Statement::FetchWithTimeout(_, t) if t.as_millis() == 250));
        let error = parse_sql("FETCH 1 FROM c WITH (wait = '1s')").expect_err("unknown option");
        assert!(
            error.to_string().contains("unknown FETCH option \"wait\""),
            "{error}"
        );
        let error = parse_sql("FETCH 1 FROM c WITH (timeout = 'soon')").expect_err("bad timeout");
        assert!(
            error.to_string().contains("invalid FETCH timeout \"soon\""),
            "{error}"
        );
    }

    #[test]
    fn show_objects_is_weirs() {
        let stmts =
            parse_sql("show tables; SHOW DATABASES LIKE 'a%'; SHOW search_path").expect("parse");
        assert_eq!(
            stmts[0],
            Statement::ShowObjects(ShowObjects {
                kind: ObjectKind::Table,
                like: None
            })
        );
        assert_eq!(
            stmts[1],
            Statement::ShowObjects(ShowObjects {
                kind: ObjectKind::Database,
                like: Some("a%".into())
            })
        );
        assert!(
            matches!(&stmts[2], Statement::Standard(s) if matches!(**s, ast::Statement::ShowVariable { .. }))
        );
    }

    #[test]
    fn syntax_errors_name_the_token_and_its_position() {
        let err = parse_sql("CREATE TABLE (a int)").expect_err("missing name");
        assert!(
            err.message.starts_with("syntax error at or near \"(\""),
            "{}",
            err.message
        );
        assert_eq!(err.position, Some(14));

        let err = parse_sql("SELECT 1;\nSELEC 2").expect_err("typo on line 2");
        assert!(err.message.contains("\"SELEC\""), "{}", err.message);
        assert_eq!(err.position, Some(11));

        let err = parse_sql("SELECT * FROM").expect_err("truncated");
        assert!(
            err.message.starts_with("syntax error at end of input"),
            "{}",
            err.message
        );
    }

    #[test]
    fn catalog_queries_get_compatibility_rewrites() {
        let sql = "SELECT c.oid FROM pg_catalog.pg_class c \
                   WHERE c.relname OPERATOR(pg_catalog.~) '^(t)$' COLLATE pg_catalog.default";
        assert!(tokens(sql).iter().any(|t| is_system_catalog_word(&t.token)));
        let stmts = parse_sql(sql).expect("parse");
        let text = stmts[0].to_string();
        assert!(!text.contains("OPERATOR"), "{text}");
        assert!(!text.contains("COLLATE"), "{text}");
    }

    #[test]
    fn sinks_take_a_relation_or_a_query_and_options() {
        let parsed = parse_sql(
            "CREATE SINK s FROM v WITH (connector = 'file', path = '/tmp/out', format = 'csv');
             CREATE SINK u AS SELECT a FROM x WITH (connector = 'blackhole');
             CREATE SINK IF NOT EXISTS t AS SELECT a, count(*) FROM x GROUP BY a EMIT ON WINDOW CLOSE WITH (connector = 'blackhole');
             DROP SINK IF EXISTS s, t",
        )
        .expect("parse");
        match &parsed[0] {
            Statement::CreateSink(create) => {
                assert_eq!(create.name.to_string(), "s");
                assert!(matches!(&create.input, SinkInput::From(n) if n.to_string() == "v"));
                assert_eq!(create.options[2], ("format".into(), "csv".into()));
            }
            other => panic!("{other:?}"),
        }
        match &parsed[2] {
            Statement::CreateSink(create) => {
                assert!(create.if_not_exists);
                assert!(matches!(&create.input, SinkInput::Query(_)));
                assert_eq!(create.emit, Emit::OnWindowClose);
            }
            other => panic!("{other:?}"),
        }
        match &parsed[1] {
            Statement::CreateSink(create) => {
                assert!(
                    matches!(&create.input, SinkInput::Query(q) if q.to_string() == "SELECT a FROM x")
                );
                assert_eq!(
                    create.options,
                    vec![("connector".into(), "blackhole".into())]
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&parsed[3], Statement::DropSink(d) if d.if_exists && d.names.len() == 2));
        let error = parse_sql("CREATE SINK s FROM v").expect_err("no WITH");
        assert!(format!("{error:?}").contains("WITH"), "{error:?}");
    }
}
