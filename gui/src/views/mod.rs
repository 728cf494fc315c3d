//! One module per page of the app.

pub mod admin_applications;
pub mod admin_users;
pub mod applications;
pub mod events;
pub mod nodes;
pub mod overview;
pub mod sessions;
pub mod signin;
pub mod table;
pub mod world;
