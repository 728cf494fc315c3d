//! The world file: TOML in, TOML out, and errors that point at the line.
//!
//! Loading a world file is all-or-nothing: a syntax error, a wrong type, an unknown field
//! or a broken rule (see [`World::validate`]) is reported with `file:line:column` and the
//! reason, and nothing is applied.

use std::ops::Range;

use sesco_proto::message::WorldProblem;
use sesco_proto::world::{PathStep, World, WorldError};
use toml::de::{DeTable, DeValue};

/// Parses and validates a world file. `source` names the file in the errors.
pub fn parse_world(source: &str, text: &str) -> Result<World, Vec<WorldProblem>> {
    let world: World = toml::from_str(text).map_err(|e| {
        vec![WorldProblem {
            location: Some(locate(source, text, e.span())),
            error: WorldError {
                path: Vec::new(),
                reason: e.message().trim().to_string(),
            },
        }]
    })?;
    world.validate().map_err(|errors| {
        let tree = DeTable::parse(text).ok();
        errors
            .into_iter()
            .map(|error| {
                let span = tree
                    .as_ref()
                    .and_then(|t| span_of(t.get_ref(), &error.path));
                WorldProblem {
                    location: Some(locate(source, text, span)),
                    error,
                }
            })
            .collect::<Vec<_>>()
    })?;
    Ok(world)
}

/// Writes a world as a TOML file. Password hashes are left out: they are set per user
/// with `arq admin passwd`, and applying a file without them keeps the current ones.
pub fn render_world(world: &World) -> Result<String, toml::ser::Error> {
    let mut world = world.clone();
    for user in &mut world.users {
        user.password_hash = None;
    }
    let body = toml::to_string_pretty(&world)?;
    Ok(format!(
        "# Sesco world: groups, users, nodes, applications.\n# Apply with `arq admin apply -f FILE`.\n\n{body}"
    ))
}

/// `source:line:column` of the start of `span` (1-based), or just `source`.
fn locate(source: &str, text: &str, span: Option<Range<usize>>) -> String {
    match span {
        None => source.to_string(),
        Some(span) => {
            let start = span.start.min(text.len());
            let before = &text[..start];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("{source}:{line}:{column}")
        }
    }
}

/// The span of the value at `path`, or of the deepest part of it that exists.
fn span_of(table: &DeTable<'_>, path: &[PathStep]) -> Option<Range<usize>> {
    let mut best = None;
    let mut current: Option<&DeValue<'_>> = None;
    let mut current_table = Some(table);
    for step in path {
        let next = match (step, current_table, current) {
            (PathStep::Key(key), Some(table), _) => table
                .iter()
                .find(|(k, _)| k.get_ref().as_ref() == key.as_str())
                .map(|(k, v)| (k.span(), v)),
            (PathStep::Index(i), _, Some(DeValue::Array(items))) => {
                items.get(*i).map(|v| (v.span(), v))
            }
            _ => None,
        };
        let Some((span, value)) = next else { break };
        best = Some(span);
        current = Some(value.get_ref());
        current_table = match value.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => None,
        };
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[groups]]
name = "staff"

[[users]]
name = "alice"
unix_account = "sesco-alice"
group = "staff"
"#;

    #[test]
    fn a_good_file_parses() {
        let world = parse_world("w.toml", GOOD).unwrap();
        assert_eq!(world.users[0].name, "alice");
    }

    #[test]
    fn a_syntax_error_names_file_and_line() {
        let text = "[[groups]]\nname = \"staff\"\npriority = = 2\n";
        let problems = parse_world("w.toml", text).unwrap_err();
        assert_eq!(problems.len(), 1);
        let shown = problems[0].to_string();
        assert!(shown.starts_with("w.toml:3:"), "{shown}");
    }

    #[test]
    fn an_unknown_field_names_its_line() {
        let text = format!("{GOOD}colour = \"blue\"\n");
        let problems = parse_world("w.toml", &text).unwrap_err();
        let shown = problems[0].to_string();
        assert!(shown.starts_with("w.toml:9:"), "{shown}");
        assert!(shown.contains("colour"), "{shown}");
    }

    #[test]
    fn a_broken_rule_names_the_line_of_the_field() {
        let text = GOOD.replace("group = \"staff\"", "group = \"nobody\"");
        let problems = parse_world("w.toml", &text).unwrap_err();
        let shown = problems[0].to_string();
        assert!(shown.starts_with("w.toml:8:"), "{shown}");
        assert!(shown.contains("users[0].group"), "{shown}");
        assert!(shown.contains("no group named 'nobody'"), "{shown}");
    }

    #[test]
    fn the_demo_world_is_sound() {
        let world = parse_world(
            "demo-world.toml",
            include_str!("../../scripts/demo-world.toml"),
        )
        .unwrap_or_else(|p| panic!("{p:?}"));
        assert!(world.users.len() >= 2 && world.groups.len() >= 2);
        assert!(world.applications.len() >= 2);
        // The Rust demos show variants; the C and Python ones show one variant each.
        let with_variants = world
            .applications
            .iter()
            .filter(|a| a.variants.len() >= 2)
            .count();
        assert!(
            with_variants >= 2,
            "the demo shows applications with variants"
        );
        for app in &world.applications {
            assert!(!app.variants.is_empty(), "{}", app.name);
            assert!(
                app.variants.iter().all(|v| v.dimensions.len() >= 2),
                "{}",
                app.name
            );
        }
    }

    #[test]
    fn export_then_parse_gives_the_same_world() {
        let world = parse_world("w.toml", GOOD).unwrap();
        let text = render_world(&world).unwrap();
        assert_eq!(parse_world("export", &text).unwrap(), world);
    }
}
