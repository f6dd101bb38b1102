//! One grouping key's metric families, and what each Pushgateway method does to them.
//!
//! - `PUT` replaces the whole group with the pushed families (an empty push empties it).
//! - `POST` replaces only the families whose names were pushed; the others stay.
//! - `DELETE` removes the group.
//!
//! [`apply`] computes the group a request would leave without changing anything, and
//! refuses a result in which two families hold the same series (e.g. a pushed untyped
//! `x_count` beside a stored summary `x`), as the Pushgateway's consistency check does.
//! The caller stores the result, then maps it with [`super::mapping::map_group`], so a
//! `POST` of one family updates that field of the pool and keeps the rest.

use std::collections::HashMap;

use crate::ingest::IngestError;

use super::{series_name, Family, SeriesHasher};

/// A Pushgateway method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Replace the group.
    Put,
    /// Replace same-named families.
    Post,
    /// Remove the group.
    Delete,
}

/// The families one grouping key holds, by name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Group {
    /// Families sorted by name; a name is held once. A vector rather than a map: a group
    /// holds a handful, and ten thousand groups are held at once.
    families: Vec<Family>,
}

impl Group {
    /// A group holding exactly these families (what `PUT` leaves). A later family of the
    /// same name replaces an earlier one.
    pub fn new(families: Vec<Family>) -> Group {
        let mut group = Group::default();
        group.replace_same_named(families);
        group
    }

    /// Replaces the families with the pushed ones' names and keeps the rest (`POST`).
    pub fn replace_same_named(&mut self, families: Vec<Family>) {
        for family in families {
            match self.families.binary_search_by(|f| f.name.cmp(&family.name)) {
                Ok(i) => self.families[i] = family,
                Err(i) => self.families.insert(i, family),
            }
        }
    }

    /// The families, sorted by name.
    pub fn families(&self) -> impl Iterator<Item = &Family> {
        self.families.iter()
    }

    /// One family by name.
    pub fn family(&self, name: &str) -> Option<&Family> {
        let i = self
            .families
            .binary_search_by(|f| (*f.name).cmp(name))
            .ok()?;
        Some(&self.families[i])
    }

    /// Keeps only the families `keep` accepts (a stored group drops what maps to no pool,
    /// so a pusher cannot park arbitrary metrics in poolwatch's memory), without their
    /// HELP text (nothing reads it once stored), with the one shared copy of each name
    /// poolwatch knows ([`super::intern`]) and without spare capacity.
    pub fn retain_families(&mut self, keep: impl Fn(&str) -> bool) {
        self.families.retain(|f| keep(&f.name));
        self.families.shrink_to_fit();
        for family in &mut self.families {
            family.help = String::new();
            family.name = super::intern(&family.name);
            family.samples.shrink_to_fit();
            for sample in &mut family.samples {
                sample.name = super::intern(&sample.name);
            }
        }
    }

    /// How many families the group holds.
    pub fn len(&self) -> usize {
        self.families.len()
    }

    /// Whether the group holds no family (after an empty `PUT`, say).
    pub fn is_empty(&self) -> bool {
        self.families.is_empty()
    }

    /// Checks that no series appears in two families.
    pub fn check_consistent(&self) -> Result<(), IngestError> {
        let hasher = SeriesHasher::default();
        let mut owner: HashMap<u128, &str> = HashMap::new();
        for family in &self.families {
            for s in &family.samples {
                let series = hasher.hash(&s.name, &s.labels);
                if let Some(other) = owner.insert(series, &family.name) {
                    if other != &*family.name {
                        return Err(IngestError::field_err(
                            format!("family {}", family.name),
                            format!(
                                "series {} is also in family {other}",
                                series_name(&s.name, &s.labels)
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// The group a request leaves: `None` when there is none (after `DELETE`). `current` is
/// the stored group, if any; `pushed` is the parsed body (ignored for `DELETE`).
pub fn apply(
    current: Option<&Group>,
    method: Method,
    pushed: Vec<Family>,
) -> Result<Option<Group>, IngestError> {
    let next = match method {
        Method::Delete => return Ok(None),
        Method::Put => Group::new(pushed),
        Method::Post => {
            let mut group = current.cloned().unwrap_or_default();
            group.replace_same_named(pushed);
            group
        }
    };
    next.check_consistent()?;
    Ok(Some(next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::pushgateway::{text, Limits};

    fn fams(body: &str) -> Vec<Family> {
        text::parse(body.as_bytes(), &Limits::default()).unwrap()
    }

    fn names(g: &Group) -> Vec<(&str, f64)> {
        g.families()
            .map(|f| (&*f.name, f.samples[0].value))
            .collect()
    }

    #[test]
    fn put_replaces_post_merges_delete_removes() {
        let stored = apply(None, Method::Put, fams("a 1\nb 2\n"))
            .unwrap()
            .unwrap();
        assert_eq!(names(&stored), [("a", 1.0), ("b", 2.0)]);

        let put = apply(Some(&stored), Method::Put, fams("b 3\n"))
            .unwrap()
            .unwrap();
        assert_eq!(names(&put), [("b", 3.0)]);

        let post = apply(Some(&stored), Method::Post, fams("b 3\nc 4\n"))
            .unwrap()
            .unwrap();
        assert_eq!(names(&post), [("a", 1.0), ("b", 3.0), ("c", 4.0)]);

        // POST to a group that does not exist yet creates it.
        let fresh = apply(None, Method::Post, fams("a 5\n")).unwrap().unwrap();
        assert_eq!(names(&fresh), [("a", 5.0)]);

        // An empty PUT empties the group; an empty POST changes nothing.
        let emptied = apply(Some(&stored), Method::Put, vec![]).unwrap().unwrap();
        assert!(emptied.is_empty());
        let same = apply(Some(&stored), Method::Post, vec![]).unwrap().unwrap();
        assert_eq!(same, stored);

        assert_eq!(
            apply(Some(&stored), Method::Delete, fams("a 1\n")).unwrap(),
            None
        );
        // The stored group itself is never changed.
        assert_eq!(names(&stored), [("a", 1.0), ("b", 2.0)]);
    }

    #[test]
    fn a_series_in_two_families_is_refused() {
        let stored = apply(
            None,
            Method::Put,
            fams("# TYPE x summary\nx{quantile=\"0.5\"} 1\nx_sum 2\nx_count 3\n"),
        )
        .unwrap()
        .unwrap();
        let err = apply(Some(&stored), Method::Post, fams("x_count 9\n")).unwrap_err();
        assert!(err.to_string().contains("also in family"), "{err}");
        // PUT replaces the summary, so the same push is fine there.
        assert!(apply(Some(&stored), Method::Put, fams("x_count 9\n")).is_ok());
    }
}
