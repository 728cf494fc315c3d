//! The stable instance format of `sesco qram solve` (tools outside the
//! repository use it; keep it exactly):
//!
//! ```json
//! {"resources": [{"name": "n1/cpu", "capacity": 2.0}, {"name": "n1/mem", "capacity": 8192}],
//!  "sessions": [{"id": "s1", "weight": 1.0, "required": false,
//!                "setpoints": [{"utility": 0.2, "demand": {"n1/cpu": 0.25, "n1/mem": 256}},
//!                              {"utility": 0.9, "demand": {"n1/cpu": 1.0,  "n1/mem": 512}}]}]}
//! ```
//!
//! `weight` defaults to 1 and `required` to false. The answer is
//! `{"choice": {"s1": 1, "s2": null}, "utility": 12.5, "solve_us": 850}`: per
//! session id, in input order, the index of the chosen set-point or null; the
//! total weighted utility; the solver's own time in microseconds.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use thiserror::Error;

use crate::model::{Allocation, ModelError, PointChoice, Problem, Resource, Session, SetPoint};

/// Why an instance file was refused.
#[derive(Debug, Error)]
pub enum InstanceError {
    /// Not JSON, or not of the format's shape (missing field, wrong type, unknown field, …).
    #[error("invalid instance JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A demand names a resource that is not listed.
    #[error("session {session:?}, set-point {setpoint}: demand on unknown resource {resource:?}")]
    UnknownResource {
        /// Session id.
        session: String,
        /// Set-point index.
        setpoint: usize,
        /// The resource named.
        resource: String,
    },
    /// A number or id breaks the model's rules.
    #[error("invalid instance: {0}")]
    Model(#[from] ModelError),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InstanceFile {
    resources: Vec<ResourceEntry>,
    sessions: Vec<SessionEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceEntry {
    name: String,
    capacity: f64,
}

fn one() -> f64 {
    1.0
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionEntry {
    id: String,
    #[serde(default = "one")]
    weight: f64,
    #[serde(default)]
    required: bool,
    setpoints: Vec<SetPointEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetPointEntry {
    utility: f64,
    #[serde(default)]
    demand: Demand,
}

/// A demand object in file order; a resource named twice is an error.
#[derive(Default)]
struct Demand(Vec<(String, f64)>);

impl<'de> Deserialize<'de> for Demand {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DemandVisitor;
        impl<'de> Visitor<'de> for DemandVisitor {
            type Value = Demand;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of resource name to amount")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Demand, A::Error> {
                let mut out: Vec<(String, f64)> = Vec::new();
                while let Some((name, amount)) = map.next_entry::<String, f64>()? {
                    if out.iter().any(|(n, _)| *n == name) {
                        return Err(de::Error::custom(format_args!(
                            "resource {name:?} appears twice in a demand"
                        )));
                    }
                    out.push((name, amount));
                }
                Ok(Demand(out))
            }
        }
        deserializer.deserialize_map(DemandVisitor)
    }
}

/// Parses and validates an instance.
///
/// # Errors
/// [`InstanceError::Json`] for malformed JSON or shape, [`InstanceError::UnknownResource`]
/// for a demand on an unlisted resource, [`InstanceError::Model`] for a duplicate
/// resource or session, or a negative (or, from other callers, non-finite) number.
pub fn parse_instance(text: &str) -> Result<Problem, InstanceError> {
    let file: InstanceFile = serde_json::from_str(text)?;
    let resources: Vec<Resource> = file
        .resources
        .into_iter()
        .map(|r| Resource {
            name: r.name,
            capacity: r.capacity,
        })
        .collect();
    let index: std::collections::HashMap<&str, usize> = resources
        .iter()
        .enumerate()
        .map(|(i, r)| (r.name.as_str(), i))
        .collect();
    let mut sessions = Vec::with_capacity(file.sessions.len());
    for s in file.sessions {
        let mut points = Vec::with_capacity(s.setpoints.len());
        for (pi, p) in s.setpoints.into_iter().enumerate() {
            let mut demand = Vec::with_capacity(p.demand.0.len());
            for (name, amount) in p.demand.0 {
                let Some(&r) = index.get(name.as_str()) else {
                    return Err(InstanceError::UnknownResource {
                        session: s.id,
                        setpoint: pi,
                        resource: name,
                    });
                };
                demand.push((r, amount));
            }
            points.push(SetPoint {
                utility: p.utility,
                demand,
            });
        }
        let session = Session::listed(&s.id, s.weight, s.required, &points).map_err(|e| {
            ModelError::RepeatedDemand {
                what: format!("space 0 set-point {}", e.setpoint),
                resource: resources[e.resource].name.clone(),
                id: s.id,
            }
        })?;
        sessions.push(session);
    }
    let problem = Problem {
        resources,
        sessions,
    };
    problem.validate()?;
    Ok(problem)
}

/// The answer line: `{"choice": {...}, "utility": ..., "solve_us": ...}`, with
/// the choices keyed by session id in input order.
pub fn render_answer(problem: &Problem, allocation: &Allocation, solve_us: u128) -> String {
    let mut out = String::from("{\"choice\": {");
    for (i, (s, a)) in problem
        .sessions
        .iter()
        .zip(&allocation.sessions)
        .enumerate()
    {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&serde_json::to_string(&s.id).expect("a string serialises"));
        out.push_str(": ");
        match &a.choice {
            Some(c) => match c.point {
                PointChoice::Listed(index) => out.push_str(&index.to_string()),
                PointChoice::Levels(_) => out.push_str("null"),
            },
            None => out.push_str("null"),
        }
    }
    out.push_str("}, \"utility\": ");
    let utility = serde_json::Number::from_f64(allocation.total_utility)
        .map_or_else(|| "0".to_string(), |n| n.to_string());
    out.push_str(&utility);
    out.push_str(", \"solve_us\": ");
    out.push_str(&solve_us.to_string());
    out.push('}');
    out
}
