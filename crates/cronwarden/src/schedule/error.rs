//! Parse errors that say which field, what text and why, with a caret under the text.

use std::fmt;
use std::ops::Range;

/// A field of a cron expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// Seconds (0-59), the first of six fields.
    Second,
    /// Minutes (0-59).
    Minute,
    /// Hours (0-23).
    Hour,
    /// Day of the month (1-31).
    DayOfMonth,
    /// Month (1-12 or JAN-DEC).
    Month,
    /// Day of the week (0-7 or SUN-SAT; 0 and 7 are Sunday).
    DayOfWeek,
}

impl Field {
    /// The field's name as people write it: "minute", "day-of-month", ...
    pub fn name(self) -> &'static str {
        match self {
            Field::Second => "second",
            Field::Minute => "minute",
            Field::Hour => "hour",
            Field::DayOfMonth => "day-of-month",
            Field::Month => "month",
            Field::DayOfWeek => "day-of-week",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a schedule expression was rejected.
///
/// `Display` prints the reason, then the expression with a caret under the offending text:
///
/// ```text
/// the minute field allows 0-59, got 61
///   61 * * * *
///   ^^
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    input: String,
    span: Range<usize>,
    field: Option<Field>,
    reason: String,
}

impl ParseError {
    pub(crate) fn new(
        input: &str,
        span: Range<usize>,
        field: Option<Field>,
        reason: impl Into<String>,
    ) -> ParseError {
        // Keep the span on character boundaries so that slicing and the caret never panic.
        let mut start = span.start.min(input.len());
        while !input.is_char_boundary(start) {
            start -= 1;
        }
        let mut end = span.end.clamp(start, input.len());
        while !input.is_char_boundary(end) {
            end += 1;
        }
        let span = start..end;
        ParseError {
            input: input.to_owned(),
            span,
            field,
            reason: reason.into(),
        }
    }

    /// The field the error is in, when it is in one field.
    pub fn field(&self) -> Option<Field> {
        self.field
    }

    /// The byte range of the offending text within [`ParseError::input`].
    pub fn span(&self) -> Range<usize> {
        self.span.clone()
    }

    /// The offending text.
    pub fn text(&self) -> &str {
        &self.input[self.span.clone()]
    }

    /// The whole expression that was parsed.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// Why the text was rejected, in one line (no caret).
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.reason)?;
        // The expression is printed on one line: a caret under a multi-line input would point
        // at the wrong place.
        let shown: String = self
            .input
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let pad = self.input[..self.span.start].chars().count();
        let width = self.input[self.span.clone()].chars().count().max(1);
        writeln!(f, "  {shown}")?;
        write!(f, "  {}{}", " ".repeat(pad), "^".repeat(width))
    }
}

impl std::error::Error for ParseError {}
