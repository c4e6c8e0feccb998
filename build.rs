// The catalog's own migrations are embedded by `sqlx::migrate!`; Cargo must rebuild when
// they change.
fn main() {
    println!("cargo:rerun-if-changed=src/catalog/migrations");
}
