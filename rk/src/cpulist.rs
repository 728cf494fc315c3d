//! CPU lists in the kernel's notation (`0-3,6,8-9`).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A set of CPU numbers, written and parsed in the kernel's list notation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CpuList(BTreeSet<u32>);

impl CpuList {
    /// A list holding exactly the given CPUs.
    pub fn from_cpus(cpus: impl IntoIterator<Item = u32>) -> Self {
        CpuList(cpus.into_iter().collect())
    }

    /// Number of CPUs in the list.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when the list holds no CPU.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The CPUs, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().copied()
    }

    /// True when every CPU of `self` is in `other`.
    pub fn is_subset(&self, other: &CpuList) -> bool {
        self.0.is_subset(&other.0)
    }

    /// CPUs of `self` that are not in `other`.
    pub fn difference(&self, other: &CpuList) -> CpuList {
        CpuList(self.0.difference(&other.0).copied().collect())
    }

    /// True when the lists share a CPU.
    pub fn intersects(&self, other: &CpuList) -> bool {
        !self.0.is_disjoint(&other.0)
    }

    /// The highest CPU number, if any.
    pub fn last(&self) -> Option<u32> {
        self.0.iter().next_back().copied()
    }
}

/// Error parsing a CPU list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CPU list {input:?}: {reason}")]
pub struct CpuListError {
    input: String,
    reason: &'static str,
}

impl FromStr for CpuList {
    type Err = CpuListError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| CpuListError {
            input: s.to_string(),
            reason,
        };
        let trimmed = s.trim();
        let mut set = BTreeSet::new();
        if trimmed.is_empty() {
            return Ok(CpuList(set));
        }
        for part in trimmed.split(',') {
            let part = part.trim();
            if part.is_empty() {
                return Err(err("empty element"));
            }
            match part.split_once('-') {
                Some((a, b)) => {
                    let a: u32 = a.trim().parse().map_err(|_| err("not a CPU number"))?;
                    let b: u32 = b.trim().parse().map_err(|_| err("not a CPU number"))?;
                    if a > b {
                        return Err(err("range runs backwards"));
                    }
                    if b - a > 65_536 {
                        return Err(err("range too large"));
                    }
                    set.extend(a..=b);
                }
                None => {
                    set.insert(part.parse().map_err(|_| err("not a CPU number"))?);
                }
            }
        }
        Ok(CpuList(set))
    }
}

impl TryFrom<String> for CpuList {
    type Error = CpuListError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<CpuList> for String {
    fn from(c: CpuList) -> String {
        c.to_string()
    }
}

impl fmt::Display for CpuList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut iter = self.0.iter().copied().peekable();
        while let Some(start) = iter.next() {
            let mut end = start;
            while iter.peek() == Some(&(end + 1)) {
                end += 1;
                iter.next();
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if start == end {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_ranges() {
        let l: CpuList = "0-3,6, 8-9".parse().unwrap();
        assert_eq!(l.len(), 7);
        assert_eq!(l.to_string(), "0-3,6,8-9");
        assert_eq!("5".parse::<CpuList>().unwrap().to_string(), "5");
        assert!("".parse::<CpuList>().unwrap().is_empty());
    }

    #[test]
    fn rejects_garbage() {
        assert!("3-1".parse::<CpuList>().is_err());
        assert!("a".parse::<CpuList>().is_err());
        assert!("1,,2".parse::<CpuList>().is_err());
    }

    #[test]
    fn set_operations() {
        let all: CpuList = "0-3".parse().unwrap();
        let rt: CpuList = "3".parse().unwrap();
        assert!(rt.is_subset(&all));
        assert_eq!(all.difference(&rt).to_string(), "0-2");
        assert!(all.intersects(&rt));
        assert_eq!(all.last(), Some(3));
    }
}
