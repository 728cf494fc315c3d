//! The rules a world must follow, and how breaking one is reported.

use sesco_proto::world::{
    ApplicationDef, CpuClass, DimensionDef, GroupDef, LevelDef, ProcessDef, UserDef, VariantDef,
    World, display_path,
};

fn level(name: &str, utility: f64, cpu_scale: f64) -> LevelDef {
    LevelDef {
        name: name.into(),
        value: 0.0,
        utility,
        cpu_scale,
        memory_scale: 1.0,
        net_scale: 1.0,
    }
}

fn world() -> World {
    World {
        groups: vec![GroupDef {
            name: "staff".into(),
            priority: 1.0,
            description: String::new(),
        }],
        users: vec![UserDef {
            name: "alice".into(),
            unix_account: "sesco-alice".into(),
            group: "staff".into(),
            priority: 1.0,
            admin: false,
            password_hash: None,
        }],
        nodes: vec![],
        applications: vec![ApplicationDef {
            name: "app".into(),
            description: String::new(),
            variants: vec![VariantDef {
                name: "v".into(),
                description: String::new(),
                cpu_class: CpuClass::Bandwidth,
                deadline_period_ms: 10,
                restart: Default::default(),
                processes: vec![ProcessDef {
                    name: "p".into(),
                    command: vec!["true".into()],
                    env: Default::default(),
                    cpu: 0.2,
                    memory_mb: 16.0,
                    pids_max: 16,
                    node: Default::default(),
                    net_mbps: 0.0,
                    net_interface: String::new(),
                    io_device: None,
                    io_read_mbps: None,
                    io_write_mbps: None,
                    io_read_iops: None,
                    io_write_iops: None,
                }],
                dimensions: vec![DimensionDef {
                    name: "rate".into(),
                    unit: String::new(),
                    levels: vec![level("low", 0.1, 1.0), level("high", 0.5, 2.0)],
                }],
            }],
        }],
    }
}

fn paths(world: &World) -> Vec<String> {
    world
        .validate()
        .unwrap_err()
        .iter()
        .map(|e| display_path(&e.path))
        .collect()
}

#[test]
fn a_sound_world_passes() {
    world().validate().unwrap();
}

#[test]
fn root_is_never_a_session_account() {
    let mut w = world();
    w.users[0].unix_account = "root".into();
    assert_eq!(paths(&w), ["users[0].unix_account"]);
}

#[test]
fn every_broken_rule_is_reported_with_its_path() {
    let mut w = world();
    w.users[0].group = "nobody".into();
    w.applications[0].variants[0].processes[0].cpu = -1.0;
    w.applications[0].variants[0].dimensions[0].levels[1].utility = f64::NAN;
    w.applications[0].variants[0].dimensions[0].levels[1].name = "low".into();
    let mut found = paths(&w);
    found.sort();
    assert_eq!(
        found,
        [
            "applications[0].variants[0].dimensions[0].levels[1].name",
            "applications[0].variants[0].dimensions[0].levels[1].utility",
            "applications[0].variants[0].processes[0].cpu",
            "users[0].group",
        ]
    );
}

#[test]
fn names_must_be_plain() {
    let mut w = world();
    w.applications[0].name = "my app!".into();
    assert_eq!(paths(&w), ["applications[0].name"]);
    w.applications[0].name = String::new();
    assert_eq!(paths(&w), ["applications[0].name"]);
}

#[test]
fn a_deadline_process_may_not_need_more_than_one_cpu() {
    let mut w = world();
    let v = &mut w.applications[0].variants[0];
    v.cpu_class = CpuClass::Deadline;
    v.processes[0].cpu = 0.6; // 0.6 × 2.0 at the highest level
    assert_eq!(paths(&w), ["applications[0].variants[0].processes[0].cpu"]);
}

#[test]
fn a_huge_setpoint_space_is_refused() {
    let mut w = world();
    let dims = &mut w.applications[0].variants[0].dimensions;
    let template = dims[0].clone();
    dims.clear();
    for i in 0..21 {
        let mut d = template.clone();
        d.name = format!("d{i}");
        dims.push(d);
    }
    assert_eq!(paths(&w), ["applications[0].variants[0].dimensions"]);
}

#[test]
fn a_share_the_kernel_cannot_enforce_is_refused() {
    let mut w = world();
    w.applications[0].variants[0].processes[0].cpu = 0.0005;
    assert_eq!(paths(&w), ["applications[0].variants[0].processes[0].cpu"]);
}

#[test]
fn a_variant_that_brings_no_utility_is_refused() {
    let mut w = world();
    for level in &mut w.applications[0].variants[0].dimensions[0].levels {
        level.utility = 0.0;
    }
    assert_eq!(paths(&w), ["applications[0].variants[0].dimensions"]);
    w.applications[0].variants[0].dimensions.clear();
    assert_eq!(paths(&w), ["applications[0].variants[0].dimensions"]);
}
