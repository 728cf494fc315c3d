//! The world file's checks: arbitrary text through `parse_world`, and accepted worlds
//! through export and back.

use sesco::world_file::{parse_world, render_world};

/// The name the fuzzed file goes by in error locations.
const SOURCE: &str = "fuzz.toml";

pub fn check(text: &str) {
    match parse_world(SOURCE, text) {
        Ok(world) => {
            if let Err(errors) = world.validate() {
                panic!("parse_world accepted a world that does not validate: {errors:?}");
            }
            let rendered = render_world(&world).expect("an accepted world renders");
            let again = match parse_world("export", &rendered) {
                Ok(w) => w,
                Err(problems) => {
                    panic!("the export of an accepted world is refused: {problems:?}\n{rendered}")
                }
            };
            // The export leaves password hashes out on purpose.
            let mut without_hashes = world.clone();
            for user in &mut without_hashes.users {
                user.password_hash = None;
            }
            assert!(
                again == without_hashes,
                "export → parse changed the world:\n{rendered}"
            );
        }
        Err(problems) => {
            assert!(!problems.is_empty(), "a refusal names at least one problem");
            for problem in &problems {
                let location = problem.location.as_deref().unwrap_or("");
                assert!(
                    location.starts_with(SOURCE),
                    "a problem of a file is located in it: {problem}"
                );
                assert!(!problem.error.reason.is_empty(), "a problem says why");
            }
        }
    }
}
