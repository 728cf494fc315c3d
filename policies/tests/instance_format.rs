//! Every kind of bad instance gets a typed error; good ones solve and render exactly.

use policies::instance::{InstanceError, parse_instance, render_answer};
use policies::{ModelError, SolveError};

const GOOD: &str = r#"{"resources": [{"name": "n1/cpu", "capacity": 2.0}, {"name": "n1/mem", "capacity": 8192}],
 "sessions": [{"id": "s1", "weight": 1.0, "required": false,
               "setpoints": [{"utility": 0.2, "demand": {"n1/cpu": 0.25, "n1/mem": 256}},
                             {"utility": 0.9, "demand": {"n1/cpu": 1.0,  "n1/mem": 512}}]},
              {"id": "s2", "setpoints": [{"utility": 0.5, "demand": {"n1/cpu": 1.5}}]}]}"#;

#[test]
fn good_instance_solves_and_renders_in_input_order() {
    let p = parse_instance(GOOD).unwrap();
    assert_eq!(p.sessions[1].weight, 1.0, "weight defaults to 1");
    assert!(!p.sessions[1].required, "required defaults to false");
    let a = policies::solve(&p).unwrap();
    // s1 at 0.9 alone beats s1 at 0.2 with s2 at 0.5
    assert_eq!(
        render_answer(&p, &a, 42),
        r#"{"choice": {"s1": 1, "s2": null}, "utility": 0.9, "solve_us": 42}"#
    );
}

fn err(text: &str) -> InstanceError {
    parse_instance(text).expect_err("must be refused")
}

#[test]
fn bad_json_is_a_json_error() {
    assert!(matches!(err("{\"resources\": ["), InstanceError::Json(_)));
    assert!(matches!(err("not json"), InstanceError::Json(_)));
}

#[test]
fn missing_or_mistyped_or_unknown_fields_are_json_errors() {
    assert!(matches!(
        err(r#"{"resources": []}"#),
        InstanceError::Json(_)
    ));
    assert!(matches!(
        err(r#"{"resources": [{"name": "a", "capacity": "2"}], "sessions": []}"#),
        InstanceError::Json(_)
    ));
    let e = err(r#"{"resources": [{"name": "a", "capacty": 2}], "sessions": []}"#);
    assert!(e.to_string().contains("capacty"), "{e}");
}

#[test]
fn demand_on_an_unknown_resource_names_it() {
    let e = err(
        r#"{"resources": [{"name": "a", "capacity": 1}], "sessions": [{"id": "s", "setpoints": [{"utility": 1, "demand": {"b": 1}}]}]}"#,
    );
    match e {
        InstanceError::UnknownResource {
            session,
            setpoint,
            resource,
        } => {
            assert_eq!(
                (session.as_str(), setpoint, resource.as_str()),
                ("s", 0, "b")
            );
        }
        other => panic!("{other}"),
    }
}

#[test]
fn negative_numbers_are_model_errors() {
    let e = err(r#"{"resources": [{"name": "a", "capacity": -1}], "sessions": []}"#);
    assert!(
        matches!(e, InstanceError::Model(ModelError::BadCapacity { .. })),
        "{e}"
    );
    let e = err(
        r#"{"resources": [{"name": "a", "capacity": 1}], "sessions": [{"id": "s", "weight": -2, "setpoints": []}]}"#,
    );
    assert!(
        matches!(e, InstanceError::Model(ModelError::BadWeight { .. })),
        "{e}"
    );
    let e = err(
        r#"{"resources": [{"name": "a", "capacity": 1}], "sessions": [{"id": "s", "setpoints": [{"utility": -1, "demand": {}}]}]}"#,
    );
    assert!(
        matches!(e, InstanceError::Model(ModelError::BadNumber { .. })),
        "{e}"
    );
    let e = err(
        r#"{"resources": [{"name": "a", "capacity": 1}], "sessions": [{"id": "s", "setpoints": [{"utility": 1, "demand": {"a": -0.5}}]}]}"#,
    );
    assert!(
        matches!(e, InstanceError::Model(ModelError::BadNumber { .. })),
        "{e}"
    );
}

#[test]
fn numbers_out_of_range_are_json_errors() {
    // JSON has no NaN or infinity; an overflowing literal is refused by the parser
    assert!(matches!(
        err(r#"{"resources": [{"name": "a", "capacity": 1e999}], "sessions": []}"#),
        InstanceError::Json(_)
    ));
    assert!(matches!(
        err(r#"{"resources": [{"name": "a", "capacity": NaN}], "sessions": []}"#),
        InstanceError::Json(_)
    ));
}

#[test]
fn duplicates_are_refused() {
    let e = err(
        r#"{"resources": [{"name": "a", "capacity": 1}, {"name": "a", "capacity": 2}], "sessions": []}"#,
    );
    assert!(
        matches!(
            e,
            InstanceError::Model(ModelError::DuplicateResource { .. })
        ),
        "{e}"
    );
    let e = err(
        r#"{"resources": [], "sessions": [{"id": "s", "setpoints": []}, {"id": "s", "setpoints": []}]}"#,
    );
    assert!(
        matches!(e, InstanceError::Model(ModelError::DuplicateSession { .. })),
        "{e}"
    );
    let e = err(
        r#"{"resources": [{"name": "a", "capacity": 1}], "sessions": [{"id": "s", "setpoints": [{"utility": 1, "demand": {"a": 1, "a": 2}}]}]}"#,
    );
    assert!(
        matches!(e, InstanceError::Json(_)) && e.to_string().contains("twice"),
        "{e}"
    );
}

#[test]
fn required_sessions_that_cannot_fit_are_solve_errors_naming_the_resource() {
    let alone = parse_instance(
        r#"{"resources": [{"name": "n1/cpu", "capacity": 1}], "sessions": [{"id": "big", "required": true, "setpoints": [{"utility": 1, "demand": {"n1/cpu": 2}}]}]}"#,
    )
    .unwrap();
    match policies::solve(&alone) {
        Err(SolveError::RequiredSessionCannotFit { id, binding }) => {
            assert_eq!(id, "big");
            assert_eq!(binding, vec!["n1/cpu".to_string()]);
        }
        other => panic!("{other:?}"),
    }
    let together = parse_instance(
        r#"{"resources": [{"name": "n1/cpu", "capacity": 1}, {"name": "n1/mem", "capacity": 10}],
            "sessions": [{"id": "a", "required": true, "setpoints": [{"utility": 1, "demand": {"n1/cpu": 0.6, "n1/mem": 1}}]},
                         {"id": "b", "required": true, "setpoints": [{"utility": 1, "demand": {"n1/cpu": 0.6, "n1/mem": 1}}]}]}"#,
    )
    .unwrap();
    match policies::solve(&together) {
        Err(SolveError::RequiredSessionsDoNotFit { binding }) => {
            assert_eq!(binding, vec!["n1/cpu".to_string()])
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_session_without_set_points_is_rejected_unless_required() {
    let p =
        parse_instance(r#"{"resources": [], "sessions": [{"id": "s", "setpoints": []}]}"#).unwrap();
    let a = policies::solve(&p).unwrap();
    assert_eq!(
        render_answer(&p, &a, 1),
        r#"{"choice": {"s": null}, "utility": 0.0, "solve_us": 1}"#
    );
    let p = parse_instance(
        r#"{"resources": [], "sessions": [{"id": "s", "required": true, "setpoints": []}]}"#,
    )
    .unwrap();
    assert!(matches!(
        policies::solve(&p),
        Err(SolveError::RequiredSessionCannotFit { .. })
    ));
}
