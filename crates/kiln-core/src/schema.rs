//! Column types and schemas.
//!
//! A [`Schema`] is the ordered list of a dataset's columns with their [`FeatureType`]. It is
//! inferred on a dataset's first add (or declared in `kiln.toml`), stored with every snapshot, and
//! checked on every later add and on every request a model serves.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a column holds, which decides how it is stored, profiled and fed to a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatureType {
    /// Numbers, stored as 64-bit floats.
    Numeric,
    /// A small set of string values.
    Categorical,
    /// true/false (also yes/no, t/f).
    Boolean,
    /// A point in time, stored as microseconds since the epoch (UTC).
    Timestamp,
    /// A calendar day, stored as days since the epoch.
    Date,
    /// Free text: many distinct strings.
    Text,
}

impl FeatureType {
    pub fn as_str(self) -> &'static str {
        match self {
            FeatureType::Numeric => "numeric",
            FeatureType::Categorical => "categorical",
            FeatureType::Boolean => "boolean",
            FeatureType::Timestamp => "timestamp",
            FeatureType::Date => "date",
            FeatureType::Text => "text",
        }
    }

    /// Whether values of this type are points in time.
    pub fn is_temporal(self) -> bool {
        matches!(self, FeatureType::Timestamp | FeatureType::Date)
    }

    /// Whether values of this type are strings.
    pub fn is_string(self) -> bool {
        matches!(self, FeatureType::Categorical | FeatureType::Text)
    }
}

impl fmt::Display for FeatureType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One column of a schema.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub ftype: FeatureType,
}

/// The ordered columns of a dataset.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    pub columns: Vec<Column>,
}

/// How one schema differs from another.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SchemaChange {
    pub added: Vec<Column>,
    pub removed: Vec<Column>,
    /// Column name, old type, new type.
    pub retyped: Vec<(String, FeatureType, FeatureType)>,
}

impl SchemaChange {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.retyped.is_empty()
    }
}

impl fmt::Display for SchemaChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        for c in &self.added {
            parts.push(format!("added `{}` ({})", c.name, c.ftype));
        }
        for c in &self.removed {
            parts.push(format!("removed `{}` ({})", c.name, c.ftype));
        }
        for (name, old, new) in &self.retyped {
            parts.push(format!("`{name}` changed from {old} to {new}"));
        }
        f.write_str(&parts.join(", "))
    }
}

impl Schema {
    pub fn new(columns: Vec<Column>) -> Self {
        Self { columns }
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().map(|c| c.name.as_str())
    }

    /// What changed going from `self` (old) to `new`. Column order is not a change.
    pub fn change_to(&self, new: &Schema) -> SchemaChange {
        let mut change = SchemaChange::default();
        for c in &new.columns {
            match self.column(&c.name) {
                None => change.added.push(c.clone()),
                Some(old) if old.ftype != c.ftype => {
                    change.retyped.push((c.name.clone(), old.ftype, c.ftype))
                }
                Some(_) => {}
            }
        }
        for c in &self.columns {
            if new.column(&c.name).is_none() {
                change.removed.push(c.clone());
            }
        }
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, ftype: FeatureType) -> Column {
        Column {
            name: name.into(),
            ftype,
        }
    }

    #[test]
    fn change_lists_added_removed_and_retyped_columns() {
        let old = Schema::new(vec![
            col("a", FeatureType::Numeric),
            col("b", FeatureType::Text),
        ]);
        let new = Schema::new(vec![
            col("a", FeatureType::Categorical),
            col("c", FeatureType::Date),
        ]);
        let change = old.change_to(&new);
        assert_eq!(change.added, vec![col("c", FeatureType::Date)]);
        assert_eq!(change.removed, vec![col("b", FeatureType::Text)]);
        assert_eq!(
            change.retyped,
            vec![("a".into(), FeatureType::Numeric, FeatureType::Categorical)]
        );
        assert!(old.change_to(&old).is_empty());
        assert_eq!(
            change.to_string(),
            "added `c` (date), removed `b` (text), `a` changed from numeric to categorical"
        );
    }
}
