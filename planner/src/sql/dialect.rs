//! Quiver's SQL dialect: DataFusion's generic dialect plus pgvector's distance operators.
//!
//! | operator | meaning |
//! |---|---|
//! | `a <-> b` | `l2_distance(a, b)` |
//! | `a <=> b` | `cosine_distance(a, b)` (pgvector's meaning, not MySQL's null-safe equality) |
//! | `a <#> b` | `negative_inner_product(a, b)` |
//!
//! The operators bind tighter than comparisons and looser than `+`/`-`, as user-defined operators
//! do in PostgreSQL: `embedding <-> q < 0.5` compares the distance. Everything else parses exactly
//! as with [`GenericDialect`] — the dialect reports itself as generic to the parser.

use std::any::TypeId;

use datafusion::sql::sqlparser::ast::Expr;
use datafusion::sql::sqlparser::dialect::{Dialect, GenericDialect};
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;

use super::rewrite::function_call;

/// Binding strength of the distance operators: above comparisons (20), below `+`/`-` (30).
const DISTANCE_PRECEDENCE: u8 = 25;

/// The dialect Quiver parses SQL with.
#[derive(Debug, Default, Clone, Copy)]
pub struct QuiverDialect;

/// The distance operator at the parser's position: its function and how many tokens it spans.
fn distance_operator(parser: &Parser) -> Option<(&'static str, usize)> {
    let first = parser.peek_nth_token_ref(0);
    if first.token == Token::Spaceship {
        return Some(("cosine_distance", 1));
    }
    if first.token != Token::Lt {
        return None;
    }
    let second = parser.peek_nth_token_ref(1);
    if second.span.start != first.span.end {
        return None;
    }
    // The tokenizer reads `->` and `#>` as JSON operators: `<->` is `<` `->`, `<#>` is `<` `#>`.
    match second.token {
        Token::Arrow => return Some(("l2_distance", 2)),
        Token::HashArrow => return Some(("negative_inner_product", 2)),
        _ => {}
    }
    let third = parser.peek_nth_token_ref(2);
    let adjacent = third.span.start == second.span.end;
    if !adjacent || third.token != Token::Gt {
        return None;
    }
    match &second.token {
        Token::Minus => Some(("l2_distance", 3)),
        Token::Sharp => Some(("negative_inner_product", 3)),
        Token::Word(w) if w.value == "#" && w.quote_style.is_none() => {
            Some(("negative_inner_product", 3))
        }
        _ => None,
    }
}

macro_rules! delegate_to_generic {
    ($($method:ident,)*) => {
        $(fn $method(&self) -> bool {
            GenericDialect.$method()
        })*
    };
}

impl Dialect for QuiverDialect {
    fn dialect(&self) -> TypeId {
        TypeId::of::<GenericDialect>()
    }

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        GenericDialect.is_delimited_identifier_start(ch)
    }

    fn is_identifier_start(&self, ch: char) -> bool {
        GenericDialect.is_identifier_start(ch)
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        GenericDialect.is_identifier_part(ch)
    }

    fn get_next_precedence(&self, parser: &Parser) -> Option<Result<u8, ParserError>> {
        distance_operator(parser).map(|_| Ok(DISTANCE_PRECEDENCE))
    }

    fn parse_infix(
        &self,
        parser: &mut Parser,
        expr: &Expr,
        precedence: u8,
    ) -> Option<Result<Expr, ParserError>> {
        let (function, tokens) = distance_operator(parser)?;
        for _ in 0..tokens {
            parser.next_token();
        }
        Some(
            parser
                .parse_subexpr(precedence)
                .map(|right| function_call(function, vec![expr.clone(), right])),
        )
    }

    delegate_to_generic! {
        supports_unicode_string_literal,
        supports_partition_by_after_order_by,
        supports_array_join_syntax,
        supports_group_by_expr,
        supports_group_by_with_modifier,
        supports_left_associative_joins_without_parens,
        supports_connect_by,
        supports_match_recognize,
        supports_pipe_operator,
        supports_start_transaction_modifier,
        supports_window_function_null_treatment_arg,
        supports_dictionary_syntax,
        supports_window_clause_named_window_reference,
        supports_parenthesized_set_variables,
        supports_select_wildcard_except,
        support_map_literal_syntax,
        allow_extract_custom,
        allow_extract_single_quotes,
        supports_extract_comma_syntax,
        supports_create_view_comment_syntax,
        supports_parens_around_table_factor,
        supports_values_as_table_factor,
        supports_create_index_with_clause,
        supports_explain_with_utility_options,
        supports_limit_comma,
        supports_update_order_by,
        supports_from_first_select,
        supports_projection_trailing_commas,
        supports_asc_desc_in_column_definition,
        supports_try_convert,
        supports_bitwise_shift_operators,
        supports_comment_on,
        supports_load_extension,
        supports_named_fn_args_with_assignment_operator,
        supports_struct_literal,
        supports_empty_projections,
        supports_nested_comments,
        supports_multiline_comment_hints,
        supports_user_host_grantee,
        supports_string_escape_constant,
        supports_array_typedef_with_brackets,
        supports_match_against,
        supports_set_names,
        supports_comma_separated_set_assignments,
        supports_filter_during_aggregation,
        supports_select_wildcard_exclude,
        supports_data_type_signed_suffix,
        supports_interval_options,
        supports_quote_delimited_string,
        supports_select_wildcard_replace,
        supports_select_wildcard_ilike,
        supports_select_wildcard_rename,
        supports_optimize_table,
        supports_install,
        supports_detach,
        supports_prewhere,
        supports_with_fill,
        supports_limit_by,
        supports_interpolate,
        supports_settings,
        supports_select_format,
        supports_comment_optimizer_hint,
        supports_constraint_keyword_without_name,
        supports_key_column_option,
        supports_comma_separated_trim,
        supports_cte_without_as,
        supports_select_item_multi_column_alias,
        supports_xml_expressions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(sql: &str) -> String {
        Parser::new(&QuiverDialect)
            .try_with_sql(sql)
            .unwrap()
            .parse_expr()
            .unwrap()
            .to_string()
    }

    #[test]
    fn distance_operators_become_function_calls() {
        assert_eq!(parse("e <-> [1, 2]"), "l2_distance(e, [1, 2])");
        assert_eq!(parse("e <=> q"), "cosine_distance(e, q)");
        assert_eq!(parse("e <#> q"), "negative_inner_product(e, q)");
        assert_eq!(parse("e <-> q < 0.5"), "l2_distance(e, q) < 0.5");
        assert_eq!(parse("e <-> q + r"), "l2_distance(e, q + r)");
        assert_eq!(parse("a < -b"), "a < -b");
        assert_eq!(parse("a <> b"), "a <> b");
    }
}
