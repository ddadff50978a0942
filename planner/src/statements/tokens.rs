//! Small pieces of parsing shared by the statement families: peeking at words, `WITH (...)`
//! option lists, option values, identifiers.

use datafusion::common::{plan_err, Result};
use datafusion::sql::parser::DFParser;
use datafusion::sql::sqlparser::ast::{self, Ident};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::Token;

/// An identifier as SQL means it: lower-cased unless quoted.
pub fn normalize(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

/// Whether the current token is the word `word` (unquoted, any case).
pub(super) fn first_word_is(parser: &DFParser<'_>, word: &str) -> bool {
    matches!(&parser.parser.peek_token_ref().token, Token::Word(w)
        if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

/// Whether the word after the current token is `word` (unquoted, any case).
pub(super) fn second_word_is(parser: &DFParser<'_>, word: &str) -> bool {
    matches!(&parser.parser.peek_nth_token_ref(1).token, Token::Word(w)
        if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

/// A snapshot name: an identifier, as written (normalized like any identifier).
pub(super) fn parse_snapshot_name(parser: &mut DFParser<'_>) -> Result<String> {
    Ok(normalize(&parser.parser.parse_identifier()?))
}

/// `WITH ( key = value [, ...] )`, if present; keys lower-cased.
pub(super) fn parse_with_options(parser: &mut DFParser<'_>) -> Result<Vec<(String, String)>> {
    if !parser.parser.parse_keyword(Keyword::WITH) {
        return Ok(Vec::new());
    }
    parse_option_list(parser)
}

/// `( key [=] value [, ...] )`; keys lower-cased.
pub(super) fn parse_option_list(parser: &mut DFParser<'_>) -> Result<Vec<(String, String)>> {
    let p = &mut parser.parser;
    let mut options = Vec::new();
    p.expect_token(&Token::LParen)?;
    loop {
        let key = p.parse_identifier()?.value.to_ascii_lowercase();
        let _ = p.consume_token(&Token::Eq);
        let value = match p.next_token().token {
            Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => s,
            Token::Number(n, _) => n,
            Token::Word(w) => w.value,
            other => return plan_err!("option '{key}': unexpected value '{other}'"),
        };
        options.push((key, value));
        if !p.consume_token(&Token::Comma) {
            break;
        }
    }
    p.expect_token(&Token::RParen)?;
    Ok(options)
}

/// The text of an option's value: a literal or a bare word.
pub(super) fn option_value(expr: &ast::Expr) -> Option<String> {
    match expr {
        ast::Expr::Value(v) => Some(match &v.value {
            ast::Value::SingleQuotedString(s) | ast::Value::DoubleQuotedString(s) => s.clone(),
            ast::Value::Number(n, _) => n.to_string(),
            ast::Value::Boolean(b) => b.to_string(),
            other => other.to_string(),
        }),
        ast::Expr::Identifier(ident) => Some(ident.value.clone()),
        _ => None,
    }
}
