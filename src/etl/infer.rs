//! Type inference: a tally of what every column's values look like, and the rule that turns it
//! into a column type.
//!
//! The rule, for a column with `n` non-empty values:
//! 1. Each value counts for the narrowest type it parses as (see [`super::value`]). The types
//!    form three families: boolean; number (integer, real); time (date, timestamp).
//! 2. A family *fits* when all but at most `floor(max_rejected * n)` of the values belong to it.
//!    Of the families that fit, the one holding the most values wins (ties: boolean, number,
//!    time). When none fits, or the column has no value at all, it is text.
//! 3. Within the winning family the column is as wide as its widest value: real if any value
//!    is real, timestamp if any is a timestamp. A few decimals widen an integer column instead
//!    of being rejected.
//! 4. The values outside the family are the ones that will be rejected. With
//!    `max_rejected = 0` inference is strict: one odd value makes the column text.
//!
//! A `types` override wins over all of this; values that do not parse as the declared type
//! are rejected.
//!
//! Records that will be rejected whole for their shape (a wrong number of fields, bad quoting)
//! or for an empty key column are not tallied. TODO: a record rejected for a NUL byte or bytes
//! that are not UTF-8 in some field still counts in the other columns, and so does a JSON
//! Lines record with an empty key (its columns are learned as it is read; see
//! `extract::scan`); checking those in `extract::tally` as transform does would remove it.

use super::value::{Class, ColumnType};

/// What the values of one column look like: how many are of each class.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnTally {
    counts: [u64; Class::COUNT],
}

impl ColumnTally {
    /// Counts one field.
    pub(crate) fn add(&mut self, class: Class) {
        self.counts[class as usize] += 1;
    }

    fn count(&self, class: Class) -> u64 {
        self.counts[class as usize]
    }

    /// How many values were empty (NULL).
    pub fn empty(&self) -> u64 {
        self.count(Class::Empty)
    }

    /// How many values were not empty.
    pub fn non_empty(&self) -> u64 {
        self.counts.iter().sum::<u64>() - self.empty()
    }

    /// The column's type by the rule in the module docs.
    pub fn infer(&self, max_rejected: f64) -> ColumnType {
        let n = self.non_empty();
        let allowed = (max_rejected * n as f64).floor() as u64;
        let families = [
            (self.count(Class::Boolean), ColumnType::Boolean),
            (
                self.count(Class::Integer) + self.count(Class::Real),
                self.widest_number(),
            ),
            (
                self.count(Class::Date) + self.count(Class::Timestamp),
                self.widest_time(),
            ),
        ];
        let mut best: Option<(u64, ColumnType)> = None;
        for (members, ty) in families {
            let fits = members > 0 && n - members <= allowed;
            if fits && best.is_none_or(|(most, _)| members > most) {
                best = Some((members, ty));
            }
        }
        best.map_or(ColumnType::Text, |(_, ty)| ty)
    }

    fn widest_number(&self) -> ColumnType {
        if self.count(Class::Real) > 0 {
            ColumnType::Real
        } else {
            ColumnType::Integer
        }
    }

    fn widest_time(&self) -> ColumnType {
        if self.count(Class::Timestamp) > 0 {
            ColumnType::Timestamp
        } else {
            ColumnType::Date
        }
    }
}

/// The tallies of every column, filled while the source is read once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    columns: Vec<ColumnTally>,
}

impl Profile {
    /// A profile for `width` columns.
    pub fn new(width: usize) -> Self {
        Profile {
            columns: vec![ColumnTally::default(); width],
        }
    }

    /// Adds columns (JSON Lines sources find new keys as they go).
    pub(crate) fn widen(&mut self, width: usize) {
        if width > self.columns.len() {
            self.columns.resize(width, ColumnTally::default());
        }
    }

    /// The tally of column `index`.
    pub(crate) fn column_mut(&mut self, index: usize) -> &mut ColumnTally {
        &mut self.columns[index]
    }

    /// Every column's tally, in column order.
    pub fn columns(&self) -> &[ColumnTally] {
        &self.columns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(values: &[(Class, u64)]) -> ColumnTally {
        let mut t = ColumnTally::default();
        for &(class, n) in values {
            t.counts[class as usize] += n;
        }
        t
    }

    #[test]
    fn all_integers_with_nulls_are_integer() {
        let t = tally(&[(Class::Integer, 7164), (Class::Empty, 2836)]);
        assert_eq!(t.infer(0.05), ColumnType::Integer);
        assert_eq!(t.empty(), 2836);
    }

    #[test]
    fn a_few_bad_values_are_tolerated_not_widened_to_text() {
        let t = tally(&[(Class::Integer, 96), (Class::Text, 4)]);
        assert_eq!(t.infer(0.05), ColumnType::Integer);
        assert_eq!(t.infer(0.0), ColumnType::Text);
    }

    #[test]
    fn too_many_bad_values_make_text() {
        let t = tally(&[(Class::Integer, 90), (Class::Text, 10)]);
        assert_eq!(t.infer(0.05), ColumnType::Text);
    }

    #[test]
    fn decimals_widen_integers_to_real() {
        let t = tally(&[(Class::Integer, 99), (Class::Real, 1)]);
        assert_eq!(t.infer(0.0), ColumnType::Real);
    }

    #[test]
    fn timestamps_widen_dates() {
        let t = tally(&[(Class::Date, 10), (Class::Timestamp, 1)]);
        assert_eq!(t.infer(0.05), ColumnType::Timestamp);
    }

    #[test]
    fn empty_column_is_text() {
        assert_eq!(tally(&[(Class::Empty, 5)]).infer(0.05), ColumnType::Text);
    }

    #[test]
    fn the_largest_fitting_family_wins() {
        let t = tally(&[(Class::Boolean, 40), (Class::Integer, 60)]);
        assert_eq!(t.infer(0.5), ColumnType::Integer);
        assert_eq!(t.infer(0.05), ColumnType::Text);
    }
}
