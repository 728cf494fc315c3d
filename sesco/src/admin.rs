//! Admin changes of the world. Each change builds the new world, checks all of it, and
//! replaces the stored world in one transaction; a change that breaks a rule changes
//! nothing and says what is wrong.

use std::sync::Arc;

use sesco_proto::event::EventKind;
use sesco_proto::message::{AdminRequest, Reply, WorldProblem};
use sesco_proto::world::{PathStep, World, WorldError};
use sesco_proto::{ErrorCode, ErrorReply};

use crate::auth;
use crate::commit::Change;
use crate::coordinator::{Coordinator, Principal, internal};
use crate::world_file::{parse_world, render_world};

/// The least length of a password.
const MIN_PASSWORD_LEN: usize = 8;

fn problem(path: &[&str], reason: impl Into<String>) -> WorldProblem {
    WorldProblem {
        location: None,
        error: WorldError {
            path: path.iter().map(|k| PathStep::Key(k.to_string())).collect(),
            reason: reason.into(),
        },
    }
}

fn not_found(what: &str, name: &str) -> ErrorReply {
    ErrorReply::new(ErrorCode::NotFound, format!("no {what} named '{name}'"))
}

impl Coordinator {
    /// Carries out an admin request from `principal` (who must be an admin, except for
    /// changing one's own password).
    pub async fn admin(
        self: &Arc<Self>,
        principal: &Principal,
        request: AdminRequest,
    ) -> Result<Reply, ErrorReply> {
        let Principal::User { name: by, admin } = principal else {
            return Err(ErrorReply::new(
                ErrorCode::Forbidden,
                "only users may do this",
            ));
        };
        if let AdminRequest::SetPassword { user, password } = &request {
            if !admin && user != by {
                return Err(ErrorReply::new(
                    ErrorCode::Forbidden,
                    "only admins may set another user's password",
                ));
            }
            return self.set_password(by, user, password);
        }
        if !admin {
            return Err(ErrorReply::new(
                ErrorCode::Forbidden,
                "only admins may change or export the world",
            ));
        }
        let mut world = self.state().world.clone();
        let summary = match request {
            AdminRequest::ExportWorld => {
                return render_world(&world).map(Reply::WorldToml).map_err(internal);
            }
            AdminRequest::ApplyWorld { source, toml } => {
                crate::limits::check_len(
                    "the world file's name",
                    &source,
                    crate::limits::MAX_TEXT,
                )?;
                world = match parse_world(&source, &toml) {
                    Ok(w) => w,
                    Err(problems) => return Ok(Reply::WorldRejected(problems)),
                };
                format!("applied {source}")
            }
            AdminRequest::PutUser(user) => {
                let name = user.name.clone();
                replace_or_push(&mut world.users, user, |u| u.name == name);
                format!("user {name} saved")
            }
            AdminRequest::DeleteUser { name } => {
                remove(&mut world.users, |u| u.name == name)
                    .ok_or_else(|| not_found("user", &name))?;
                format!("user {name} deleted")
            }
            AdminRequest::PutGroup(group) => {
                let name = group.name.clone();
                replace_or_push(&mut world.groups, group, |g| g.name == name);
                format!("group {name} saved")
            }
            AdminRequest::DeleteGroup { name } => {
                remove(&mut world.groups, |g| g.name == name)
                    .ok_or_else(|| not_found("group", &name))?;
                format!("group {name} deleted")
            }
            AdminRequest::PutApplication(app) => {
                let name = app.name.clone();
                replace_or_push(&mut world.applications, app, |a| a.name == name);
                format!("application {name} saved")
            }
            AdminRequest::DeleteApplication { name } => {
                remove(&mut world.applications, |a| a.name == name)
                    .ok_or_else(|| not_found("application", &name))?;
                format!("application {name} deleted")
            }
            AdminRequest::PutNode(node) => {
                let name = node.name.clone();
                replace_or_push(&mut world.nodes, node, |n| n.name == name);
                format!("node {name} saved")
            }
            AdminRequest::DeleteNode { name } => {
                remove(&mut world.nodes, |n| n.name == name)
                    .ok_or_else(|| not_found("node", &name))?;
                format!("node {name} deleted")
            }
            AdminRequest::SetPassword { .. } => unreachable!("handled above"),
        };
        if let Err(problems) = self.check_world(&world, by) {
            return Ok(Reply::WorldRejected(problems));
        }
        self.replace_world(world, by, &summary).await?;
        Ok(Reply::Done)
    }

    /// Rules beyond [`World::validate`], which need Sesco's own state.
    fn check_world(&self, world: &World, by: &str) -> Result<(), Vec<WorldProblem>> {
        if let Err(errors) = world.validate() {
            return Err(errors
                .into_iter()
                .map(|error| WorldProblem {
                    location: None,
                    error,
                })
                .collect());
        }
        let stored = &self.state().world;
        let can_sign_in = |name: &str| {
            world
                .users
                .iter()
                .find(|u| u.name == name)
                .is_some_and(|u| {
                    u.password_hash.is_some()
                        || stored
                            .users
                            .iter()
                            .any(|s| s.name == name && s.password_hash.is_some())
                })
        };
        let keeps_self = world.users.iter().any(|u| u.name == by && u.admin);
        if !keeps_self {
            return Err(vec![problem(
                &["users"],
                format!("the change would remove the admin rights of '{by}', who is making it"),
            )]);
        }
        if !world.users.iter().any(|u| u.admin && can_sign_in(&u.name)) {
            return Err(vec![problem(
                &["users"],
                "the world must keep at least one admin who can sign in",
            )]);
        }
        Ok(())
    }

    /// Stores a checked world with the live sessions' new weights (one transaction,
    /// through the commit path), re-allocates, and carries out what moves.
    async fn replace_world(
        self: &Arc<Self>,
        world: World,
        by: &str,
        summary: &str,
    ) -> Result<(), ErrorReply> {
        let (by, summary) = (by.to_string(), summary.to_string());
        let plan = self
            .commit(|answer| Change::World {
                world,
                by,
                summary,
                answer,
            })
            .await?;
        let _ = self.execute(plan).await;
        Ok(())
    }

    fn set_password(&self, by: &str, user: &str, password: &str) -> Result<Reply, ErrorReply> {
        crate::limits::check_len("the password", password, crate::limits::MAX_PASSWORD)?;
        if password.chars().count() < MIN_PASSWORD_LEN {
            return Err(ErrorReply::new(
                ErrorCode::Invalid,
                format!("a password needs at least {MIN_PASSWORD_LEN} characters"),
            ));
        }
        let hash = auth::hash_password(password);
        let store = self.store();
        if !store.set_password_hash(user, &hash).map_err(internal)? {
            return Err(not_found("user", user));
        }
        store.revoke_tokens(user).map_err(internal)?;
        drop(store);
        let mut state = self.state();
        if let Some(u) = state.world.users.iter_mut().find(|u| u.name == user) {
            u.password_hash = Some(hash);
        }
        drop(state);
        self.emit(
            None,
            None,
            EventKind::WorldChanged {
                by: by.to_string(),
                summary: format!("password of {user} changed"),
            },
        );
        Ok(Reply::Done)
    }
}

fn replace_or_push<T>(items: &mut Vec<T>, item: T, same: impl Fn(&T) -> bool) {
    match items.iter_mut().find(|i| same(i)) {
        Some(slot) => *slot = item,
        None => items.push(item),
    }
}

fn remove<T>(items: &mut Vec<T>, matches: impl Fn(&T) -> bool) -> Option<T> {
    let i = items.iter().position(matches)?;
    Some(items.remove(i))
}
